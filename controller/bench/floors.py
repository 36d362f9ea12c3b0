"""What this machine charges for the two costs every lone event pays, measured right before a
benchmark and written into its JSON (`machine_floors`), so runs from different hours or
machines can be told apart from changes in the code.

A lone report or EAP message meets an idle machine: its decision's disk sync (the store's
commit made durable before its flows leave) and its Python both run cold. On the project's
2-vCPU VMs a sync of one small write took 0.15 ms back to back but 0.6-0.7 ms after 5 ms or
more of idle disk (a write and a cache flush, each a round trip to a device that has gone
quiet), and the same Python took 1.5-2.8 times longer after 20 ms of idle than hot
(docs/benchmarks.md, 2026-12-02). Both are measured here as a lone event sees them (after
`idle_s` of sleep) and hot (back to back), next to the store (the same file system).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

WRITE_BYTES = 8192            # about one small commit's WAL frames
FILE_BYTES = 1 << 20          # written and synced first: later syncs flush data, no metadata
_KEY = bytes(32)


def _python_piece() -> None:
    """A fixed piece of the Python a report costs: JSON both ways and an HMAC."""
    doc = {"terminal": "c1t1@crs.example", "seq": 1, "threats": [{"name": "w", "n": i}
                                                                 for i in range(20)]}
    raw = json.dumps(doc).encode()
    for _ in range(10):
        json.loads(raw)
        hmac.new(_KEY, raw, hashlib.sha256).digest()


def _median_ms(run: Callable[[int], float], samples: int, idle_s: float) -> float:
    times = []
    for i in range(samples):
        if idle_s:
            time.sleep(idle_s)
        times.append(run(i))
    return statistics.median(times) * 1e3


def measure(directory: str | Path, samples: int = 40, idle_s: float = 0.02) -> dict[str, Any]:
    """Medians (ms) of a disk sync of one `WRITE_BYTES` write in a file in `directory`, and
    of a fixed piece of Python, each after `idle_s` of idle and back to back; the file is
    removed again. ValueError for a sample count or idle time out of range, OSError if the
    directory cannot hold the file."""
    if not 3 <= samples <= 1000 or not 0.001 <= idle_s <= 1.0:
        raise ValueError("3 <= samples <= 1000 and 0.001 <= idle_s <= 1.0")
    fd, path = tempfile.mkstemp(prefix=".crs-floor-", dir=str(directory))
    try:
        os.pwrite(fd, bytes(FILE_BYTES), 0)
        os.fsync(fd)
        block = os.urandom(WRITE_BYTES)
        slots = FILE_BYTES // WRITE_BYTES

        def sync(i: int) -> float:
            os.pwrite(fd, block, (i % slots) * WRITE_BYTES)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            return time.perf_counter() - t0

        def python(_: int) -> float:
            t0 = time.perf_counter()
            _python_piece()
            return time.perf_counter() - t0

        _python_piece()
        out = {"disk_sync_idle_ms": _median_ms(sync, samples, idle_s),
               "disk_sync_back_to_back_ms": _median_ms(sync, samples, 0.0),
               "python_idle_ms": _median_ms(python, samples, idle_s),
               "python_hot_ms": _median_ms(python, samples, 0.0)}
    finally:
        os.close(fd)
        os.unlink(path)
    out["python_idle_over_hot"] = out["python_idle_ms"] / out["python_hot_ms"]
    out.update({"samples": samples, "idle_ms": idle_s * 1e3, "write_bytes": WRITE_BYTES})
    return out


def measure_or_error(directory: str | Path) -> dict[str, Any]:
    """`measure`, for a benchmark: a directory whose file system cannot sync (or hold the
    file) costs the run its floors, not the run itself ({"error": why})."""
    try:
        return measure(directory)
    except OSError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


KEYS = ("disk_sync_idle_ms", "disk_sync_back_to_back_ms", "python_idle_ms", "python_hot_ms",
        "python_idle_over_hot")


def rows(floors: dict[str, Any]) -> list[list[Any]]:
    """The measured floors as table rows (name, value); the error instead if there is one."""
    if "error" in floors:
        return [["not measured", floors["error"]]]
    return [[k, floors.get(k)] for k in KEYS]
