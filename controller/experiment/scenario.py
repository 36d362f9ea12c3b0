"""Experiment scenarios: the YAML schema, its validation, and the pure planning of runs.

A scenario names a topology and the worm's parameters, and lists the defences to compare.
Validation goes through controller.config, so every problem reads ``FILE: KEY: PROBLEM``.
Planning is pure: `expand()` lists every run (defence x sweep value x run index) with its
seed, `plan_hosts()` says which terminals are vulnerable and which one is the seed, and
`worm_argv()` is the command line of controller.worm.host for one terminal. The runner
(Mininet side) only has to start those commands and collect the events files.
"""
from __future__ import annotations

import ipaddress
import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.config import (
    ConfigError,
    Field,
    Validator,
    in_range,
    is_ipv4_network,
    is_name,
    load_yaml,
    one_of,
)
from controller.worm.targets import STRATEGIES, TargetError, parse_space

DEFENCES = ("none", "crs_isolate", "crs_rate_limit", "cell_seal", "throttle")

# Parameters each defence accepts, with defaults. Any of them may be a list: a sweep.
DEFENCE_PARAMS: dict[str, dict[str, float]] = {
    "none": {},
    "crs_isolate": {},
    "crs_rate_limit": {"rate_kbps": 2.0, "rate_pps": 0.0},     # rate_pps > 0: packets/s
    "cell_seal": {"scope_cells": 1, "seal_m": 3},
    "throttle": {"working_set": 5, "new_dest_per_s": 1.0},
}
COMMON_PARAMS = {"coverage_fraction": 1.0}
INT_PARAMS = {"scope_cells", "working_set", "seal_m"}
PARAM_RANGES = {"rate_kbps": (1.0, 1e7), "rate_pps": (0.0, 1e7), "scope_cells": (1, 255),
                "seal_m": (1, 100000), "working_set": (1, 1000),
                "new_dest_per_s": (0.01, 1e4), "coverage_fraction": (0.0, 1.0)}


@dataclass(frozen=True)
class Defence:
    """One entry of `defences`: a name, a label for tables/plots, and parameters
    (scalars, or lists for sweeps)."""

    name: str
    label: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    name: str
    file: str
    topology: str
    cells: int
    terminals_per_cell: int
    vulnerable_fraction: float
    seed_host: str | None
    scan_rate: float
    strategy: str
    local_preference: float
    hitlist: str | None
    space: tuple[str, ...]
    port: int
    probe_size: int
    detection_delay: tuple[float, ...]
    defences: tuple[Defence, ...]
    duration_s: float
    seeds: tuple[int, ...]
    runs: int
    shaping: bool = False           # apply the topology's link bandwidth/delay (tc)
    authenticate: bool = False      # every run: terminals authenticate (X.1124), not only CRS

    @property
    def terminals(self) -> int:
        return self.cells * self.terminals_per_cell

    @property
    def vulnerable(self) -> int:
        return vulnerable_count(self.terminals, self.vulnerable_fraction)

    @property
    def omega(self) -> int:
        return parse_space(self.space).size


@dataclass(frozen=True)
class RunSpec:
    """One run: a defence with scalar parameters, a detection delay, a seed."""

    scenario: str
    defence: str
    label: str                      # defence label plus sweep values, unique per configuration
    params: dict[str, Any]
    detection_delay: float
    run: int                        # 0..runs-1
    seed: int

    @property
    def config_label(self) -> str:
        return self.label


@dataclass(frozen=True)
class HostPlan:
    name: str
    ip: str
    cell: int
    vulnerable: bool
    seed_host: bool


def vulnerable_count(terminals: int, fraction: float) -> int:
    """At least one (the seed must be vulnerable), otherwise round(fraction * terminals)."""
    return max(1, min(terminals, round(fraction * terminals)))


def _positive(value: float) -> str | None:
    return None if value > 0 else f"{value} must be > 0"


def _non_negative_numbers(value: Any) -> str | None:
    values = value if isinstance(value, list) else [value]
    if not values:
        return "empty list"
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            return f"{v!r} is not a number >= 0"
    return None


def _unique_ints(value: list[int]) -> str | None:
    if not value:
        return "at least one seed is needed"
    if len(set(value)) != len(value):
        return "seeds repeat"
    return None


