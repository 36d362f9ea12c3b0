"""`crs experiment simulate SCENARIO`: outbreaks as discrete-event simulations whose every
report and decision goes through the project's SCS (controller.experiment.reactors), at
sizes Mininet cannot reach (Moore et al. 2003: V = 360,000 in 2^32 addresses).

A simulation scenario (scenarios/moore2003.yaml) names a population, the worm, a sweep of
reaction times R and the defences in the emulated scenarios' syntax; an emulated scenario
(demo.yaml, scale200.yaml) runs too, as the same population and worm with R = detection
delay + `--overhead-s` (issue 14, item 4; docs/experiments.md says how to compare).
Runs are spread over processes (one per core by default); each run's seed is `seed + r`,
so every defence faces the same outbreaks. Outputs: summary.json, timeline.csv and PNGs,
with the summaries of controller.experiment.stats.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import gzip
import json
import math
import multiprocessing
import os
import random
import sys
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from controller.config import ConfigError, Field, Validator, in_range, is_name, load_yaml, one_of
from controller.experiment import model, outbreak, reactors, stats
from controller.experiment import scenario as scn
from controller.worm.targets import parse_space

OUTBREAK_FRACTION = 0.10      # a run "took off" when more than this share was infected
THRESHOLD_MEAN = 0.01         # observed threshold: the mean final fraction crosses 1 %
TIMELINE_POINTS = 289         # grid of the timeline (every 5 min over 24 h)


@dataclass(frozen=True)
class SimScenario:
    name: str
    file: str
    population: outbreak.Population
    scan_rate: float
    local_preference: float
    infected_at_start: int
    reaction_time_s: tuple[float, ...]
    defences: tuple[scn.Defence, ...]
    duration_s: float
    runs: int
    seed: int
    # one report in this many goes the signed path (SCS.handle), the others enter at
    # SCS.accept (same decisions; controller.experiment.reactors); 1: every report
    signed_every: int = reactors.SIGNED_EVERY


@dataclass(frozen=True)
class Config:
    """One point of the design space: a defence with scalar parameters and one R."""

    defence: str
    label: str
    params: dict[str, Any]
    reaction_time_s: float | None


def _population_ok(p: dict[str, Any]) -> str | None:
    try:
        outbreak.Population(p["vulnerable"], p["omega"], p["cells"], p["cell_space"])
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


POPULATION = {
    "vulnerable": Field(int, required=True, check=in_range(1, 10 ** 8), doc="V"),
    "omega": Field(int, required=True, check=in_range(2, 2 ** 40), doc="scanned addresses"),
    "cells": Field(int, default=1, check=in_range(1, 10 ** 6),
                   doc="local-preference and sealing units (hosts spread evenly)"),
    "cell_space": Field(int, check=in_range(1, 2 ** 40),
                        doc="addresses per cell (default omega / cells)"),
}
SCHEMA = {
    "name": Field(str, required=True, check=is_name),
    "description": Field(str, default=""),
    "population": Field(dict, required=True, items=POPULATION),
    "scan_rate": Field(float, required=True, check=in_range(1e-6, 1e9), doc="probes/s"),
    "strategy": Field(str, default="uniform", check=one_of("uniform", "local")),
    "local_preference": Field(float, default=0.0, check=in_range(0.0, 1.0)),
    "infected_at_start": Field(int, default=1, check=in_range(1, 10 ** 8)),
    "reaction_time_s": Field((float, list), required=True, doc="R; a list is a sweep"),
    "defences": Field(list, required=True),
    "duration_s": Field(float, default=86400.0, check=in_range(1.0, 1e9)),
    "runs": Field(int, default=100, check=in_range(1, 100000)),
    "seed": Field(int, default=1, check=in_range(0, 2 ** 31)),
}


def parse(data: Any, file: str = "<simulation>") -> SimScenario:
    """Validate a simulation scenario; ConfigError lists every problem as FILE: KEY: PROBLEM."""
    v = Validator(file)
    d = v.mapping(data, SCHEMA)
    if not d:
        v.raise_if_any()
    pop = d["population"] or {}
    if not v.problems and pop:
        problem = _population_ok(pop)
        if problem:
            v.problem("population", problem)
    defences = tuple(scn.parse_defences(v, d["defences"] or []))
    rts = d["reaction_time_s"]
    rts = rts if isinstance(rts, list) else [rts]
    for i, r in enumerate(rts):
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r <= 1e9:
            v.problem(f"reaction_time_s[{i}]", f"{r!r} must be a number of seconds >= 0")
    if d["strategy"] == "local" and not d["local_preference"]:
        v.problem("local_preference", "strategy 'local' needs 0 < p <= 1")
    if d["strategy"] == "uniform" and d["local_preference"]:
        v.problem("local_preference", "only strategy 'local' takes a preference")
    if not v.problems and d["infected_at_start"] > pop["vulnerable"]:
        v.problem("infected_at_start", "more than the vulnerable population")
    v.raise_if_any()
    return SimScenario(d["name"], file, outbreak.Population(
        pop["vulnerable"], pop["omega"], pop["cells"], pop["cell_space"]), d["scan_rate"],
        d["local_preference"], d["infected_at_start"], tuple(float(r) for r in rts),
        defences, d["duration_s"], d["runs"], d["seed"])


def from_emulation(sc: scn.Scenario, overhead_s: float) -> SimScenario:
    """The emulated scenario's population and worm as a simulation: V, Omega, its cells,
    s, p, R = each detection delay + the reaction overhead. A cell spans what the emulated
    worm scans locally (`scenario.local_space`: its /24, of which scope_sweep's Omega holds
    a /25, so half its local probes find nothing), else Omega split evenly."""
    p = sc.local_preference if sc.strategy == "local" else 0.0
    per_cell = parse_space(scn.local_space(scn.terminal_ip(1, 1))).size if p else \
        sc.omega // sc.cells
    pop = outbreak.Population(sc.vulnerable, sc.omega, sc.cells,
                              min(sc.omega, max(-(-sc.vulnerable // sc.cells), per_cell)))
    return SimScenario(sc.name, sc.file, pop, sc.scan_rate, p, 1,
                       tuple(d + overhead_s for d in sc.detection_delay), sc.defences,
                       sc.duration_s, max(sc.runs, 10), sc.seeds[0])


def load(path: str | Path, overhead_s: float = 0.05) -> SimScenario:
    """A simulation scenario, or an emulated one (no `population` key) converted."""
    data = load_yaml(path)
    if isinstance(data, dict) and "population" not in data:
        return from_emulation(scn.parse_scenario(data, str(path)), overhead_s)
    return parse(data, str(path))


def configurations(sc: SimScenario) -> list[Config]:
    """Defences x their parameter sweeps x reaction times (`none` and the throttle, which
    do not react, once). The sweep expansion is the emulated scenarios' own."""
    out, seen = [], set()
    for spec in scn.expand(_as_emulated(sc)):
        base = spec.label.split(" delay=")[0]
        reacts = spec.defence in scn.DEFENCES and spec.defence not in ("none", "throttle")
        r = spec.detection_delay if reacts else None
        label = base if r is None else f"{base} R={r:.3g}s" if r < 60 else \
            f"{base} R={r / 60:.3g}min"
        if label not in seen:
            seen.add(label)
            out.append(Config(spec.defence, label, spec.params, r))
    return out


