"""JSON files: the ones programs on a terminal share (keys, posture, agent state), results,
and JSON-lines logs (the audit log, worm events).

Readers must never see half a file, so writers replace it atomically (a temporary file in the
same directory, flushed, then os.replace). Keys files are created with mode 0600. A JSON-lines
file is appended to while it is read, and a writer killed mid-line leaves a torn last line:
its readers skip what is not a whole JSON object.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

PLAIN = json.JSONEncoder()
_KEY = json.encoder.encode_basestring_ascii


def dumps_with(obj: dict[str, Any], encoded: dict[str, str] | None = None,
               encoder: json.JSONEncoder = PLAIN) -> str:
    """`encoder.encode(obj)` where the values of `encoded`'s keys are JSON text already
    (e.g. a report's SCI, encoded once for the store, the audit log and the evaluation):
    they are spliced in after the other members, not encoded again."""
    if not encoded:
        return encoder.encode(obj)
    if any(k in obj for k in encoded):
        obj = {k: v for k, v in obj.items() if k not in encoded}
    head = encoder.encode(obj)
    sep, colon = encoder.item_separator, encoder.key_separator
    tail = sep.join(_KEY(k) + colon + v for k, v in encoded.items())
    return head[:-1] + (sep if head != "{}" else "") + tail + "}"


def write_text_atomic(path: str | Path, text: str, mode: int | None = None,
                      sync: bool = False) -> None:
    """Replace `path` with `text` so that no reader ever sees half of it (mkstemp creates
    the temporary file 0600; `mode` sets another)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_atomic(path: str | Path, data: Any, mode: int | None = None,
                 sync: bool = False) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n", mode, sync)


def read(path: str | Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def parse_lines(text: str | bytes) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of JSON-lines text, in order, and how many non-blank lines were
    not one (a torn last line, or anything else that is not a JSON object)."""
    records: list[dict[str, Any]] = []
    bad = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad += 1
    return records, bad


def read_lines(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file (an audit log, an events file); a line that is
    not one (the torn last line of a file still being written) is skipped, and a missing or
    unreadable file gives none."""
    try:
        text = Path(path).read_text(errors="replace")   # a torn character too
    except OSError:
        return []
    return parse_lines(text)[0]
