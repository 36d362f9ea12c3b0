"""Where the speed targets stand, read from the last results (`crs bench summary`).

The targets are the speed issue's, as README's "Benchmarks" lists them; every value comes
from a file a benchmark wrote (`results/bench/<name>.json`; the demo's reaction latency
from `results/demo/summary.json`), never typed in, so the table is only as current as those
files: a target whose benchmark has not run says "not measured". Flat (per report, from
100 to 100,000 terminals) is read here as largest / smallest p50 <= FLAT: the sizes' p50s
of one run on this machine kind differ by up to 1.9 times with no order among them (the SCS
at 100, 1,000, 10,000 and 100,000 terminals: 31.6, 44.3, 36.1, 27.2 us in one run; 21.9,
35.4, 34.6, 42.1 in the next), while a cost that grew with the network, even as its
logarithm, would be 2.5 times and more across these sizes and a linear one 1,000 times.
"""
from __future__ import annotations

import json
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

FLAT = 2.0
OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class Target:
    what: str
    source: str                 # bench/<name>.json (a benchmark's) or demo/summary.json
    unit: str
    limits: tuple[tuple[str, float], ...]     # one (op, limit) per value read
    read: Callable[[dict[str, Any]], tuple[float | None, ...]]
    # the run measured what the target is about (e.g. 50 terminals, not a quick run's 2)
    scale: Callable[[dict[str, Any]], bool] = lambda doc: True
    # everything measured got through (no terminal failed, no pair unanswered): latencies
    # of the ones that did say nothing of those that did not
    whole: Callable[[dict[str, Any]], bool] = lambda doc: True


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def _num(x: Any) -> float | None:
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return None
    try:
        return float(x)
    except OverflowError:       # an integer beyond any float: no measurement
        return None