def _as_emulated(sc: SimScenario) -> scn.Scenario:
    """A stand-in emulated scenario for `scenario.expand` (R in the detection delay's
    place), so both tools expand sweeps the same way."""
    return scn.Scenario(name=sc.name, file=sc.file, topology="", cells=1, terminals_per_cell=1,
                        vulnerable_fraction=1.0, seed_host=None, scan_rate=sc.scan_rate,
                        strategy="uniform", local_preference=0.0, hitlist=None, space=(),
                        port=1, probe_size=0, detection_delay=sc.reaction_time_s,
                        defences=sc.defences, duration_s=sc.duration_s, seeds=(sc.seed,),
                        runs=1)


def make_reactor(sc: SimScenario, c: Config) -> outbreak.Reactor:
    cov = float(c.params.get("coverage_fraction", 1.0))
    if c.defence == "none":
        return reactors.NoDefence(sc.scan_rate)
    if c.defence == "throttle":
        return reactors.ThrottleReactor(sc.scan_rate, float(c.params["new_dest_per_s"]),
                                        sc.population, cov)
    assert c.reaction_time_s is not None
    return reactors.CrsReactor(c.defence, c.params, sc.population, sc.scan_rate,
                               c.reaction_time_s, sc.signed_every)


@contextlib.contextmanager
def without_gc() -> Iterator[None]:
    """The cyclic garbage collector paused: a run makes no cyclic garbage (refcounting frees
    it all; test_a_run_leaves_no_cyclic_garbage), so the collector would only walk the
    SCS's growing state again and again: 20-25 % of a run's CPU at 180,000 hosts."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def one_run(sc: SimScenario, c: Config, run: int) -> dict[str, Any]:
    """One simulated outbreak: final count, the curve on the timeline grid, its cost."""
    t0 = time.perf_counter()
    with without_gc():
        reactor = make_reactor(sc, c)
        ob = outbreak.run(sc.population, outbreak.Worm(sc.scan_rate, sc.local_preference,
                                                       sc.infected_at_start),
                          reactor, sc.duration_s, random.Random(sc.seed + run),
                          getattr(reactor, "group_cells", 1))
    grid = np.linspace(0.0, sc.duration_s, TIMELINE_POINTS)
    return {"run": run, "seed": sc.seed + run, "infected": len(ob.infection_times),
            "curve": ob.infected_at(grid).tolist(),
            "ended_s": ob.duration_s, "ends_recorded": True,
            "reports": getattr(reactor, "reports", 0),
            "reports_signed": getattr(reactor, "signed", 0),
            "cpu_s": time.perf_counter() - t0}


def _task(args: tuple[SimScenario, Config, int]) -> tuple[str, dict[str, Any]]:
    sc, c, run = args
    return c.label, one_run(sc, c, run)


def _cache_key(sc: SimScenario, c: Config) -> dict[str, Any]:
    """What a configuration's runs depend on: a cached file is reused only if it matches."""
    pop = sc.population
    return {"label": c.label, "params": c.params, "reaction_time_s": c.reaction_time_s,
            "population": [pop.vulnerable, pop.omega, pop.cells, pop.omega_cell],
            "scan_rate": sc.scan_rate, "local_preference": sc.local_preference,
            "infected_at_start": sc.infected_at_start, "duration_s": sc.duration_s,
            "runs": sc.runs, "seed": sc.seed}


