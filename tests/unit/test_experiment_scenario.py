"""Scenario schema, validation messages, run expansion, host planning, worm command lines."""
from __future__ import annotations

import pytest
import yaml
from corekit import ROOT

from controller.config import ConfigError
from controller.experiment import model
from controller.experiment.scenario import (
    expand,
    load_scenario,
    parse_scenario,
    plan_hosts,
    run_seed,
    worm_argv,
)
from controller.worm import host as worm_host

SHIPPED = ["demo", "ci_small", "delay_sweep", "scope_sweep", "scale200"]

BASE = {"name": "t", "topology": "topologies/mobile_core.yaml", "cells": 2,
        "terminals_per_cell": 4, "defences": ["none", "crs_isolate"], "duration_s": 30}


def problems(data: dict, file: str = "s.yaml") -> str:
    with pytest.raises(ConfigError) as exc:
        parse_scenario(data, file)
    return str(exc.value)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_are_valid(name):
    topo = ROOT / "topologies" / "mobile_core.yaml"
    sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml", check_files=topo.exists())
    assert sc.name == name
    specs = expand(sc)
    assert len(specs) >= 2 * sc.runs
    assert {s.defence for s in specs} >= {"none"}


def test_demo_defaults_meet_the_design_targets():
    """The demo must reach > 80 % without defence and stay < 10 % with isolation (1 s delay),
    per the models: logistic time to 80 % and blacklisting 1/(1-K*R)."""
    sc = load_scenario(ROOT / "scenarios" / "demo.yaml", check_files=False)
    assert sc.cells == 3 and sc.terminals_per_cell == 8 and sc.duration_s <= 90
    assert {d.name for d in sc.defences} == {"none", "crs_isolate"}
    k = model.predicted_k(sc.scan_rate, sc.vulnerable, sc.omega)
    assert model.time_to_fraction(k, sc.vulnerable, 0.8) < 0.5 * sc.duration_s
    reaction = sc.detection_delay[0] + 1.5       # agent report + flow installation margin
    assert model.blacklist_expected_fraction(sc.vulnerable, k, reaction) < 0.10


def test_errors_name_file_key_and_problem():
    text = problems({**BASE, "strategy": "sideways", "colour": "red",
                     "detection_delay": [1, -2], "scan_rate": 0}, "sc.yaml")
    assert "sc.yaml: strategy: 'sideways' is not one of uniform, local, hitlist" in text
    assert "sc.yaml: colour: unknown key" in text
    assert "sc.yaml: detection_delay: -2 is not a number >= 0" in text
    assert "sc.yaml: scan_rate: 0.0 must be > 0" in text


def test_missing_required_keys_and_not_a_mapping():
    text = problems({"name": "t"})
    for key in ("topology", "terminals_per_cell", "defences", "duration_s"):
        assert f"s.yaml: {key}: missing required key" in text
    assert "expected a mapping" in problems(["a list"])


def test_defence_problems():
    text = problems({**BASE, "defences": ["none", {"name": "firewall"},
                                          {"name": "throttle", "new_dest_per_s": -1},
                                          {"name": "cell_seal", "scope_cells": [1, 2.5]},
                                          {"name": "crs_isolate", "rate_kbps": 5},
                                          "none", 7]})
    assert "defences[1].name: 'firewall' is not one of" in text
    assert "defences[2].new_dest_per_s: -1.0 must be a number" in text
    assert "defences[3].scope_cells[1]: 2.5 must be a whole number" in text
    assert "defences[4].rate_kbps: unknown key" in text
    assert "defences[5].label: label 'none' used twice" in text
    assert "defences[6]: expected a defence name or a mapping" in text
    assert "defences: list at least one defence" in problems({**BASE, "defences": []})


def test_space_and_seed_host_must_fit_the_terminals():
    assert "space: contains none of the terminals" in problems(
        {**BASE, "space": ["192.168.0.0/24"]})
    assert "space[0]: 'nope' is not an IPv4 network" in problems({**BASE, "space": ["nope"]})
    assert "seed_host: 'c9t9' is not a terminal" in problems({**BASE, "seed_host": "c9t9"})
    assert "hitlist: strategy 'hitlist' needs" in problems({**BASE, "strategy": "hitlist"})


