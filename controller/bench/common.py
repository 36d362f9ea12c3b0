"""What every benchmark result records: the machine, the commit, and a printed table."""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from controller.emulation.processes import ROOT


def machine() -> dict[str, Any]:
    ovs = subprocess.run(["ovs-vsctl", "--version"], capture_output=True, text=True).stdout
    return {
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "ovs_version": ovs.split()[3] if ovs.split()[3:] else "unknown",
        "datapath": "userspace (netdev)",
    }


def filesystem(path: str | Path) -> str:
    """The type of the file system that holds `path` (or would: its nearest existing parent),
    from /proc/self/mounts: a benchmark whose controller keeps its store on tmpfs (where
    the disk sync before a decision's flows costs nothing) says so in its JSON."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    p = p.resolve()
    best, kind = "", "unknown"
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = str(p) == point or str(p).startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return (out.stdout.strip() or "unknown") + ("+dirty" if dirty else "")


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    vs = sorted(values)
    k = (len(vs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(vs) - 1)
    return vs[lo] + (vs[hi] - vs[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float | None]:
    return {"median": statistics.median(values) if values else None,
            "p50": percentile(values, 50), "p99": percentile(values, 99),
            "min": min(values) if values else None, "max": max(values) if values else None,
            "n": len(values)}


def write(out_dir: str | Path, name: str, result: dict[str, Any]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "commit": commit(), "machine": machine(), **result}
    path = out / f"{name}.json"
    path.write_text(json.dumps(result, indent=1, sort_keys=True))
    return path


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return "-" if v is None else str(v)