def _kept_configuration(file: Path) -> dict[str, Any]:
    """A finished configuration's file (`<label>.json.gz`); empty if absent or unreadable
    (then its runs are made again)."""
    try:
        kept = json.loads(gzip.decompress(file.read_bytes()))
    except FileNotFoundError:
        return {}
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        print(f"{file}: unreadable ({exc}); its runs are made again", file=sys.stderr)
        return {}
    if not (isinstance(kept, dict) and isinstance(kept.get("runs"), list)
            and isinstance(kept.get("wall_s"), (int, float))):
        print(f"{file}: not a finished configuration; its runs are made again", file=sys.stderr)
        return {}
    return kept


def _kept_runs(file: Path, key: Any) -> tuple[list[dict[str, Any]], float]:
    """The runs of an unfinished configuration written so far (`file`: one JSON line each,
    after a line with the key) and the wall time they took; none if the key differs."""
    runs: list[dict[str, Any]] = []
    parts: dict[int, float] = {}
    try:
        lines = file.read_text().splitlines()
    except OSError:
        return [], 0.0
    try:
        if not lines or json.loads(lines[0]).get("key") != key:
            return [], 0.0
    except (ValueError, AttributeError):
        return [], 0.0
    for line in lines[1:]:
        try:        # (a line cut short when the sweep was stopped is skipped)
            rec = json.loads(line)
            run, part, part_s = rec["result"], rec["part"], float(rec["part_s"])
            if not isinstance(run.get("run"), int):
                continue
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        runs.append(run)
        parts[part] = max(parts.get(part, 0.0), part_s)
    return runs, sum(parts.values())


