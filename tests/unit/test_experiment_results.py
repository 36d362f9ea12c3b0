"""Results: events files -> run results, timeline.csv, summary.json, printed table."""
from __future__ import annotations

import csv
import json
import random
import threading
import time
from pathlib import Path

import pytest

from controller.emulation.processes import wait_until
from controller.experiment import model
from controller.experiment import results as res
from controller.worm.host import WormConfig, WormHost
from controller.worm.targets import parse_space

T0 = 1_764_300_000.0


def synth_run(tmp: Path, name: str, infection_times: list[float], terminals: int,
              vulnerable: int, end_s: float, scan_rate: float = 3.0, omega: int = 378,
              delay: float = 1.0) -> list[Path]:
    """Events files as the worm writes them: one per host; host i infected at
    infection_times[i] (seconds after T0), by the previous host."""
    d = tmp / name
    d.mkdir()
    files = []
    for i in range(terminals):
        recs = [{"t": T0 - 0.5, "event": "start", "host": f"h{i}", "ip": f"10.0.1.{i + 1}",
                 "vulnerable": i < vulnerable, "seed_host": i == 0, "scan_rate": scan_rate,
                 "space_size": omega, "detection_delay": delay, "strategy": "uniform", "seed": 1}]
        if i < len(infection_times):
            t = T0 + infection_times[i]
            recs.append({"t": t, "event": "infected", "host": f"h{i}",
                         "by": None if i == 0 else f"10.0.1.{i}"})
            recs.append({"t": t + 1, "event": "probes", "host": f"h{i}", "sent": 3, "acked": 1,
                         "send_errors": 0})
        recs.append({"t": T0 + end_s, "event": "stop", "host": f"h{i}"})
        f = d / f"h{i}.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in recs))
        files.append(f)
    return files


def test_contained_run(tmp_path):
    files = synth_run(tmp_path, "a", [0.0, 2.5, 4.0], terminals=10, vulnerable=8, end_s=60)
    r = res.load_run(files, "crs_isolate", 0)
    assert r.infected == 3 and r.vulnerable == 8 and r.terminals == 10
    assert r.infection_times_s == (0.0, 2.5, 4.0)
    assert r.infected_fraction == pytest.approx(3 / 8)
    assert r.contained and r.time_to_containment_s == pytest.approx(4.0)
    assert r.t50_s is None
    assert r.end_s == pytest.approx(60.0)
    assert r.probes_sent == 9 and r.probes_acked == 3


def test_not_contained_when_all_infected_or_still_spreading(tmp_path):
    full = res.load_run(synth_run(tmp_path, "f", [0, 1, 2, 3], 4, 4, 60), "none", 0)
    assert full.infected_fraction == 1.0 and not full.contained
    assert full.time_to_containment_s is None and full.t50_s == pytest.approx(1.0)
    late = res.load_run(synth_run(tmp_path, "l", [0, 1, 55], 8, 8, 60), "crs_isolate", 0)
    assert not late.contained                      # new infection 5 s before the end
    seed_only = res.load_run(synth_run(tmp_path, "s", [0], 8, 8, 60), "crs_isolate", 0)
    assert seed_only.contained and seed_only.time_to_containment_s == 0.0


def test_bad_lines_are_skipped_and_counted(tmp_path):
    files = synth_run(tmp_path, "b", [0, 3], 4, 4, 30)
    with open(files[1], "a") as f:
        f.write('{"t": 17, "event": "probes", "sent": \n')       # killed mid-write
        f.write("[1, 2]\n")
    r = res.load_run(files + [tmp_path / "missing.jsonl"], "none", 0)
    assert r.infected == 2 and r.bad_lines == 3


def test_runs_without_start_or_infection_are_refused(tmp_path):
    with pytest.raises(res.ResultsError, match="no 'start'"):
        res.analyze_run([{"t": 1, "event": "probes"}], "none", 0)
    files = synth_run(tmp_path, "n", [], 4, 4, 30)
    with pytest.raises(res.ResultsError, match="no host was ever infected"):
        res.load_run(files, "none", 0)
    with pytest.raises(res.ResultsError):
        res.summarize([])


def test_timeline_csv(tmp_path):
    r = res.load_run(synth_run(tmp_path, "t", [0, 1.5, 2.0], 4, 4, 5), "none", 2)
    res.write_timeline_csv([r], tmp_path / "timeline.csv")
    rows = list(csv.DictReader(open(tmp_path / "timeline.csv")))
    assert list(rows[0]) == ["time_s", "defence", "run", "infected", "infected_fraction",
                             "configuration"]
    assert [(float(x["time_s"]), int(x["infected"])) for x in rows] == \
        [(0, 1), (1, 1), (2, 3), (3, 3), (4, 3), (5, 3)]
    assert rows[2]["infected_fraction"] == "0.75" and rows[0]["defence"] == "none"
    assert rows[0]["run"] == "2"


