"""The discrete-event outbreak simulation (controller.experiment.outbreak), its defences
decided by the project's SCS (reactors) and `crs experiment simulate` (simulate).

Populations are reduced for speed with K = s*V/Omega of the Code-Red-sized design
(V = 360,000 in 2^32 at 10 probes/s), so the threshold R = 1/K stays at 19.9 min."""
from __future__ import annotations

import gzip
import json
import random
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest

from controller.config import ConfigError
from controller.crs.decision import Decision, Level
from controller.experiment import model, outbreak, reactors, simulate

ROOT = Path(__file__).resolve().parents[2]
S = 10.0
K = S * 360_000 / 2 ** 32                  # per second; 1/K = 1193 s


def population(v: int, cells: int = 10) -> outbreak.Population:
    return outbreak.Population(v, round(S * v / K), cells)


class Recorder(reactors.NoDefence):
    """No defence, remembering which hosts were infected."""

    def __init__(self, rate: float):
        super().__init__(rate)
        self.hosts: list[int] = []

    def infected(self, host, t):
        self.hosts.append(host)
        return super().infected(host, t)


def run(pop, reactor, seed, p=0.0, duration=86_400.0):
    return outbreak.run(pop, outbreak.Worm(S, p), reactor, duration, random.Random(seed))


def test_fenwick_samples_by_cumulative_weight():
    w = [0.0, 2.0, 0.0, 1.0, 3.0]
    f = outbreak.Fenwick(len(w))
    for i, x in enumerate(w):
        f.add(i, x)
    cum = np.cumsum(w)
    for u in np.linspace(0, 5.999, 50):
        assert f.find(float(u)) == int(np.searchsorted(cum, u, side="right"))


def test_deterministic_given_a_seed():
    pop = population(2000)
    a = run(pop, reactors.NoDefence(S), 5)
    b = run(pop, reactors.NoDefence(S), 5)
    c = run(pop, reactors.NoDefence(S), 6)
    assert a.infection_times == b.infection_times != c.infection_times


def test_undefended_matches_the_logistic_model_within_5_percent():
    v = 20_000
    pop = population(v)
    grid = np.linspace(0, 86_400, 289)
    ks, t50s = [], []
    for seed in range(12):
        ob = run(pop, reactors.NoDefence(S), seed)
        curve = ob.infected_at(grid) / v
        ks.append(model.fit_logistic(grid, curve).k)
        t50s.append(float(np.interp(0.5, curve, grid)))
    assert statistics.median(ks) == pytest.approx(K, rel=0.05)
    assert statistics.median(t50s) == pytest.approx(model.t50(K, v), rel=0.05)


def test_blacklisting_contains_below_the_threshold_and_not_above():
    v = 2000
    pop = population(v)
    below, above = [], []
    for seed in range(10):
        r = reactors.CrsReactor("crs_isolate", {}, pop, S, 0.5 / K)
        below.append(len(run(pop, r, seed).infection_times) / v)
        r = reactors.CrsReactor("crs_isolate", {}, pop, S, 2.5 / K)
        above.append(len(run(pop, r, seed).infection_times) / v)
        reported = sum(t.last_report is not None for t in r.scs.terminals.values())
        assert r.reports == reported                         # every infected host reported
    assert statistics.fmean(below) < 0.01                    # 1/(1-0.5) = 2 hosts expected
    # above: take-off with probability 1-q = 0.89, then z = 0.89 of V: mean 0.80
    assert model.blacklist_mean_final_fraction(v, K, 2.5 / K) == pytest.approx(0.797, abs=0.005)
    assert statistics.fmean(above) == pytest.approx(0.797, abs=0.15)


def test_every_infected_host_is_decided_by_the_scs():
    pop = population(3000)
    r = reactors.CrsReactor("crs_isolate", {}, pop, S, 1.5 / K)
    ob = run(pop, r, 3)
    terms = r.scs.terminals
    assert len(terms) == len(ob.infection_times)
    reported = [t for t in terms.values() if t.last_report is not None]
    assert reported and all(t.decision.level is Level.INFECTED and t.decision.isolate
                            for t in reported)