def _stored(sc: SimScenario, c: Config, cache: Path
            ) -> tuple[Any, dict[str, Any], Path, Path]:
    """What `cache` holds of a configuration: its key (as JSON gives it back), its finished
    file's content when that was made with this key (else {}), and the names of its
    finished file and of its file of runs so far."""
    from controller.experiment.runner import slug
    key = json.loads(json.dumps(_cache_key(sc, c)))
    file = cache / f"{slug(c.label)}.json.gz"
    kept = _kept_configuration(file)
    return key, kept if kept.get("key") == key else {}, file, \
        cache / f"{slug(c.label)}.partial.jsonl"


def run_all(sc: SimScenario, jobs: int | None = None, progress: bool = False,
            cache: Path | None = None
            ) -> tuple[list[Config], dict[str, list[dict[str, Any]]], dict[str, float]]:
    """Every run of every configuration, spread over `jobs` processes (default: cores);
    returns the configurations, their runs (by label) and each configuration's wall time.
    With `cache` (a folder), each finished configuration is kept there and reused by the
    next call with the same parameters, and each finished run of an unfinished one
    (`<label>.partial.jsonl`), so an interrupted sweep resumes where it stopped."""
    confs = configurations(sc)
    jobs = jobs or os.cpu_count() or 1
    by_label: dict[str, list[dict[str, Any]]] = {c.label: [] for c in confs}
    wall: dict[str, float] = {}
    outbreak.layout(sc.population)    # built once here, inherited by the forked workers
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs) as pool:
        for c in confs:      # one configuration at a time: its wall time is measured
            if cache is not None:
                key, kept, file, partial = _stored(sc, c, cache)
            else:
                key, kept, file, partial = None, {}, None, None
            if kept:
                by_label[c.label], wall[c.label] = kept["runs"], kept["wall_s"]
                continue
            done, before = _kept_runs(partial, key) if partial else ([], 0.0)
            done = [r for r in done if 0 <= r["run"] < sc.runs]
            have = {r["run"] for r in done}
            by_label[c.label] = list({r["run"]: r for r in done}.values())
            log = None
            if partial is not None:
                partial.parent.mkdir(parents=True, exist_ok=True)
                if not done:
                    partial.write_text(json.dumps({"key": key}) + "\n")
                log = open(partial, "a")
            part = int(time.time() * 1000)
            t0 = time.perf_counter()
            try:
                tasks = [(sc, c, r) for r in range(sc.runs) if r not in have]
                for label, res in pool.imap_unordered(_task, tasks, chunksize=1):
                    by_label[label].append(res)
                    if log is not None:     # flushed: a stop loses the runs in flight only
                        log.write(json.dumps({"part": part, "part_s": time.perf_counter()
                                              - t0, "result": res}) + "\n")
                        log.flush()
            finally:
                if log is not None:
                    log.close()
            wall[c.label] = before + time.perf_counter() - t0
            by_label[c.label].sort(key=lambda r: r["run"])
            if file is not None and partial is not None:
                # compressed, same bytes for the same runs: a long sweep's folder can be
                # committed and carried to the next machine (`--cache`)
                tmp = file.with_name(file.name + ".tmp")
                tmp.write_bytes(gzip.compress(json.dumps(
                    {"key": key, "wall_s": wall[c.label], "runs": by_label[c.label]}
                ).encode(), 9, mtime=0))
                tmp.replace(file)
                partial.unlink(missing_ok=True)
            if progress:
                fr = np.mean([r["infected"] for r in by_label[c.label]]) / sc.population.vulnerable
                print(f"{c.label:40s} {sc.runs} runs  mean infected {fr:8.4%}  "
                      f"{wall[c.label]:7.1f} s" + (f" (resumed at {len(have)} runs)"
                                                    if have else ""), flush=True)
    return confs, by_label, wall


