"""`crs experiment compare`: an emulated summary against the simulation at the measured R."""
from __future__ import annotations

import json

import pytest

from controller.experiment import compare, simulate
from controller.experiment import scenario as scn

DEMO = """
name: cmp
topology: topologies/mobile_core.yaml
cells: 3
terminals_per_cell: 8
scan_rate: 3.0
space: [10.0.1.0/25, 10.0.2.0/25, 10.0.3.0/25]
detection_delay: [1, 8]
defences: [none, crs_isolate, {name: throttle, working_set: 5, new_dest_per_s: 1}]
duration_s: 60
seeds: [1, 2, 3]
runs: 3
"""


def _emulated(tmp_path, confs, name="cmp"):
    d = tmp_path / "emu"
    d.mkdir()
    (d / "summary.json").write_text(json.dumps({"scenario": {"name": name}, "runs": confs}))
    return d


def _conf(label, defence, mean, ci, r=None, delay=1.0):
    return {"configuration": label, "defence": defence, "detection_delay_s": delay,
            "runs": 3, "infected_fraction_mean": mean, "infected_fraction": mean,
            "infected_fraction_ci95": ci, "reaction_time_s": r, "seeds": [1, 2, 3]}


@pytest.fixture
def scenario(tmp_path):
    p = tmp_path / "cmp.yaml"
    p.write_text(DEMO)
    return p


def test_the_simulation_runs_at_the_reaction_time_the_emulation_measured(scenario):
    sc = scn.load_scenario(str(scenario))
    labels = [s.label for s in scn.expand(sc)]
    iso = next(x for x in labels if x.startswith("crs_isolate") and "delay=8" in x)
    pairs = compare.sim_configs(sc, [_conf(iso, "crs_isolate", 0.5, [0.4, 0.6], r=8.04,
                                           delay=8.0),
                                     _conf("none", "none", 1.0, [1.0, 1.0])])
    assert pairs[0][1].reaction_time_s == 8.04          # measured, not the delay asked
    assert pairs[1][1].reaction_time_s is None           # no defence: nothing reacts
    # a configuration that measured no R (nothing infected but the seed, never enforced)
    assert compare.measured_r(_conf(iso, "crs_isolate", 0.04, [0.04, 0.04], r=None,
                                    delay=2.0)) == 2.0 + compare.DEFAULT_OVERHEAD_S


def test_a_summary_of_another_scenario_or_configuration_is_refused(tmp_path, scenario):
    with pytest.raises(compare.CompareError, match="from scenario 'other'"):
        compare.compare(scenario, _emulated(tmp_path, [], name="other"), tmp_path / "o")
    sc = scn.load_scenario(str(scenario))
    with pytest.raises(compare.CompareError, match="not in"):
        compare.sim_configs(sc, [_conf("crs_isolate scope=9", "crs_isolate", 0, [0, 0])])
    assert compare.main([str(scenario), str(tmp_path / "missing")]) == 2


def test_agreement_is_the_simulated_mean_inside_the_emulated_interval(scenario):
    sc = scn.load_scenario(str(scenario))
    sim = simulate.from_emulation(sc, 0.0)
    cfg = simulate.Config("crs_isolate", "x", {}, 1.0)
    runs = [{"infected": n, "curve": [1.0] * simulate.TIMELINE_POINTS} for n in (1, 1, 2, 1)]
    mean = (1 + 1 + 2 + 1) / 4 / 24
    ok = compare.row(sim, _conf("x", "crs_isolate", 0.05, [0.04, 0.08], r=1.0), cfg, runs)
    assert ok["simulated_mean"] == pytest.approx(mean, abs=1e-4) and ok["inside"]
    far = compare.row(sim, _conf("x", "crs_isolate", 0.9, [0.8, 1.0], r=1.0), cfg, runs)
    assert not far["inside"] and not far["overlap"]
    # below the threshold (K*R = 0.19) the models' means are close to 1/(1-KR)/V
    assert ok["k_times_r"] == pytest.approx(0.1905, abs=1e-3)
    assert ok["model_blacklist_branching"] == pytest.approx(1 / (1 - 0.1905) / 24, rel=1e-2)


def test_compare_writes_its_table_and_the_threshold_figure(tmp_path, scenario):
    sc = scn.load_scenario(str(scenario))
    isos = list(dict.fromkeys(s.label for s in scn.expand(sc) if s.defence == "crs_isolate"))
    confs = [_conf("none", "none", 1.0, [1.0, 1.0]),
             _conf(isos[0], "crs_isolate", 0.05, [0.04, 0.07], r=1.05, delay=1.0),
             _conf(isos[1], "crs_isolate", 0.7, [0.5, 0.9], r=8.05, delay=8.0)]
    out = compare.compare(scenario, _emulated(tmp_path, confs), tmp_path / "out", runs=40,
                          jobs=1)
    assert [r["configuration"] for r in out["rows"]] == ["none", *isos]
    low, high = out["rows"][1], out["rows"][2]
    # the simulation itself: contained far below 1/K = 5.25 s, mostly not above it
    assert low["simulated_mean"] < 0.15 < high["simulated_mean"]
    assert (tmp_path / "out" / "threshold.png").stat().st_size > 10_000
    # no defence: every emulated run 24/24, an interval that is a point; the simulated mean
    # (a run or two short of 24 at 60 s) is within half a host of it
    assert json.loads((tmp_path / "out" / "compare.json").read_text())["rows"][0][
        "inside_half_host"]
    assert "crs_isolate" in compare.format_table(out)


def test_slowdowns_set_t50_ratios_against_s_over_r():
    rows = [{"configuration": "none", "defence": "none",
             "emulated_t50_s_per_run": [15.0, 17.0, 16.0],
             "simulated_t50_s_per_run": [16.0, 17.0, 18.0, 17.0]},
            {"configuration": "throttle", "defence": "throttle", "new_dest_per_s": 1,
             "emulated_t50_s_per_run": [45.0, 50.0, 49.0],
             "simulated_t50_s_per_run": [50.0, 52.0, 51.0, 53.0]},
            {"configuration": "crs_isolate", "defence": "crs_isolate",
             "emulated_t50_s_per_run": None, "simulated_t50_s_per_run": None}]
    (d,) = compare.slowdowns(rows, scan_rate=3.0)
    assert d["configuration"] == "throttle" and d["model_s_over_r"] == 3.0
    assert d["emulated_ratio"] == pytest.approx(144 / 48, abs=1e-3)
    assert d["emulated_model_inside"] and d["simulated_model_inside"]