def test_partial_deployment_evaluates_everyone_but_restricts_only_covered_cells():
    v = 3000
    pop = population(v)
    r = reactors.CrsReactor("crs_isolate", {"coverage_fraction": 0.5}, pop, S, 0.3 / K)
    ob = outbreak.run(pop, outbreak.Worm(S, seeds=20), r, 86_400.0, random.Random(2))
    assert len(ob.infection_times) / v > 0.9      # uncovered cells keep scanning
    uncovered = [t for t in r.scs.terminals.values() if t.dpid > 5 and t.last_report]
    assert uncovered and all(t.decision.isolate for t in uncovered)   # decided anyway
    full = reactors.CrsReactor("crs_isolate", {}, pop, S, 0.3 / K)
    ob = outbreak.run(pop, outbreak.Worm(S, seeds=20), full, 86_400.0, random.Random(2))
    assert len(ob.infection_times) / v < 0.05


def test_cell_seal_confines_infections_to_the_seed_cell():
    pop = population(3000)
    r = reactors.CrsReactor("cell_seal", {"scope_cells": 1}, pop, S, 0.0)
    run(pop, r, 4, duration=40_000)
    groups = {t.group for t in r.scs.terminals.values()}
    assert len(groups) == 1 and len(r.scs.terminals) > 3      # the cell burns, alone
    assert r.scs.corr.sealed == groups


def test_local_preference_one_stays_in_the_seed_cell():
    pop = outbreak.Population(2000, 2 ** 20, 10, 400)
    rec = Recorder(S)
    run(pop, rec, 1, p=1.0, duration=600)
    assert len(rec.hosts) > 10 and len({pop.cell_of(h) for h in rec.hosts}) == 1