def analyzed(sc: SimScenario, cache: Path
             ) -> tuple[list[Config], dict[str, list[dict[str, Any]]], dict[str, float],
                        dict[str, int]]:
    """What `cache` holds, running nothing: the finished configurations, their runs and
    wall times (as `run_all` returns them), and the others with their runs so far."""
    done: list[Config] = []
    by_label: dict[str, list[dict[str, Any]]] = {}
    wall: dict[str, float] = {}
    left: dict[str, int] = {}
    for c in configurations(sc):
        key, kept, _, partial = _stored(sc, c, cache)
        if kept:
            done.append(c)
            by_label[c.label], wall[c.label] = kept["runs"], kept["wall_s"]
        else:
            runs, _ = _kept_runs(partial, key)
            left[c.label] = len({r["run"] for r in runs if 0 <= r["run"] < sc.runs})
    return done, by_label, wall, left


def predictions(sc: SimScenario) -> dict[str, float]:
    pop = sc.population
    k = model.predicted_k(sc.scan_rate, pop.vulnerable, pop.omega)
    return {"predicted_k_per_s": k, "predicted_t50_s": model.t50(k, pop.vulnerable),
            "critical_reaction_s": model.critical_reaction_s(sc.scan_rate, pop.vulnerable,
                                                             pop.omega)}


def summarize_runs(sc: SimScenario, c: Config, runs: Sequence[dict[str, Any]],
                   wall_s: float) -> dict[str, Any]:
    """One configuration in summary.json (the emulated summaries' keys where they mean the
    same: infected_fraction is the median, _mean, _ci95, _p95, _per_run)."""
    V = sc.population.vulnerable
    fr = [r["infected"] / V for r in runs]
    d = stats.describe(fr, seeds=[r["seed"] for r in runs], digits=6)
    took_off = sum(f > OUTBREAK_FRACTION for f in fr)
    contained = sum(r["infected"] < V and r["ended_s"] < sc.duration_s for r in runs)
    # runs kept from before the engine recorded when a run ended cannot say whether they
    # were over: no containment share rather than a wrong one
    ends_known = all(r.get("ends_recorded") or r["infected"] == V for r in runs)
    out: dict[str, Any] = {
        "defence": c.defence, "configuration": c.label, **c.params,
        "reaction_time_s": c.reaction_time_s,
        "reaction_time_min": None if c.reaction_time_s is None else c.reaction_time_s / 60,
        "runs": len(runs), "vulnerable": V,
        "infected_fraction": d["median"], "infected_fraction_mean": d["mean"],
        "infected_fraction_ci95": d["ci95"], "infected_fraction_p95": d["p95"],
        "infected_fraction_per_run": [round(f, 6) for f in fr], "seeds": d["seeds"],
        "outbreak_fraction": stats.proportion(took_off, len(runs))["fraction"],
        "outbreak_fraction_ci95": stats.proportion(took_off, len(runs))["ci95"],
        "infected_hosts_mean": round(d["mean"] * V, 2),
        "contained_fraction": stats.proportion(contained, len(runs))["fraction"]
        if ends_known else None,
        "contained_fraction_ci95": stats.proportion(contained, len(runs))["ci95"]
        if ends_known else None,
        "reports_handled": sum(r["reports"] for r in runs),
        # runs kept from before SCS.accept had every report signed
        "reports_signed": sum(r.get("reports_signed", r["reports"]) for r in runs),
        "cpu_s": round(sum(r["cpu_s"] for r in runs), 2), "wall_s": round(wall_s, 2),
    }
    pred = predictions(sc)
    k = pred["predicted_k_per_s"]
    if c.defence == "crs_isolate" and c.reaction_time_s is not None:
        out["predicted_infected_fraction_mean"] = round(
            model.blacklist_mean_final_fraction(V, k, c.reaction_time_s), 6)
        out["content_filter_fraction"] = round(
            model.content_filter_final(V, k, c.reaction_time_s) / V, 6)
    if c.defence == "none":
        out.update(_logistic_check(sc, runs, k))
    return out


