"""The reports benchmark's load generator: its cheap signer makes byte for byte the report
the agent's encoder makes, and its response parser finds whole answers only."""
from __future__ import annotations

from controller.bench import reports
from controller.crs import messages as crsap


def test_the_signer_builds_exactly_the_agents_report():
    for t in reports.population(3, 2):
        for seq, ts in ((1, 1_764_300_000.0), (1_764_300_000_123, 1_764_300_000.123456)):
            raw = reports.Signer(t).message(seq, ts)
            assert raw == reports.report(t, seq, ts)
            msg = crsap.decode(raw)
            crsap.verify(msg, t.key, crsap.ReplayState(), ts)


def test_the_response_parser_waits_for_the_whole_body():
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n"
    assert reports.parse_response(answer + b"ab") is None
    assert reports.parse_response(answer[:20]) is None
    assert reports.parse_response(answer + b"abcdHTTP") == (200, len(answer), len(answer) + 4)
    assert reports.parse_response(b"HTTP/1.1 204 No Content\r\n\r\n") == (204, 27, 27)
