"""The event stream (`crs events`): the audit log as versioned JSON lines, filtered, live.

Format version 1, one JSON object per line:

    {"v": 1, "t": <unix time>, "type": <type>, "terminal": <identity or null>,
     "detail": {<every field of the audit record but "t" and "event">}}

Types: `authentication` (a terminal admitted, or re-authenticated: detail.reauth),
`revocation` (its session ended: Logoff, port down, expiry, failure), `decision` (the
reacting system changed a terminal's decision: detail.level, detail.actions), `release` (a
decision that lifts every restriction the terminal had: detail.was lists them), `seal` and
`unseal` (a group sealed or released: detail.group), `operator` (quarantine, release,
rate-limit by an operator), `report` (an accepted SCI report), `policy`, `switch_up`,
`switch_down`, and any other audit event under its own name. New fields may appear in
`detail` within a version; a change to the fields above raises `v`.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

VERSION = 1
_RENAMED = {"authenticated": "authentication", "revoked": "revocation",
            "sci_report": "report"}


def to_event(record: dict[str, Any]) -> dict[str, Any] | None:
    """The stream's form of one audit record (None: not an event record)."""
    kind = record.get("event")
    if not isinstance(kind, str):
        return None
    detail = {k: v for k, v in record.items() if k not in ("t", "event")}
    kind = _RENAMED.get(kind, kind)
    if kind == "group_seal":
        kind = "seal" if detail.get("sealed") else "unseal"
    elif kind == "decision" and detail.get("actions") == ["permit"] and \
            [a for a in detail.get("was") or () if a != "permit"]:
        kind = "release"
    terminal = detail.get("terminal") or detail.get("identity")
    return {"v": VERSION, "t": record.get("t"), "type": kind,
            "terminal": terminal if isinstance(terminal, str) else None, "detail": detail}


def matches(ev: dict[str, Any], types: Iterable[str] = (), terminal: str | None = None) -> bool:
    """Whether an event passes `--type` (any of) and `--terminal` (its identity, the part
    before '@', or its IP or MAC address in the event)."""
    types = set(types)
    if types and ev["type"] not in types:
        return False
    if terminal:
        d, who = ev["detail"], ev["terminal"] or ""
        names = {who, who.split("@")[0], str(d.get("ip", "")), str(d.get("mac", "")).lower()}
        if terminal.lower() not in {n.lower() for n in names if n}:
            return False
    return True


def follow(path: str | Path, from_start: bool = False, keep_going: bool = True,
           poll_s: float = 0.2) -> Iterator[dict[str, Any]]:
    """Audit records of `path` as they are appended (from its end unless `from_start`;
    `keep_going` False: stop at the end). A file replaced or truncated (rotation) is read
    again from its start; a line being written is read once complete."""
    path = Path(path)
    fh, ino, partial = None, None, b""
    while True:
        if fh is None:
            try:
                fh = open(path, "rb")
            except FileNotFoundError:
                if not keep_going:
                    return
                time.sleep(poll_s)
                continue
            ino = os.fstat(fh.fileno()).st_ino
            if not from_start:
                fh.seek(0, os.SEEK_END)
            from_start = True        # a file that replaces this one is read whole
        chunk = fh.readline()
        if chunk:
            partial += chunk
            if not partial.endswith(b"\n"):
                continue
            line, partial = partial, b""
            try:
                rec = json.loads(line)
            except ValueError:
                continue             # not ours to judge: skip a damaged line
            if isinstance(rec, dict):
                yield rec
            continue
        if not keep_going:
            return
        try:
            st = os.stat(path)
            if st.st_ino != ino or st.st_size < fh.tell():
                fh.close()
                fh, partial = None, b""
                continue
        except FileNotFoundError:
            pass
        time.sleep(poll_s)


def stream(path: str | Path, types: Iterable[str] = (), terminal: str | None = None,
           from_start: bool = False, keep_going: bool = True) -> Iterator[dict[str, Any]]:
    """The filtered event stream of an audit log."""
    types = list(types)
    for rec in follow(path, from_start, keep_going):
        ev = to_event(rec)
        if ev is not None and matches(ev, types, terminal):
            yield ev