def _logistic_check(sc: SimScenario, runs: Sequence[dict[str, Any]], k: float) -> dict[str, Any]:
    """Undefended runs against the logistic model: per-run fitted K and t50."""
    V = sc.population.vulnerable
    grid = np.linspace(0.0, sc.duration_s, TIMELINE_POINTS)
    ks, t50s = [], []
    for r in runs:
        curve = np.asarray(r["curve"], float) / V
        try:
            ks.append(model.fit_logistic(grid, curve).k)
        except ValueError:
            pass
        if curve[-1] >= 0.5:
            t50s.append(float(np.interp(0.5, curve, grid)))
    out: dict[str, Any] = {}
    if ks:
        fk = stats.describe(ks, digits=9)
        out.update({"fitted_k_per_s": fk["median"], "fitted_k_ci95": fk["ci95"],
                    "fitted_k_error_fraction": round(fk["median"] / k - 1, 4)})
    if t50s:
        t = stats.describe(t50s, digits=1)
        pt50 = model.t50(k, V)
        out.update({"t50_s": t["median"], "t50_s_mean": t["mean"], "t50_s_ci95": t["ci95"],
                    "predicted_t50_s": round(pt50, 1),
                    "t50_error_fraction": round(t["median"] / pt50 - 1, 4)})
    return out


def observed_threshold(confs: Sequence[dict[str, Any]], defence: str = "crs_isolate"
                       ) -> float | None:
    """The reaction time (s) where the mean final fraction of `defence` (full deployment)
    first crosses THRESHOLD_MEAN, interpolated on log R; None if it never does."""
    pts = sorted((c["reaction_time_s"], c["infected_fraction_mean"]) for c in confs
                 if c["defence"] == defence and c.get("coverage_fraction", 1.0) == 1.0
                 and c["reaction_time_s"])
    for (r0, f0), (r1, f1) in zip(pts, pts[1:]):
        if f0 < THRESHOLD_MEAN <= f1:
            x = (THRESHOLD_MEAN - f0) / (f1 - f0)
            return round(math.exp(math.log(r0) + x * (math.log(r1) - math.log(r0))), 1)
    return None


