"""What every benchmark result records: the machine, the commit, and a printed table."""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from controller.emulation.processes import ROOT


def interval_ms(v: str) -> float:
    """argparse type of a probe's sending interval in milliseconds (0.1 to 1000): a clear
    error for 0 (a flood, not a probe) or nonsense, before any network is built."""
    try:
        f = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r} is not a number of milliseconds") from None
    if not 0.1 <= f <= 1000:
        raise argparse.ArgumentTypeError(f"{v} ms: the interval is 0.1 to 1000 ms")
    return f


OVS_PIDFILE = "/var/run/openvswitch/ovs-vswitchd.pid"


def allocator(maps: str) -> str:
    """The malloc a process runs with, from its /proc/PID/maps: the userspace datapath's
    speed depends on it (scripts/setup.sh starts Open vSwitch with jemalloc)."""
    for lib in ("jemalloc", "tcmalloc", "mimalloc"):
        if f"/lib{lib}" in maps:
            return lib
    return "glibc"


def ovs_allocator(pidfile: str = OVS_PIDFILE) -> str:
    try:
        pid = int(Path(pidfile).read_text().split()[0])
        return allocator(Path(f"/proc/{pid}/maps").read_text())
    except (OSError, ValueError, IndexError):
        return "unknown"


def machine() -> dict[str, Any]:
    ovs = subprocess.run(["ovs-vsctl", "--version"], capture_output=True, text=True).stdout
    return {
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "ovs_version": ovs.split()[3] if ovs.split()[3:] else "unknown",
        "ovs_allocator": ovs_allocator(),
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


def sched(pid: int) -> dict[str, int]:
    """The scheduler's account of a process's main thread (where the controller's event loop
    runs) and of the machine: ns on a CPU and ns runnable but waiting for one
    (`/proc/PID/schedstat`), context switches it made and was forced into, and the
    hypervisor's steal time (all CPUs, `/proc/stat`, counted in clock ticks). Subtract two of
    these: wall time far above `run_ns` means the thread waited, for a CPU (`wait_ns`) or
    for its host (`steal_ns`)."""
    run_ns, wait_ns, slices = (int(x) for x in Path(f"/proc/{pid}/schedstat").read_text().split())
    out = {"run_ns": run_ns, "wait_ns": wait_ns, "timeslices": slices}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            out[key] = int(value)
    # /proc/PID/stat: after the command's ")" field 3 is state; minflt is field 10
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    out["minor_faults"], out["major_faults"] = int(stat[7]), int(stat[9])
    cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    out["steal_ns"] = int(cpu[8]) * 1_000_000_000 // os.sysconf("SC_CLK_TCK") if len(cpu) > 8 else 0
    return out


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}
