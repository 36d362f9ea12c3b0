"""The containment experiment runner on real Mininet + controller (scenarios/ci_small.yaml).

Without a defence the worm spreads to most of the 8 vulnerable terminals; with CRS isolation
(terminals authenticate with the supplicant, agents report, victims accuse) it is contained,
and the reaction latency comes out of the controller's audit log. The scenario runs once per
module (about 30-60 s per run). The first tests are pure and fast.
"""
from __future__ import annotations

import importlib.util

import pytest
import yaml
from nethelpers import ROOT

from controller import jsonfile
from controller.experiment import defences, runner

# --- pure pieces (no network) ------------------------------------------------------------

def test_neighbour_batch_live_terminals_real_mac_dark_addresses_sink():
    live = {"10.0.1.1": "02:00:0a:00:01:01", "10.0.1.2": "02:00:0a:00:01:02"}
    lines = runner.neighbour_batch("c1t1-eth0", live, ["10.0.1.0/29"], "10.0.1.1")
    by_ip = {ln.split()[2]: ln.split()[4] for ln in lines}
    assert "10.0.1.1" not in by_ip                       # never the own address
    assert by_ip["10.0.1.2"] == "02:00:0a:00:01:02"
    assert {by_ip[f"10.0.1.{i}"] for i in range(3, 7)} == {runner.SINK_MAC}
    assert len(by_ip) == 5 and all("nud permanent dev c1t1-eth0" in ln for ln in lines)


def test_event_tail_reads_only_complete_new_lines(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text('{"event": "start", "host": "a", "t": 1}\n{"event": "inf')
    tail, prog = runner.EventTail(p), runner.Progress()
    prog.feed(tail.read())
    assert prog.started == {"a"} and not prog.infected
    with open(p, "a") as f:
        f.write('ected", "host": "a", "t": 2.5}\n')
    prog.feed(tail.read())
    assert prog.infected == {"a": 2.5} and tail.read() == []


def test_defence_documents_carry_scenario_parameters(tmp_path):
    rl = defences.policy_document("crs_rate_limit", {"rate_kbps": 16.0})
    assert rl["control"]["levels"]["INFECTED"] == {"actions": ["rate_limit"],
                                                   "rate_limit_kbps": 16, "scope": "all"}
    th = defences.controller_document("throttle", {"working_set": 7, "new_dest_per_s": 0.5},
                                      "t.yaml")
    assert th["throttle"] == {"enabled": True, "working_set": 7, "new_dest_per_s": 0.5}
    assert th["admission"]["mode"] == "open" and "crs" not in th
    files = defences.write_defence_files("crs_isolate", {}, 2, "t.yaml", tmp_path)
    ctl = yaml.safe_load(files.controller_config.read_text())
    assert ctl["admission"]["mode"] == "authenticate"
    assert ctl["crs"] == {"enabled": True, "policy": str(files.policy)}
    assert defences.cell_groups(5, 2) == {1: "seal1", 2: "seal1", 3: "seal2", 4: "seal2",
                                          5: "seal3"}


def test_rate_below_policy_minimum_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(defences.ConfigError, match="rate_limit_kbps"):
        defences.write_defence_files("crs_rate_limit", {"rate_kbps": 2.0}, 2, "t.yaml", tmp_path)


def test_scenario_with_more_cells_than_the_topology_is_a_config_error(tmp_path, capsys):
    sc = yaml.safe_load((ROOT / "scenarios/ci_small.yaml").read_text())
    sc.update(cells=5, space=[f"10.0.{c}.0/27" for c in range(1, 6)],
              topology=str(ROOT / "topologies/mobile_core.yaml"))
    path = tmp_path / "five.yaml"
    path.write_text(yaml.safe_dump(sc))
    assert runner.main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert f"{path}: cells: 5 cells" in capsys.readouterr().err


# --- on Mininet --------------------------------------------------------------------------

def crs_ready() -> str | None:
    """Why CRS runs cannot work yet, or None."""
    if importlib.util.find_spec("controller.admission.supplicant_main") is None:
        return "controller.admission.supplicant_main does not exist yet"
    return None


@pytest.fixture(scope="module")
def ci_small(tmp_path_factory):
    """ci_small run once: none, plus crs_isolate when the CRS side is ready."""
    sc = yaml.safe_load((ROOT / "scenarios/ci_small.yaml").read_text())
    sc["topology"] = str(ROOT / sc["topology"])
    if crs_ready() is not None:
        sc["defences"] = [d for d in sc["defences"] if d == "none"]
    tmp = tmp_path_factory.mktemp("ci_small")
    path = tmp / "ci_small.yaml"
    path.write_text(yaml.safe_dump(sc))
    out = tmp / "out"
    summary = runner.run_scenario(path, out, progress=False)
    return {c["defence"]: c for c in summary["runs"]}, summary, out


def test_without_defence_the_worm_spreads(ci_small):
    confs, summary, out = ci_small
    none = confs["none"]
    assert none["infected_fraction"] >= 0.75, none
    assert none["probes_sent"] > 0 and none["t50_s"] is not None
    assert (out / "timeline.png").stat().st_size > 0
    rows = (out / "timeline.csv").read_text().splitlines()
    assert rows[0].startswith("time_s,") and len(rows) > 5
    written = jsonfile.read(out / "summary.json")
    facts = written["runner"]["runs"][0]
    assert written["runner"]["failed_runs"] == 0
    assert facts["neighbours"]["entries"] > 0
    # every run tore down its network: no bridge of the topology is left
    from controller.emulation.record import existing_bridges
    assert not existing_bridges() & {"gw", "agg1", "agg2", "svc", "bs1", "bs2", "bs3"}


def test_crs_isolation_contains_the_worm(ci_small):
    why = crs_ready()
    if why:
        pytest.skip(why)
    confs, _, out = ci_small
    iso, none = confs["crs_isolate"], confs["none"]
    # every agent woke on its posture file (none fell back to polling every 100 ms)
    facts = [f for f in jsonfile.read(out / "summary.json")["runner"]["runs"]
             if f["configuration"] == "crs_isolate"]
    assert facts and all(f["agents_polling"] == 0 for f in facts), facts
    assert all(f["inotify"]["max_user_instances"] >= 256 for f in facts)
    assert iso["infected_fraction"] < none["infected_fraction"]
    assert iso["infected_fraction"] <= 0.5, iso
    # the controller's audit log and the worms' events give the reaction: every infected
    # terminal was isolated, within the detection delay (1 s) plus a little
    assert iso["enforced_hosts"] >= 1
    assert 0 <= iso["reaction_latency_s"] < 1.0, iso
    assert 1.0 <= iso["reaction_time_s"] < 2.5, iso
    # every terminal authenticated with our supplicant (EAP-PSK), in milliseconds
    assert iso["authentication_ms"] is not None and 0 < iso["authentication_ms"] < 1000