SCHEMA = {
    "name": Field(str, required=True, check=is_name, doc="scenario name (results/<name>)"),
    "description": Field(str, default=""),
    "topology": Field(str, required=True, doc="topology YAML, e.g. topologies/mobile_core.yaml"),
    "cells": Field(int, default=3, check=in_range(1, 200)),
    "terminals_per_cell": Field(int, required=True, check=in_range(1, 250)),
    "vulnerable_fraction": Field(float, default=1.0, check=in_range(0.0, 1.0)),
    "seed_host": Field(str, doc="terminal infected at start (default: a random vulnerable one)"),
    "scan_rate": Field(float, default=3.0, check=_positive, doc="probes/s per infected host"),
    "strategy": Field(str, default="uniform", check=one_of(*STRATEGIES)),
    "local_preference": Field(float, default=0.0, check=in_range(0.0, 1.0)),
    "hitlist": Field(str, doc="file of addresses, strategy hitlist"),
    "space": Field((list, str), doc="scanned CIDRs (default: the first /25 of every cell)"),
    "port": Field(int, default=4444, check=in_range(1, 65535)),
    "probe_size": Field(int, default=376, check=in_range(0, 1400)),
    "shaping": Field(bool, default=False,
                     doc="apply the topology's link bandwidth and delay (tc); off by default"),
    "authenticate": Field(bool, default=False,
                          doc="terminals authenticate (802.1X) in every run, also without CRS"),
    "detection_delay": Field((float, list), default=1.0, check=_non_negative_numbers,
                             doc="seconds; a list is a sweep"),
    "defences": Field(list, required=True),
    "duration_s": Field(float, required=True, check=_positive),
    "seeds": Field(list, default=[1], items=Field(int), check=_unique_ints),
    "runs": Field(int, check=in_range(1, 10000),
                  doc="runs per configuration (default: len(seeds))"),
}


def load_scenario(path: str | Path, check_files: bool = True) -> Scenario:
    """Load and validate a scenario; raises ConfigError listing every problem.
    `check_files` also requires the topology (and hitlist) files to exist, looked up
    relative to the current directory, then the scenario's folder and its parent."""
    path = Path(path)
    return parse_scenario(load_yaml(path), str(path), check_files)


def parse_scenario(data: Any, file: str = "<scenario>", check_files: bool = False) -> Scenario:
    v = Validator(file)
    d = v.mapping(data, SCHEMA)
    if not d:
        v.raise_if_any()
    defences = tuple(parse_defences(v, d.get("defences") or []))
    cells, tpc = d["cells"], d["terminals_per_cell"]
    space = d["space"]
    if space is None:
        space = [f"10.0.{c}.0/25" for c in range(1, (cells or 1) + 1)]
    elif isinstance(space, str):
        space = [s.strip() for s in space.split(",")]
    for i, cidr in enumerate(space):
        problem = is_ipv4_network(cidr) if isinstance(cidr, str) else "expected a string"
        if problem:
            v.problem(f"space[{i}]", problem)
    if not v.problems and isinstance(cells, int) and isinstance(tpc, int):
        _check_population(v, d, space, cells, tpc)
    if d["strategy"] == "hitlist" and not d["hitlist"]:
        v.problem("hitlist", "strategy 'hitlist' needs a hitlist file")
    if d["strategy"] == "local" and d["local_preference"] == 0:
        v.problem("local_preference",
                  "strategy 'local' with preference 0 is uniform; set 0 < p <= 1")
    if check_files:
        base = Path(file).parent
        for key in ("topology", "hitlist"):
            if d.get(key) and _find(d[key], base) is None:
                v.problem(key, f"file {d[key]!r} not found")
    seeds = d["seeds"] or [1]
    runs = d["runs"] or len(seeds)
    delays = d["detection_delay"]
    delays = tuple(float(x) for x in (delays if isinstance(delays, list) else [delays]))
    v.raise_if_any()
    return Scenario(name=d["name"], file=file, topology=d["topology"], cells=cells,
                    terminals_per_cell=tpc, vulnerable_fraction=d["vulnerable_fraction"],
                    seed_host=d["seed_host"], scan_rate=d["scan_rate"], strategy=d["strategy"],
                    local_preference=d["local_preference"], hitlist=d["hitlist"],
                    space=tuple(space), port=d["port"], probe_size=d["probe_size"],
                    detection_delay=delays, defences=defences, duration_s=d["duration_s"],
                    seeds=tuple(seeds), runs=runs, shaping=d["shaping"],
                    authenticate=d["authenticate"])


