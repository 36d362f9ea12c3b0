"""Pre-encoded JSON values spliced into a record (a report's SCI, encoded once) and the
audit log's held lines (one write for a group of reports)."""
from __future__ import annotations

import json

from controller.audit import AuditLog
from controller.jsonfile import dumps_with


def test_dumps_with_gives_the_same_object_as_dumps():
    rec = {"event": "sci_report", "sci": {"os": {"a": 1}, "b": [True, None]}, "z": 1.5}
    enc = json.dumps(rec["sci"], separators=(",", ":"))
    for kw in ({}, {"sort_keys": True}, {"separators": (",", ":")}):
        assert json.loads(dumps_with(rec, {"sci": enc}, json.JSONEncoder(**kw))) == rec
    assert dumps_with(rec) == json.dumps(rec)
    assert json.loads(dumps_with({"sci": 0}, {"sci": "[1]"})) == {"sci": [1]}


def test_held_audit_lines_go_out_together_and_in_order(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    path = tmp_path / "audit.jsonl"
    with log.held():
        log.write({"event": "a"})
        log.write({"event": "b", "sci": {}}, {"sci": '{"x":1}'})
        assert path.read_text() == ""           # not yet: the group is not done
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["event"] for x in lines] == ["a", "b"] and lines[1]["sci"] == {"x": 1}
    try:
        with log.held():
            log.write({"event": "c"})
            raise RuntimeError("a failing group")
    except RuntimeError:
        pass
    assert json.loads(path.read_text().splitlines()[-1])["event"] == "c"   # still written
    log.write({"event": "d"})
    assert json.loads(path.read_text().splitlines()[-1])["event"] == "d"