def _at(*path: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda doc: _num(_get(doc, *path))


def _pair(a: Callable, b: Callable) -> Callable[[dict[str, Any]], tuple[float | None, ...]]:
    return lambda doc: (a(doc), b(doc))


def _measured(doc: dict[str, Any], section: str, key: str) -> dict[int, float]:
    """p50 by network size, for the sizes that have one."""
    rows = _get(doc, section) or {}
    got = {_size(n): _num(_get(rows, n, key, "p50")) for n in rows}
    return {n: x for n, x in sorted(got.items()) if x is not None}


def _by_terminals(section: str, key: str) -> Callable[[dict[str, Any]], list[float]]:
    return lambda doc: list(_measured(doc, section, key).values())


def _spans(section: str, key: str) -> Callable[[dict[str, Any]], bool]:
    """Measured from 100 to 100,000 terminals (flat over some sizes says nothing of the
    others: a size without samples does not count)."""
    def ok(doc: dict[str, Any]) -> bool:
        sizes = list(_measured(doc, section, key))
        return bool(sizes) and min(sizes) <= 100 and max(sizes) >= 100_000
    return ok


def _size(n: str) -> int:
    return int(n) if n.isdigit() else 0


def _worst_and_flatness(values: Callable[[dict[str, Any]], list[float]]):
    def read(doc: dict[str, Any]) -> tuple[float | None, ...]:
        v = values(doc)
        if len(v) < 2 or min(v) <= 0:
            return None, None
        return max(v), max(v) / min(v)
    return read


def _flatness(values: Callable[[dict[str, Any]], list[float]]):
    def read(doc: dict[str, Any]) -> tuple[float | None, ...]:
        v = values(doc)
        return (max(v) / min(v),) if len(v) >= 2 and min(v) > 0 else (None,)
    return read


def _at_least(n: float, *path: str) -> Callable[[dict[str, Any]], bool]:
    return lambda doc: (_num(_get(doc, *path)) or 0) >= n


def _crs_sides(key: str) -> Callable[[dict[str, Any]], float | None]:
    """The larger of ours learning and ours with the topology file (all-pairs on metro)."""
    def read(doc: dict[str, Any]) -> float | None:
        got = [_num(_get(doc, "all_pairs", side, key)) for side in ("crs", "crs_topology")]
        got = [x for x in got if x is not None]
        return max(got) if got else None
    return read


def _demo_latency(doc: dict[str, Any]) -> tuple[float | None, ...]:
    """The slowest defence's median and p95, in ms (defences that react: those with one)."""
    runs = [r for r in doc.get("runs", []) if _num(r.get("reaction_latency_s")) is not None]
    if not runs:
        return None, None
    p95 = [_num(r.get("reaction_latency_s_p95")) for r in runs]
    return (1000 * max(r["reaction_latency_s"] for r in runs),
            1000 * max(p95) if None not in p95 else None)


def _none(*paths: tuple[str, ...]) -> Callable[[dict[str, Any]], bool]:
    """Every count at these paths is zero (or absent: older files did not count)."""
    return lambda doc: all(not _num(_get(doc, *p)) for p in paths)


FIFTY = _at_least(50, "ours", "concurrent", "n_terminals")
FIFTY_FIRST = _at_least(50, "ours_first_packet", "concurrent", "n_terminals")
TARGETS = (
    Target("EAP exchange, 1 terminal, p50", "bench/auth.json", "ms", (("<=", 2.0),),
           lambda d: (_at("ours", "single", "p50_ms")(d),),
           whole=_none(("ours", "single", "failures"))),
    Target("EAP, 50 re-authenticating at once, p50 / p99", "bench/auth.json", "ms",
           (("<=", 20.0), ("<=", 50.0)),
           _pair(_at("ours", "concurrent", "p50_ms"), _at("ours", "concurrent", "p99_ms")),
           FIFTY, _none(("ours", "concurrent", "failures"),
                        ("ours", "concurrent", "unfinished"))),
    Target("EAPOL-Start -> first packet, 1 terminal, p50", "bench/auth.json", "ms",
           (("<=", 5.0),), lambda d: (_at("ours_first_packet", "single", "p50_ms")(d),),
           whole=_none(("ours_first_packet", "single", "missing"))),
    Target("EAPOL-Start -> first packet, 50 at once, p50 / p99", "bench/auth.json", "ms",
           (("<=", 200.0), ("<=", 500.0)),
           _pair(_at("ours_first_packet", "concurrent", "p50_ms"),
                 _at("ours_first_packet", "concurrent", "p99_ms")), FIFTY_FIRST,
           _none(("ours_first_packet", "concurrent", "missing"))),
    Target("reports end to end (10,000 terminals), rate / p50", "bench/reports.json",
           "/s, ms", ((">=", 5000.0), ("<=", 5.0)),
           _pair(_at("end_to_end", "accepted_per_s"), _at("end_to_end", "latency_ms", "p50")),
           _at_least(10_000, "parameters", "terminals")),
    Target("pure core per report in groups, worst p50 / flatness", "bench/reports.json",
           "us, x", (("<=", 200.0), ("<=", FLAT)),
           _worst_and_flatness(_by_terminals("core_by_terminals", "group_32_us")),
           _spans("core_by_terminals", "group_32_us")),
    Target("pure SCS per report, flatness", "bench/reports.json", "x", (("<=", FLAT),),
           _flatness(_by_terminals("scs_by_terminals", "steady_us")),
           _spans("scs_by_terminals", "steady_us")),
    Target("reaction (report sent -> attacker dropped), p50 / p99", "bench/reaction.json",
           "ms", (("<=", 3.0), ("<=", 8.0)),
           _pair(_at("reaction_first_lost_ms", "p50"), _at("reaction_first_lost_ms", "p99")),
           _at_least(100, "trials_valid")),     # (a p99 of fewer says little)
    Target("demo reaction latency, p50 / p95", "demo/summary.json", "ms",
           (("<=", 10.0), ("<=", 25.0)), _demo_latency),
    Target("all-pairs on metro: flows per switch", "bench/forwarding.json", "x hosts",
           (("<=", 3.0),), lambda d: (_crs_sides("max_flows_per_host")(d),),
           whole=_none(("all_pairs", "crs", "failed_pairs"),
                       ("all_pairs", "crs_topology", "failed_pairs"))),
    Target("all-pairs ping on metro", "bench/forwarding.json", "s", (("<=", 10.0),),
           lambda d: (_crs_sides("seconds")(d),),
           whole=_none(("all_pairs", "crs", "failed_pairs"),
                       ("all_pairs", "crs_topology", "failed_pairs"))),
    Target("forwarding throughput over simple_switch_13", "bench/forwarding.json", "x",
           ((">=", 0.95),), lambda d: (_throughput_ratio(d),)),
)


def _throughput_ratio(doc: dict[str, Any]) -> float | None:
    """Ours over the reference's median throughput, from the sides themselves: the file's
    own ratio is None when ours moved nothing, which is a failure, not a missing number.
    None only when the reference did not move anything (nothing to compare with)."""
    ours = _num(_get(doc, "crs", "throughput_mbps", "median"))
    ref = _num(_get(doc, "simple_switch_13", "throughput_mbps", "median"))
    if ours is None or not ref:
        return _at("ratio", "throughput_crs_over_reference")(doc)
    return ours / ref



def evaluate(results: str | Path, bench: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per target: its values, limits and verdict ("met", "not met", "not measured"
    when its file or a value is missing, "not measured at scale" when the run was smaller
    than the target's: a quick run's 2 terminals say nothing of 50; "not met (some never
    got through)" when terminals failed or pairs went unanswered, whatever the latencies of
    the others), and the file's time and commit."""
    root, rows, docs = Path(results), [], {}
    bench_dir = Path(bench) if bench is not None else root / "bench"
    for t in TARGETS:
        if t.source not in docs:
            try:
                path = bench_dir / t.source[len("bench/"):] \
                    if t.source.startswith("bench/") else root / t.source
                docs[t.source] = json.loads(path.read_text())
            except (OSError, ValueError):
                docs[t.source] = None
        doc = docs[t.source]
        try:
            values, verdict = _judge(t, doc)
        except (TypeError, ValueError, AttributeError, KeyError):   # a file of another shape
            values, verdict = (None,) * len(t.limits), "not measured"
        rows.append({"target": t.what, "source": t.source, "unit": t.unit,
                     "values": list(values), "limits": [f"{op} {lim:g}" for op, lim in t.limits],
                     "verdict": verdict,
                     "time": _get(doc, "time"),
                     "commit": _get(doc, "commit") or _get(doc, "runner", "commit"),
                     # what the machine charged that run for a sync and for cold Python
                     "machine_floors": _get(doc, "machine_floors")})
    return rows


def _judge(t: Target, doc: Any) -> tuple[tuple[float | None, ...], str]:
    values = t.read(doc) if isinstance(doc, dict) else (None,) * len(t.limits)
    if None in values:
        return values, "not measured"
    if not t.scale(doc):
        return values, "not measured at scale"
    if not t.whole(doc):
        return values, "not met (some never got through)"
    met = all(OPS[op](v, lim) for v, (op, lim) in zip(values, t.limits))
    return values, "met" if met else "not met"


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def main(argv: list[str] | None = None) -> int:
    """`crs bench summary [--results DIR] [--bench DIR]`: print the table, write
    targets.json beside the benchmarks' files."""
    import argparse

    from controller.bench import common
    ap = argparse.ArgumentParser(prog="crs bench summary",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--results", default="results",
                    help="where bench/<name>.json and demo/summary.json are")
    ap.add_argument("--bench", metavar="DIR",
                    help="the benchmarks' files are here instead (`crs bench all --out DIR`)")
    a = ap.parse_args(argv)
    rows = evaluate(a.results, a.bench)
    print(common.table([[r["target"], " / ".join(_fmt(v) for v in r["values"]) + f" {r['unit']}",
                         " / ".join(r["limits"]), r["verdict"], r["commit"] or "-"]
                        for r in rows], ["target", "measured", "target", "", "commit"]))
    seen = set()
    for r in rows:
        f = r["machine_floors"]
        if isinstance(f, dict) and _num(f.get("disk_sync_idle_ms")) is not None and \
                r["source"] not in seen:
            seen.add(r["source"])
            print(f"{r['source']}: the machine as it ran: a disk sync "
                  f"{_fmt(_num(f.get('disk_sync_idle_ms')))} ms after idle "
                  f"({_fmt(_num(f.get('disk_sync_back_to_back_ms')))} back to back), its "
                  f"Python {_fmt(_num(f.get('python_idle_over_hot')))} x slower after idle")
    out = Path(a.bench) if a.bench else Path(a.results) / "bench"
    out = out / "targets.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"flat_means_at_most": FLAT, "targets": rows}, indent=1) + "\n")
    print(f"written: {out}")
    return 0
