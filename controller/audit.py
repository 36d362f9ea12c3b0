"""Append-only audit log (JSON lines): reports, decisions, flow changes, authentications.

One line per event, written and flushed at once, never rewritten. Operators read it with
`tail -f` or `jq`; experiments read reaction times from it. Mode 0600 (also an existing
file): it names every subscriber, where and when it authenticated, and every decision.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from controller.jsonfile import dumps_with


class AuditLog:
    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._fh = None
        self._held: list[str] | None = None     # lines of a group, written together
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.fchmod(fd, 0o600)
            self._fh = os.fdopen(fd, "a", buffering=1)

    def write(self, record: dict[str, Any], encoded: dict[str, str] | None = None) -> None:
        """One line; `encoded`: values of `record` that are JSON text already."""
        if self._fh is None:
            return
        line = dumps_with({"t": time.time(), **record}, encoded, _ENCODER) + "\n"
        if self._held is not None:
            self._held.append(line)
            return
        self._fh.write(line)
        self._fh.flush()

    @contextmanager
    def held(self) -> Iterator[None]:
        """The lines written inside go out together at its end (one system call for a
        group of reports instead of one each), before the group's answers leave."""
        if self._held is not None or self._fh is None:
            yield
            return
        self._held = []
        try:
            yield
        finally:
            lines, self._held = self._held, None
            if lines:
                self._fh.write("".join(lines))
                self._fh.flush()


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


_ENCODER = json.JSONEncoder(sort_keys=True, default=_plain)