def _find(name: str, base: Path) -> Path | None:
    p = Path(name)
    for cand in ([p] if p.is_absolute() else [p, base / p, base.parent / p]):
        if cand.exists():
            return cand
    return None


def _check_population(v: Validator, d: dict[str, Any], space: list[str], cells: int,
                      tpc: int) -> None:
    if tpc > 254:
        v.problem("terminals_per_cell", "at most 254 terminals fit in a cell's 10.0.<cell>.0/24")
    try:
        omega = parse_space(space)
    except TargetError as exc:
        v.problem("space", str(exc))
        return
    ips = [terminal_ip(c, t) for c in range(1, cells + 1) for t in range(1, tpc + 1)]
    inside = sum(ip in omega for ip in ips)
    if inside == 0:
        v.problem("space", "contains none of the terminals (10.0.<cell>.<n>): nothing to infect")
    if d["seed_host"] is not None:
        names = {terminal_name(c, t) for c in range(1, cells + 1) for t in range(1, tpc + 1)}
        if d["seed_host"] not in names:
            v.problem("seed_host", f"{d['seed_host']!r} is not a terminal (c1t1..c{cells}t{tpc})")


def parse_defences(v: Validator, items: list[Any]) -> list[Defence]:
    """The `defences` list (names or mappings with parameters and sweeps), validated."""
    out, labels = [], set()
    for i, item in enumerate(items):
        key = f"defences[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            v.problem(key, "expected a defence name or a mapping with 'name'")
            continue
        name = item.get("name")
        if name not in DEFENCES:
            v.problem(f"{key}.name", f"{name!r} is not one of {', '.join(DEFENCES)}")
            continue
        allowed = {**COMMON_PARAMS, **DEFENCE_PARAMS[name]}
        schema = {"name": Field(str, required=True), "label": Field(str, check=is_name)}
        for p, default in allowed.items():
            schema[p] = Field((float, list) if p not in INT_PARAMS else (int, list),
                              default=default)
        d = v.mapping(item, schema, key)
        params = {}
        for p in allowed:
            values = d.get(p)
            values = values if isinstance(values, list) else [values]
            lo, hi = PARAM_RANGES[p]
            for j, x in enumerate(values):
                kind = int if p in INT_PARAMS else (int, float)
                if isinstance(x, bool) or not isinstance(x, kind) or not lo <= x <= hi:
                    v.problem(f"{key}.{p}" + (f"[{j}]" if isinstance(d.get(p), list) else ""),
                              f"{x!r} must be a {'whole ' if p in INT_PARAMS else ''}"
                              f"number in {lo}..{hi}")
            params[p] = d.get(p)
        label = d.get("label") or name
        if label in labels:
            v.problem(f"{key}.label", f"label {label!r} used twice; give each entry its own label")
        labels.add(label)
        out.append(Defence(name=name, label=label, params=params))
    if not items:
        v.problem("defences", "list at least one defence (e.g. none)")
    return out


# --- planning ----------------------------------------------------------------------------

def terminal_name(cell: int, n: int) -> str:
    return f"c{cell}t{n}"


def terminal_ip(cell: int, n: int) -> str:
    return f"10.0.{cell}.{n}"


def local_space(ip: str) -> str:
    """What a local-preference worm on `ip` scans when it stays local: the subnet of its
    interface (a cell's /24), as Code Red II prefers its own network, whether or not the
    scenario's `space` (Omega) covers all of it."""
    return str(ipaddress.IPv4Network(f"{ip}/24", strict=False))


def expand(sc: Scenario) -> list[RunSpec]:
    """Every run of the scenario: defences x their sweep values x detection delays x runs.
    Run r uses seeds[r], or seeds[-1] + (r - len(seeds) + 1) beyond the list; the same seed
    gives the same vulnerable set, seed host and scan sequences for every defence, so
    defences are compared on identical outbreaks."""
    specs = []
    sweep_delay = len(sc.detection_delay) > 1
    for d in sc.defences:
        keys = sorted(d.params)
        grids = [d.params[k] if isinstance(d.params[k], list) else [d.params[k]] for k in keys]
        swept = [k for k, g in zip(keys, grids) if isinstance(d.params[k], list)]
        delays = sc.detection_delay if d.name != "none" else sc.detection_delay[:1]
        for combo in itertools.product(*grids):
            params = dict(zip(keys, combo))
            for delay in delays:
                parts = [d.label] + [f"{k}={_fmt(params[k])}" for k in swept]
                if sweep_delay and d.name != "none":
                    parts.append(f"delay={_fmt(delay)}s")
                label = " ".join(parts)
                for r in range(sc.runs):
                    specs.append(RunSpec(sc.name, d.name, label, params, delay, r, run_seed(sc, r)))
    return specs