def test_summary_from_simulated_outbreaks(tmp_path):
    """No-defence runs from the SI simulation: fitted K close to s*V/Omega in summary.json;
    isolation runs from the blocking simulation: contained, small fraction."""
    results = []
    for run in range(5):
        sim = model.simulate_si(24, 378, 3.0, 60, random.Random(run))
        files = synth_run(tmp_path, f"none{run}", list(sim.infection_times), 24, 24, 60)
        results.append(res.load_run(files, "none", run))
        sim = model.simulate_outbreak(24, 378, 3.0, 60, random.Random(run), 2.0, "block")
        files = synth_run(tmp_path, f"iso{run}", list(sim.infection_times), 24, 24, 60)
        results.append(res.load_run(files, "crs_isolate", run, params={"coverage_fraction": 1.0}))
    summary = res.write_outputs(results, tmp_path / "out", scenario={"name": "x"})
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk == summary
    assert [c["defence"] for c in summary["runs"]] == ["none", "crs_isolate"]
    none, iso = summary["runs"]
    assert none["runs"] == 5 and none["infected_fraction"] > 0.8
    assert none["time_to_containment_s"] is None and none["contained_fraction"] == 0
    assert none["predicted_k_per_s"] == pytest.approx(3 * 24 / 378, rel=1e-3)
    assert abs(none["fitted_k_error_fraction"]) < 0.3 and none["fit_r2"] > 0.9
    assert iso["infected_fraction"] < 0.2 and iso["contained_fraction"] >= 0.8
    assert iso["time_to_containment_s"] is not None and iso["coverage_fraction"] == 1.0
    assert iso["predicted_infected_fraction_at_r_eq_delay"] < 0.1
    for c in summary["runs"]:                       # contract: unit-suffixed numbers
        for key in ("infected_fraction", "time_to_containment_s", "t50_s", "detection_delay_s"):
            assert key in c
    assert (tmp_path / "out" / "timeline.csv").exists()
    table = res.format_table(summary)
    lines = table.splitlines()
    assert lines[0].startswith("configuration") and len(lines) == 4
    assert lines[2].startswith("none") and "100%" in lines[2]


def test_percentiles_and_medians_with_uncontained_runs(tmp_path):
    runs = [res.load_run(synth_run(tmp_path, f"r{i}", ts, 8, 8, 60), "crs_isolate", i)
            for i, ts in enumerate([[0, 2], [0, 3], [0, 1, 2, 3, 4, 5, 6, 7]])]
    c = res.summarize(runs)["runs"][0]
    assert c["infected_fraction"] == 0.25 and c["infected_fraction_p95"] == 1.0
    assert c["time_to_containment_s"] == 3.0          # median of 2, 3, inf
    assert c["time_to_containment_s_p95"] is None
    assert c["contained_fraction"] == pytest.approx(2 / 3, abs=1e-3)


def test_results_from_a_real_loopback_run(tmp_path):
    port = 20000 + random.Random(time.time()).randrange(20000)
    cfgs = [WormConfig(name=f"h{n}", ip=f"127.0.0.{n}", posture=tmp_path / f"p{n}.json",
                       events=tmp_path / f"e{n}.jsonl", port=port, infected=(n == 1),
                       scan_rate=20.0, space=parse_space("127.0.0.0/29"), seed=3,
                       detection_delay=0.2, marker="RESULTSWORM", vulnerable=(n != 6))
            for n in range(1, 7)]
    stop = threading.Event()
    threads = []
    for c in reversed(cfgs):      # listeners first, the seed last: no early probe is lost
        threads.append(threading.Thread(target=WormHost(c).run, args=(stop,)))
        threads[-1].start()
        wait_until(lambda c=c: c.events.exists() and '"start"' in c.events.read_text(), 5,
                   f"{c.name} listening")
    wait_until(lambda: all(c.posture.exists() and "infection" in c.posture.read_text()
                           for c in cfgs if c.vulnerable), 10, "every vulnerable host infected")
    stop.set()
    for t in threads:
        t.join(5)
    r = res.load_run(sorted(tmp_path.glob("e*.jsonl")), "none", 0)
    assert r.terminals == 6 and r.vulnerable == 5 and r.infected == 5
    assert r.scan_rate_per_s == 20.0 and r.omega == 6
    assert r.probes_sent > 0 and 0 < r.probes_acked <= r.probes_sent
    assert r.probes_received <= r.probes_sent
