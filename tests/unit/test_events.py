"""The event stream: audit records in the versioned format, filters, and following a log
that grows, is written a piece at a time, and is rotated."""
import json
import os

from controller.events import VERSION, follow, matches, stream, to_event


def test_audit_records_become_typed_versioned_events():
    ev = to_event({"t": 5.0, "event": "authenticated", "identity": "c1t1@crs.example",
                   "ip": "10.0.1.1", "method": "psk"})
    assert ev == {"v": VERSION, "t": 5.0, "type": "authentication",
                  "terminal": "c1t1@crs.example",
                  "detail": {"identity": "c1t1@crs.example", "ip": "10.0.1.1", "method": "psk"}}
    isolate = {"event": "decision", "terminal": "c1t2@x", "actions": ["isolate"], "was": None}
    assert to_event(isolate)["type"] == "decision"
    release = {**isolate, "actions": ["permit"], "was": ["isolate"]}
    assert to_event(release)["type"] == "release"
    first = {**isolate, "actions": ["permit"], "was": None}        # nothing was lifted
    assert to_event(first)["type"] == "decision"
    assert to_event({"event": "group_seal", "group": "cell1", "sealed": True})["type"] == "seal"
    assert to_event({"event": "group_seal", "group": "cell1", "sealed": False})["type"] == \
        "unseal"
    assert to_event({"no": "event"}) is None


def test_filters_by_type_and_by_any_name_of_the_terminal():
    ev = to_event({"event": "authenticated", "identity": "c1t1@crs.example",
                   "ip": "10.0.1.1", "mac": "02:00:0A:00:01:01"})
    assert matches(ev, ["authentication", "decision"]) and not matches(ev, ["decision"])
    for who in ("c1t1@crs.example", "c1t1", "10.0.1.1", "02:00:0a:00:01:01"):
        assert matches(ev, [], who), who
    assert not matches(ev, [], "c1t2")


def test_follow_reads_what_is_appended_whole_lines_only_and_survives_rotation(tmp_path):
    log = tmp_path / "audit.jsonl"
    log.write_text(json.dumps({"event": "switch_up", "dpid": 1}) + "\n")
    it = follow(log, from_start=True, poll_s=0.01)
    assert next(it)["dpid"] == 1
    with open(log, "a") as f:             # a line written in two pieces
        f.write('{"event": "decision", ')
        f.flush()
        f.write('"terminal": "a"}\nnot json\n')
    assert next(it) == {"event": "decision", "terminal": "a"}   # the damaged line skipped
    os.rename(log, tmp_path / "audit.jsonl.1")                  # rotation: a new file
    log.write_text(json.dumps({"event": "revoked", "identity": "b"}) + "\n")
    assert next(it)["identity"] == "b"
    log.write_text(json.dumps({"event": "switch_down", "dpid": 1}) + "\n")   # truncated
    assert next(it)["event"] == "switch_down"


def test_stream_without_follow_stops_at_the_end(tmp_path):
    log = tmp_path / "audit.jsonl"
    recs = [{"t": i, "event": "decision", "terminal": f"t{i % 2}", "actions": ["isolate"]}
            for i in range(5)]
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    got = list(stream(log, ["decision"], "t1", from_start=True, keep_going=False))
    assert [e["t"] for e in got] == [1, 3]