def timeline_rows(sc: SimScenario, confs: Sequence[Config],
                  by_label: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per configuration and grid time: mean and median infected fraction across runs, and
    the 2.5-97.5 % spread of the runs (not an interval of the mean)."""
    grid = np.linspace(0.0, sc.duration_s, TIMELINE_POINTS)
    V = sc.population.vulnerable
    rows = []
    for c in confs:
        curves = np.array([r["curve"] for r in by_label[c.label]], float) / V
        mean, med = curves.mean(axis=0), np.median(curves, axis=0)
        lo, hi = np.quantile(curves, [0.025, 0.975], axis=0)
        for i, t in enumerate(grid):
            rows.append({"time_s": round(float(t), 1), "configuration": c.label,
                         "infected_fraction_mean": round(float(mean[i]), 6),
                         "infected_fraction_median": round(float(med[i]), 6),
                         "runs_p2_5": round(float(lo[i]), 6), "runs_p97_5": round(float(hi[i]), 6)})
    return rows


def machine() -> dict[str, Any]:
    """The machine and commit (no Open vSwitch here: the simulation does not need it)."""
    import platform

    from controller.bench.common import commit
    return {"cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "commit": commit()}


def simulate(path: str | Path, out_dir: str | Path, jobs: int | None = None,
             runs: int | None = None, overhead_s: float = 0.05,
             progress: bool = False, signed: bool = False,
             cache: str | Path | None = None, analyze: bool = False) -> dict[str, Any]:
    """Run a scenario and write summary.json, timeline.csv and the figures into out_dir.
    `signed`: every report signed and handled by SCS.handle (else one in SIGNED_EVERY).
    `cache`: where finished configurations and runs are kept (default out_dir/runs).
    `analyze`: run nothing, summarize the configurations finished in `cache` (a sweep still
    under way); the others are listed under "unfinished" with their runs so far."""
    sc = load(path, overhead_s)
    if runs:
        sc = replace(sc, runs=runs)
    if signed:
        sc = replace(sc, signed_every=1)
    t0 = time.perf_counter()
    out = Path(out_dir)
    cache = Path(cache) if cache else out / "runs"
    if analyze:
        confs, by_label, wall, left = analyzed(sc, cache)
    else:
        (confs, by_label, wall), left = run_all(sc, jobs, progress, cache=cache), {}
    if not confs:
        raise ConfigError([(sc.file, "--analyze", f"no configuration is finished in {cache}")])
    summaries = [summarize_runs(sc, c, by_label[c.label], wall[c.label]) for c in confs]
    pop = sc.population
    summary = {
        "scenario": {"name": sc.name, "file": sc.file, "vulnerable": pop.vulnerable,
                     "omega": pop.omega, "cells": pop.cells, "cell_space": pop.omega_cell,
                     "scan_rate_per_s": sc.scan_rate,
                     "local_preference_fraction": sc.local_preference,
                     "infected_at_start": sc.infected_at_start,
                     "reaction_time_s": list(sc.reaction_time_s), "duration_s": sc.duration_s,
                     "runs": sc.runs, "seed": sc.seed, "overhead_s": overhead_s,
                     "signed_every": sc.signed_every},
        **{k: round(v, 9) for k, v in predictions(sc).items()},
        "observed_threshold_s": observed_threshold(summaries),
        "threshold_rule": f"mean final fraction of crs_isolate crosses {THRESHOLD_MEAN:g}",
        "wall_s": round(time.perf_counter() - t0, 1), "jobs": jobs or os.cpu_count(),
        "machine": machine(), "runs": summaries,
        "analyzed": analyze,     # True: summarized from the cache (its runs' machine unknown)
        "unfinished": left}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    rows = timeline_rows(sc, confs, by_label)
    with open(out / "timeline.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    from controller.experiment import plots
    plots.plot_simulation(summary, rows, out)
    return summary


def format_table(summary: dict[str, Any]) -> str:
    head = ["configuration", "runs", "mean infected [95% CI]", "median", "took off",
            "wall s"]
    rows = [[c["configuration"], str(c["runs"]),
             f"{c['infected_fraction_mean']:.4%} [{c['infected_fraction_ci95'][0]:.4%}, "
             f"{c['infected_fraction_ci95'][1]:.4%}]", f"{c['infected_fraction']:.4%}",
             f"{c['outbreak_fraction']:.0%}", f"{c['wall_s']:.1f}"] for c in summary["runs"]]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(x.ljust(w) for x, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crs experiment simulate",
                                description="Simulate a worm outbreak (no Mininet) with the "
                                            "project's SCS deciding every report.")
    p.add_argument("scenario", help="e.g. scenarios/moore2003.yaml, or an emulated scenario")
    p.add_argument("--out", help="output folder (default: results/sim-<name>)")
    p.add_argument("--runs", type=int, help="override runs per configuration")
    p.add_argument("--jobs", type=int, help="processes (default: one per core)")
    p.add_argument("--overhead-s", type=float, default=0.05,
                   help="emulated scenarios: R = detection delay + this (default 0.05 s, "
                        "the reaction latency measured on mobile_core)")
    p.add_argument("--cache", help="folder of finished configurations and runs (default: "
                                   "OUT/runs); a sweep too long for one machine resumes from "
                                   "a copy of it, e.g. one committed with the results")
    p.add_argument("--analyze", action="store_true",
                   help="run nothing: summarize the configurations finished in the cache "
                        "(a design space still under way) and list the others")
    p.add_argument("--signed", action="store_true",
                   help="every report signed, decoded and verified by SCS.handle (default: "
                        f"one in {reactors.SIGNED_EVERY}; the others enter after that "
                        "check, SCS.accept: same decisions, a fifth of a report's cost)")
    return p


def main(argv: list[str] | None = None) -> int:
    """0: done; 2: bad scenario or arguments."""
    try:
        a = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    try:
        name = load(a.scenario, a.overhead_s).name
        summary = simulate(a.scenario, a.out or f"results/sim-{name}", a.jobs, a.runs,
                           a.overhead_s, progress=True, signed=a.signed, cache=a.cache,
                           analyze=a.analyze)
    except (ConfigError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(format_table(summary))
    if summary["unfinished"]:
        print(f"not finished ({len(summary['unfinished'])}; runs so far of "
              f"{summary['scenario']['runs']}): " +
              ", ".join(f"{label} {n}" for label, n in summary["unfinished"].items()))
    print(f"critical R = Omega/(s*V) = {summary['critical_reaction_s'] / 60:.1f} min; "
          f"observed threshold: {summary['observed_threshold_s']} s; "
          f"total {summary['wall_s']} s on {summary['jobs']} processes")
    return 0