def test_throttle_slows_the_spread_by_s_over_r():
    v = 20_000
    pop = population(v)
    t_none = run(pop, reactors.NoDefence(S), 1).infection_times[v // 2]
    throttled = run(pop, reactors.ThrottleReactor(S, S / 2, pop), 1, duration=200_000)
    assert throttled.infection_times[v // 2] / t_none == pytest.approx(2.0, rel=0.1)


def test_decisions_become_controls_as_table_1_would_enforce_them():
    iso = Decision(Level.INFECTED, ("isolate",), scope="none", isolate=True)
    assert reactors.control_of(iso, S) == outbreak.Control(0.0, "none")
    metered = Decision(Level.INFECTED, ("rate_limit",), meter_kbps=8)
    assert reactors.control_of(metered, S).rate == pytest.approx(8000 / (8 * 418))
    grp = Decision(Level.INFECTED, ("permit",), scope="group")
    assert reactors.control_of(grp, S) == outbreak.Control(S, "group")
    # a packets/s band: the scanner sends at most that many probes (S = 10/s here)
    pps = Decision(Level.INFECTED, ("rate_limit",), meter_pps=1)
    assert reactors.control_of(pps, S) == outbreak.Control(1.0, "all")


def test_scenario_validation_names_file_and_key(tmp_path):
    bad = {"name": "x", "population": {"vulnerable": 10, "omega": 5}, "scan_rate": 1,
           "reaction_time_s": [60, -1], "defences": ["none", {"name": "cell_seal",
                                                               "scope_cells": 2.5}]}
    with pytest.raises(ConfigError) as e:
        simulate.parse(bad, "sim.yaml")
    text = str(e.value)
    assert "sim.yaml: population:" in text and "reaction_time_s[1]" in text
    assert "defences[1].scope_cells" in text
    sc = simulate.load(ROOT / "scenarios" / "moore2003.yaml")
    assert sc.population.vulnerable == 360_000 and sc.population.omega == 2 ** 32
    labels = [c.label for c in simulate.configurations(sc)]
    assert labels.count("none") == 1 and labels.count("throttle") == 1
    assert len(labels) == 2 + 4 * len(sc.reaction_time_s)
    th = simulate.load(ROOT / "scenarios" / "moore2003_threshold.yaml")
    assert min(th.reaction_time_s) < 1 / K < max(th.reaction_time_s) and th.runs == 100


def test_emulated_scenarios_run_as_simulations():
    sc = simulate.load(ROOT / "scenarios" / "demo.yaml", overhead_s=0.05)
    assert (sc.population.vulnerable, sc.population.omega) == (24, 378)
    assert sc.reaction_time_s == (1.05,) and sc.runs >= 10


def test_observed_threshold_interpolates_the_crossing():
    confs = [{"defence": "crs_isolate", "reaction_time_s": r, "infected_fraction_mean": f}
             for r, f in ((600, 0.0), (1200, 0.005), (1500, 0.1))]
    t = simulate.observed_threshold(confs)
    assert 1200 < t < 1300
    assert simulate.observed_threshold(confs[:2]) is None


def test_simulate_writes_summary_timeline_and_figures(tmp_path):
    doc = {"name": "tiny", "population": {"vulnerable": 500, "omega": round(S * 500 / K),
                                          "cells": 5},
           "scan_rate": S, "reaction_time_s": [300, 3000], "duration_s": 86_400,
           "defences": ["none", "crs_isolate"], "runs": 4, "seed": 3}
    f = tmp_path / "tiny.yaml"
    f.write_text(json.dumps(doc))
    summary = simulate.simulate(f, tmp_path / "out", jobs=1)
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["runs"] == summary["runs"] and len(summary["runs"]) == 3
    none, low, high = summary["runs"]
    assert none["seeds"] == [3, 4, 5, 6] and none["infected_fraction_mean"] == 1.0
    assert low["infected_fraction_ci95"][0] <= low["infected_fraction_mean"]
    assert low["reports_handled"] >= 4 and high["infected_fraction_mean"] > \
        low["infected_fraction_mean"]
    assert summary["critical_reaction_s"] == pytest.approx(1 / K, rel=1e-3)
    for name in ("timeline.csv", "timeline.png", "reaction.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    # finished configurations are kept: a second call reuses them (an interrupted sweep
    # resumes), and a changed parameter is not mistaken for them
    kept = sorted(p.name for p in (tmp_path / "out" / "runs").iterdir())
    assert kept == ["crs_isolate_R=50min.json.gz", "crs_isolate_R=5min.json.gz",
                    "none.json.gz"]
    again = simulate.simulate(f, tmp_path / "out", jobs=1)
    assert [c["infected_fraction_per_run"] for c in again["runs"]] == \
        [c["infected_fraction_per_run"] for c in summary["runs"]]
    # carried to another machine: a copy of the folder, given as the cache of another
    # output folder, is used as it is (the runs' cpu time shows they were not run again);
    # an unreadable file (cut when copied) is run again instead
    carried = tmp_path / "carried"
    shutil.copytree(tmp_path / "out" / "runs", carried)
    (carried / "none.json.gz").write_bytes((carried / "none.json.gz").read_bytes()[:40])
    elsewhere = simulate.simulate(f, tmp_path / "elsewhere", jobs=1, cache=carried)
    assert elsewhere["runs"][1:] == summary["runs"][1:]
    assert elsewhere["runs"][0]["infected_fraction_per_run"] == \
        summary["runs"][0]["infected_fraction_per_run"]
    assert _gz_runs(carried / "none.json.gz") and not (tmp_path / "elsewhere" / "runs").exists()
    # a readable file that is not a finished configuration is not taken for one either
    key = json.loads(gzip.decompress((carried / "none.json.gz").read_bytes()))["key"]
    (carried / "none.json.gz").write_bytes(gzip.compress(json.dumps({"key": key}).encode()))
    again = simulate.simulate(f, tmp_path / "elsewhere", jobs=1, cache=carried)
    assert again["runs"][0]["infected_fraction_per_run"] == \
        summary["runs"][0]["infected_fraction_per_run"]
    doc["seed"] = 4
    f.write_text(json.dumps(doc))
    other = simulate.simulate(f, tmp_path / "out", jobs=1)
    assert other["runs"][0]["seeds"] == [4, 5, 6, 7]


def test_a_run_says_when_it_ended():
    pop = population(2000)
    contained = run(pop, reactors.CrsReactor("crs_isolate", {}, pop, S, 0.2 / K), 1)
    assert len(contained.infection_times) < 2000 and contained.duration_s < 86_400
    assert contained.duration_s >= contained.infection_times[-1]
    short = run(pop, reactors.NoDefence(S), 1, duration=3600.0)      # still spreading
    assert short.duration_s == 3600.0 and len(short.infection_times) < 2000
    full = run(pop, reactors.NoDefence(S), 1)
    assert len(full.infection_times) == 2000 and full.duration_s == full.infection_times[-1]


def test_a_run_leaves_no_cyclic_garbage():
    """simulate.one_run pauses the cyclic collector: only refcounting may be needed."""
    import gc
    pop = population(2000)
    gc.collect()
    with simulate.without_gc():
        for defence, params in [("crs_isolate", {}), ("crs_rate_limit", {"rate_kbps": 8}),
                                ("cell_seal", {"scope_cells": 1})]:
            r = reactors.CrsReactor(defence, params, pop, S, 2.5 / K, signed_every=3)
            ob = outbreak.run(pop, outbreak.Worm(S, seeds=20), r, 86_400.0, random.Random(2))
            assert r.reports > 20 and r.signed > 6
            del r, ob
        assert gc.isenabled() is False
        assert gc.collect() == 0
    assert gc.isenabled()


class ConfinedFromTheStart(Recorder):
    """Every infected host confined to its group at once (a sealed scope, no reaction)."""

    def infected(self, host, t):
        self.hosts.append(host)
        return outbreak.Control(S, "group")


@pytest.mark.parametrize("p", [0.0, 0.5])
def test_a_confined_scanner_reaches_its_group_of_cells_and_nothing_else(p):
    """A group is `group_cells` consecutive cells (as the emulated cell_seal groups them):
    a confined worm burns its group out, never a host outside it, then the run is over."""
    pop = outbreak.Population(400, 4000, 4)               # 100 hosts per cell
    for group_cells, burnt in ((1, 100), (2, 200), (4, 400)):
        for seed in (1, 2, 3):
            r = ConfinedFromTheStart(S)
            ob = outbreak.run(pop, outbreak.Worm(S, p), r, 86_400.0, random.Random(seed),
                              group_cells)
            groups = {pop.cell_of(h) // group_cells for h in r.hosts}
            assert len(groups) == 1                       # the seed's group only
            assert len(ob.infection_times) == burnt       # all of it
            assert ob.duration_s < 86_400.0               # and then nothing can infect


def test_scope_sweep_is_simulated_with_its_groups_of_cells():
    """scenarios/scope_sweep.yaml (cell_seal with 1, 2, 3 and 6 cells per group): the wider
    the group, the more a seal lets burn; six cells (one group) confine nothing."""
    sc = simulate.load(ROOT / "scenarios" / "scope_sweep.yaml")
    confs = {c.label.split(" R=")[0]: c for c in simulate.configurations(sc)}
    means = {}
    for scope in (1, 3, 6):
        c = confs[f"cell_seal scope_cells={scope}"]
        means[scope] = statistics.mean(simulate.one_run(sc, c, r)["infected"]
                                       for r in range(40)) / sc.population.vulnerable
    assert means[1] < means[3] < means[6]
    assert means[1] < 0.4 and means[6] > 0.95


def test_an_interrupted_configuration_resumes_at_its_next_run(tmp_path):
    """A configuration stopped part-way (a long point of the Moore design space) keeps its
    finished runs: the next call runs only the others, and the outcome is the same."""
    doc = {"name": "tiny", "population": {"vulnerable": 500, "omega": round(S * 500 / K),
                                          "cells": 5},
           "scan_rate": S, "reaction_time_s": [3000], "duration_s": 86_400,
           "defences": ["crs_isolate"], "runs": 4, "seed": 3}
    f = tmp_path / "tiny.yaml"
    f.write_text(json.dumps(doc))
    whole = simulate.simulate(f, tmp_path / "whole", jobs=1)
    sc = simulate.load(f)
    (c,) = simulate.configurations(sc)
    kept = [simulate.one_run(sc, c, r) for r in (0, 2)]
    for r in kept:
        r["cpu_s"] = -1.0           # marks a run taken from the file, not run again
    runs = tmp_path / "out" / "runs"
    runs.mkdir(parents=True)
    lines = [json.dumps({"key": json.loads(json.dumps(simulate._cache_key(sc, c)))})]
    lines += [json.dumps({"part": 1, "part_s": 5.0 + i, "result": r})
              for i, r in enumerate(kept)]
    (runs / "crs_isolate_R=50min.partial.jsonl").write_text("\n".join(lines) +
                                                             '\n{}\n[1]\n{"part": 1, "res')
    got = simulate.simulate(f, tmp_path / "out", jobs=1)
    per = _gz_runs(runs / "crs_isolate_R=50min.json.gz")
    assert [r["run"] for r in per] == [0, 1, 2, 3]
    assert [r["cpu_s"] for r in per][0::2] == [-1.0, -1.0]     # not run again
    assert min(r["cpu_s"] for r in per[1::2]) > 0               # run now
    assert got["runs"][0]["infected_fraction_per_run"] == \
        whole["runs"][0]["infected_fraction_per_run"]
    assert got["runs"][0]["wall_s"] >= 6.0          # the earlier part's time counts
    assert not (runs / "crs_isolate_R=50min.partial.jsonl").exists()
    # a partial file of other parameters is not taken
    doc["seed"] = 4
    f.write_text(json.dumps(doc))
    (runs / "crs_isolate_R=50min.partial.jsonl").write_text("\n".join(lines) + "\n")
    other = simulate.simulate(f, tmp_path / "out", jobs=1)
    assert other["runs"][0]["seeds"] == [4, 5, 6, 7]
    assert min(r["cpu_s"] for r in _gz_runs(runs / "crs_isolate_R=50min.json.gz")) > 0


def _gz_runs(path):
    return json.loads(gzip.decompress(path.read_bytes()))["runs"]


def test_analyze_summarizes_what_is_finished_and_runs_nothing(tmp_path, capsys):
    """A design space under way: `--analyze` tables the finished configurations and names
    the others with their runs so far, without running any."""
    doc = {"name": "tiny", "population": {"vulnerable": 500, "omega": round(S * 500 / K),
                                          "cells": 5},
           "scan_rate": S, "reaction_time_s": [3000], "duration_s": 86_400,
           "defences": ["none", "crs_isolate"], "runs": 4, "seed": 3}
    f = tmp_path / "tiny.yaml"
    f.write_text(json.dumps(doc))
    cache = tmp_path / "cache"
    whole = simulate.simulate(f, tmp_path / "whole", jobs=1, cache=cache)
    sc = simulate.load(f)
    c = simulate.configurations(sc)[1]
    (cache / "crs_isolate_R=50min.json.gz").unlink()
    lines = [json.dumps({"key": json.loads(json.dumps(simulate._cache_key(sc, c)))})]
    lines += [json.dumps({"part": 1, "part_s": 1.0, "result": simulate.one_run(sc, c, r)})
              for r in (0, 2)]
    (cache / "crs_isolate_R=50min.partial.jsonl").write_text("\n".join(lines) + "\n")
    got = simulate.simulate(f, tmp_path / "out", jobs=1, cache=cache, analyze=True)
    assert [x["configuration"] for x in got["runs"]] == ["none"]
    assert got["runs"][0] == whole["runs"][0]
    assert got["unfinished"] == {"crs_isolate R=50min": 2} and got["analyzed"] is True
    assert whole["analyzed"] is False and whole["unfinished"] == {}
    assert not (cache / "crs_isolate_R=50min.json.gz").exists()          # nothing was run
    assert len((cache / "crs_isolate_R=50min.partial.jsonl").read_text().splitlines()) == 3
    assert (tmp_path / "out" / "summary.json").exists()
    # the command line says what is missing; with nothing finished it is an error
    assert simulate.main([str(f), "--out", str(tmp_path / "cli"), "--cache", str(cache),
                          "--analyze"]) == 0
    assert "not finished (1; runs so far of 4): crs_isolate R=50min 2" in \
        capsys.readouterr().out
    assert simulate.main([str(f), "--out", str(tmp_path / "cli"), "--cache",
                          str(tmp_path / "empty"), "--analyze"]) == 2
    assert "no configuration is finished" in capsys.readouterr().err