def run_seed(sc: Scenario, run: int) -> int:
    if run < len(sc.seeds):
        return sc.seeds[run]
    return sc.seeds[-1] + run - len(sc.seeds) + 1


def _fmt(x: float) -> str:
    return f"{x:g}"


def plan_hosts(sc: Scenario, seed: int) -> list[HostPlan]:
    """Which terminals are vulnerable and which is the seed, fixed by the run's seed."""
    names = [(c, t) for c in range(1, sc.cells + 1) for t in range(1, sc.terminals_per_cell + 1)]
    rng = random.Random(f"plan:{seed}")
    space = parse_space(sc.space)
    candidates = [ct for ct in names if terminal_ip(*ct) in space]
    fixed = None
    if sc.seed_host is not None:
        fixed = next(ct for ct in names if terminal_name(*ct) == sc.seed_host)
    nvul = vulnerable_count(len(names), sc.vulnerable_fraction)
    pool = [ct for ct in names if ct != fixed]
    vulnerable = set(rng.sample(pool, nvul - (fixed is not None)))
    if fixed is not None:
        vulnerable.add(fixed)
        seed_ct = fixed
    else:
        choices = sorted(vulnerable & set(candidates)) or sorted(vulnerable)
        seed_ct = rng.choice(choices)
    return [HostPlan(terminal_name(c, t), terminal_ip(c, t), c, (c, t) in vulnerable,
                     (c, t) == seed_ct) for c, t in names]


def worm_argv(sc: Scenario, spec: RunSpec, host: HostPlan, posture: str | Path,
              events: str | Path, hitlist: str | Path | None = None,
              python: str = "python3") -> list[str]:
    """The command that starts the worm on one terminal for one run."""
    argv = [python, "-m", "controller.worm.host", "--name", host.name, "--ip", host.ip,
            "--posture", str(posture), "--events", str(events), "--port", str(sc.port),
            "--vulnerable" if host.vulnerable else "--not-vulnerable",
            "--scan-rate", _fmt(sc.scan_rate), "--strategy", sc.strategy,
            "--space", ",".join(sc.space),
            "--local-space", local_space(host.ip),
            "--local-preference", _fmt(sc.local_preference),
            "--detection-delay", _fmt(spec.detection_delay), "--seed", str(spec.seed),
            "--duration", _fmt(sc.duration_s), "--probe-size", str(sc.probe_size)]
    if sc.strategy == "hitlist":
        argv += ["--hitlist", str(hitlist or sc.hitlist)]
    if host.seed_host:
        argv.append("--infected")
    return argv


def describe(sc: Scenario) -> dict[str, Any]:
    """The scenario's parameters as plain data, for summary.json."""
    return {"name": sc.name, "topology": sc.topology, "cells": sc.cells,
            "terminals_per_cell": sc.terminals_per_cell, "terminals": sc.terminals,
            "vulnerable": sc.vulnerable, "vulnerable_fraction": sc.vulnerable_fraction,
            "scan_rate_per_s": sc.scan_rate, "strategy": sc.strategy,
            "local_preference_fraction": sc.local_preference, "space": list(sc.space),
            "omega": sc.omega, "detection_delay_s": list(sc.detection_delay),
            "duration_s": sc.duration_s, "runs": sc.runs, "seeds": list(sc.seeds),
            "probe_size_bytes": sc.probe_size, "shaping": sc.shaping,
            "authenticate": sc.authenticate,
            "defences": [{"name": d.name, "label": d.label, **d.params} for d in sc.defences]}


__all__ = ["ConfigError", "DEFENCES", "Defence", "HostPlan", "RunSpec", "Scenario",
           "describe", "expand", "load_scenario", "parse_scenario", "plan_hosts", "run_seed",
           "terminal_ip", "terminal_name", "vulnerable_count", "worm_argv"]