def test_missing_topology_file_is_reported(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text(yaml.safe_dump({**BASE, "topology": "nowhere.yaml"}))
    with pytest.raises(ConfigError, match=r"x.yaml: topology: file 'nowhere.yaml' not found"):
        load_scenario(f)
    (tmp_path / "nowhere.yaml").write_text("{}")
    assert load_scenario(f).topology == "nowhere.yaml"


def test_yaml_syntax_error_is_a_config_error(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: <document>: invalid YAML"):
        load_scenario(f)


def test_expand_sweeps_and_seeds():
    sc = parse_scenario({**BASE, "detection_delay": [1, 5],
                         "defences": ["none", {"name": "cell_seal", "scope_cells": [1, 2]}],
                         "seeds": [10, 20], "runs": 4})
    specs = expand(sc)
    # none once (first delay), cell_seal 2 scopes x 2 delays; 4 runs each
    assert len(specs) == (1 + 2 * 2) * 4
    labels = sorted({s.label for s in specs})
    assert labels == ["cell_seal scope_cells=1 delay=1s", "cell_seal scope_cells=1 delay=5s",
                      "cell_seal scope_cells=2 delay=1s", "cell_seal scope_cells=2 delay=5s",
                      "none"]
    assert [run_seed(sc, r) for r in range(4)] == [10, 20, 21, 22]
    # every configuration sees the same seeds, so defences face the same outbreaks
    by_label = {}
    for s in specs:
        by_label.setdefault(s.label, []).append(s.seed)
    assert all(v == [10, 20, 21, 22] for v in by_label.values())


def test_plan_hosts_is_deterministic_and_sane():
    sc = parse_scenario({**BASE, "cells": 3, "terminals_per_cell": 8, "vulnerable_fraction": 0.5})
    a, b = plan_hosts(sc, 4), plan_hosts(sc, 4)
    assert a == b
    assert len(a) == 24 and sum(h.vulnerable for h in a) == 12
    seeds = [h for h in a if h.seed_host]
    assert len(seeds) == 1 and seeds[0].vulnerable
    assert {h.name for h in a} == {f"c{c}t{t}" for c in (1, 2, 3) for t in range(1, 9)}
    assert all(h.ip == f"10.0.{h.cell}.{h.name.split('t')[1]}" for h in a)
    assert any(plan_hosts(sc, s) != a for s in range(5, 10))
    fixed = parse_scenario({**BASE, "seed_host": "c2t3", "vulnerable_fraction": 0.0})
    plan = plan_hosts(fixed, 1)
    assert [h.name for h in plan if h.seed_host] == ["c2t3"]
    assert [h.name for h in plan if h.vulnerable] == ["c2t3"]


def test_worm_argv_is_accepted_by_the_worm():
    sc = load_scenario(ROOT / "scenarios" / "scope_sweep.yaml", check_files=False)
    spec = expand(sc)[-1]
    for h in plan_hosts(sc, spec.seed)[:3]:
        argv = worm_argv(sc, spec, h, "/tmp/p.json", "/tmp/e.jsonl")
        assert argv[:3] == ["python3", "-m", "controller.worm.host"]
        cfg = worm_host.config_from_args(worm_host.build_parser().parse_args(argv[3:]))
        assert cfg.ip == h.ip and cfg.vulnerable == h.vulnerable and cfg.infected == h.seed_host
        assert cfg.space.size == sc.omega and cfg.strategy == "local"
        assert cfg.local_space is not None and h.ip in cfg.local_space
        assert cfg.detection_delay == spec.detection_delay and cfg.seed == spec.seed


def test_a_simulated_cell_spans_what_the_emulated_worm_scans_locally():
    """scope_sweep's worm stays local in its /24, of which Omega holds a /25: the
    simulation of that scenario must give local probes the same odds (half find nothing),
    or it spreads faster than the emulated worm (t50 24.6 s against 31.4 s before)."""
    from controller.experiment import simulate
    sc = load_scenario(ROOT / "scenarios" / "scope_sweep.yaml", check_files=False)
    spec = expand(sc)[0]
    h = plan_hosts(sc, spec.seed)[0]
    cfg = worm_host.config_from_args(worm_host.build_parser().parse_args(
        worm_argv(sc, spec, h, "/tmp/p.json", "/tmp/e.jsonl")[3:]))
    assert simulate.from_emulation(sc, 0.0).population.omega_cell == cfg.local_space.size \
        == 254
    demo = load_scenario(ROOT / "scenarios" / "demo.yaml", check_files=False)
    assert demo.strategy == "uniform"     # no local probes: Omega split evenly
    assert simulate.from_emulation(demo, 0.0).population.omega_cell == demo.omega // demo.cells


def test_the_rate_limit_defence_meters_packets_per_second_when_asked():
    from controller.experiment import defences
    pps = defences.policy_document("crs_rate_limit", {"rate_kbps": 2.0, "rate_pps": 1.0})
    infected = pps["control"]["levels"]["INFECTED"]
    assert infected.get("rate_limit_pps") == 1 and "rate_limit_kbps" not in infected
    kbps = defences.policy_document("crs_rate_limit", {"rate_kbps": 16.0, "rate_pps": 0.0})
    assert kbps["control"]["levels"]["INFECTED"]["rate_limit_kbps"] == 16
    from controller.crs.decision import Level
    from controller.crs.policy import parse_policy
    assert parse_policy(pps).levels[Level.INFECTED].rate_limit_pps == 1
