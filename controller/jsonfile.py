"""JSON files that programs on a terminal share (keys, posture, agent state).

Readers must never see half a file, so writers replace it atomically (a temporary file in the
same directory, flushed, then os.replace). Keys files are created with mode 0600.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


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
