"""Append-only audit log (JSON lines): reports, decisions, flow changes, authentications.

One line per event, written and flushed at once, never rewritten. Operators read it with
`tail -f` or `jq`; experiments read reaction times from it. Mode 0600 (also an existing
file): it names every subscriber, where and when it authenticated, and every decision.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class AuditLog:
    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._fh = None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.fchmod(fd, 0o600)
            self._fh = os.fdopen(fd, "a", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            return
        rec = {"t": time.time(), **record}
        self._fh.write(json.dumps(rec, sort_keys=True, default=_plain) + "\n")
        self._fh.flush()


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)
