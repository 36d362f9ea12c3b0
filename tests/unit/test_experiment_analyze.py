"""`crs experiment run --analyze`: the summary of an interrupted sweep from the finished runs
on disk (runner.analyze_existing), without Mininet."""
from __future__ import annotations

import json

import pytest

from controller.experiment import runner
from controller.experiment import scenario as scn

T0 = 1_764_300_000.0
SCENARIO = """
name: cut
topology: topologies/mobile_core.yaml
cells: 1
terminals_per_cell: 4
scan_rate: 3.0
space: [10.0.1.0/27]
detection_delay: 1.0
defences: [none, crs_isolate]
duration_s: 60
seeds: [1, 2]
runs: 2
"""


def write_run(run_dir, infected: int, stopped: bool, reaction_s: float | None = None):
    """A run's worm events (4 hosts, the first `infected` infected one second apart) as the
    worms write them; `stopped`: whether they wrote their stop records (a finished run)."""
    ev = run_dir / "events"
    ev.mkdir(parents=True)
    for i in range(4):
        recs = [{"t": T0 - 0.5, "event": "start", "host": f"h{i}", "ip": f"10.0.1.{i + 1}",
                 "vulnerable": True, "seed_host": i == 0, "scan_rate": 3.0, "space_size": 30,
                 "detection_delay": 1.0, "strategy": "uniform", "seed": 1}]
        if i < infected:
            recs.append({"t": T0 + i, "event": "infected", "host": f"h{i}",
                         "by": None if i == 0 else f"10.0.1.{i}"})
        if stopped:
            recs.append({"t": T0 + 30, "event": "stop", "host": f"h{i}"})
        (ev / f"h{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    if reaction_s is not None:
        (run_dir / "reaction.json").write_text(json.dumps([{
            "host": "h0", "infected_at": T0, "detected_at": T0 + 1.0, "reported_at": None,
            "decided_at": None, "enforced_at": T0 + reaction_s, "preemptive": False,
            "reaction_latency_s": reaction_s - 1.0, "reaction_time_s": reaction_s}]))


def test_only_finished_runs_count_and_their_reaction_times_are_kept(tmp_path):
    sc_file = tmp_path / "cut.yaml"
    sc_file.write_text(SCENARIO)
    sc = scn.load_scenario(str(sc_file))
    dirs = {(s.defence, s.run): tmp_path / "out" / "runs" / runner.slug(s.label) /
            f"run{s.run + 1}" for s in scn.expand(sc)}
    write_run(dirs[("none", 0)], infected=4, stopped=True)
    write_run(dirs[("none", 1)], infected=2, stopped=False)          # cut off mid-run
    write_run(dirs[("crs_isolate", 0)], infected=1, stopped=True, reaction_s=1.02)
    write_run(dirs[("crs_isolate", 1)], infected=1, stopped=True)    # no reaction.json yet
    summary = runner.analyze_existing(sc_file, tmp_path / "out", log=lambda _: None)
    confs = {c["defence"]: c for c in summary["runs"]}
    assert confs["none"]["runs"] == 1 and confs["none"]["infected_fraction"] == 1.0
    assert confs["crs_isolate"]["runs"] == 1 and confs["crs_isolate"]["infected_fraction"] == 0.25
    assert confs["crs_isolate"]["reaction_time_s"] == pytest.approx(1.02)
    assert summary["runner"]["missing_runs"] == 2 and summary["runner"]["analyzed_from_disk"]
    assert (tmp_path / "out" / "summary.json").exists()


def test_nothing_finished_is_an_error_not_an_empty_summary(tmp_path):
    sc_file = tmp_path / "cut.yaml"
    sc_file.write_text(SCENARIO)
    with pytest.raises(runner.RunnerError, match="no finished run"):
        runner.analyze_existing(sc_file, tmp_path / "out", log=lambda _: None)
    assert runner.main(["run", str(sc_file), "--out", str(tmp_path / "out"), "--analyze"]) == 2


def test_resume_keeps_finished_runs_and_runs_only_the_rest(tmp_path, monkeypatch):
    sc_file = tmp_path / "cut.yaml"
    sc_file.write_text(SCENARIO)
    sc = scn.load_scenario(str(sc_file))
    specs = scn.expand(sc)
    out = tmp_path / "out"
    for s in specs:
        d = out / "runs" / runner.slug(s.label) / f"run{s.run + 1}"
        if (s.defence, s.run) != ("crs_isolate", 1):      # the one the last night missed
            write_run(d, infected=4 if s.defence == "none" else 1, stopped=True,
                      reaction_s=None if s.defence == "none" else 1.01)
    ran = []

    def run_one(ctx):
        ran.append((ctx.spec.defence, ctx.spec.run))
        write_run(ctx.run_dir, infected=2, stopped=True, reaction_s=1.03)
        r, f = runner.finished_run(ctx.spec, ctx.run_dir)
        return r, {**f, "stop_reason": "contained"}
    monkeypatch.setattr(runner, "run_one", run_one)
    monkeypatch.setattr(runner, "openvswitch_problem", lambda: None)   # no network is built
    summary = runner.run_scenario(sc_file, out, progress=False, resume=True,
                                  log=lambda _: None)
    assert ran == [("crs_isolate", 1)]
    iso = next(c for c in summary["runs"] if c["defence"] == "crs_isolate")
    assert iso["runs"] == 2 and iso["infected_fraction_per_run"] == [0.25, 0.5]
    # what a run recorded about itself (stop reason, counters, agents that polled...) is
    # kept with it, so the next resume's summary still has it
    def must_not_run(ctx):
        raise AssertionError(f"{ctx.spec.label} run {ctx.spec.run} ran again")
    monkeypatch.setattr(runner, "run_one", must_not_run)
    again = runner.run_scenario(sc_file, out, progress=False, resume=True, log=lambda _: None)
    mine = [f for f in again["runner"]["runs"]
            if f["configuration"] == "crs_isolate" and f["run"] == 1]
    assert mine[0]["stop_reason"] == "contained" and mine[0]["from_disk"] is True
    assert mine[0]["infected"] == 2
