"""Topology files: shipped ones load; every kind of mistake names file, key and problem."""
import textwrap
from pathlib import Path

import pytest
from corekit import ROOT

from controller import cli, topology
from controller.config import ConfigError

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"

GOOD = """
name: t
network: 10.0.0.0/16
controller_service: {ip: 10.0.100.254, switch: s1}
switches:
  - {name: s1, dpid: 1}
  - {name: s2, dpid: 2}
links:
  - {a: s1, b: s2, bw_mbps: 10}
cells:
  - {name: cell1, switch: s2, subnet: 10.0.1.0/24, terminals: 3}
hosts:
  - {name: web, ip: 10.0.100.10, switch: s1, services: [{name: http, port: 80}]}
"""


def write(tmp_path, text, name="t.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def problems(tmp_path, text):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        topology.load(p)
    return err.value.problems


def test_shipped_topologies_load():
    core = topology.load(TOPOLOGIES / "mobile_core.yaml")
    assert len(core.cells) >= 3
    assert all(len(c.terminals) == 8 for c in core.cells)
    roles = {h.name: h.role for h in core.servers()}
    assert {"web", "mail", "msg", "update"} <= set(roles) and roles["update"] == "update"
    assert {s.role for s in core.switches} >= {"access", "aggregation", "gateway"}
    mini = topology.load(TOPOLOGIES / "minimal.yaml")
    assert len(mini.switches) == 1 and len(mini.hosts) == 3


def test_terminals_per_cell_override_and_addresses():
    core = topology.load(TOPOLOGIES / "mobile_core.yaml", terminals_per_cell=20)
    assert len(core.terminals()) == 60
    ips = [h.ip for h in core.hosts]
    assert len(set(ips)) == len(ips)
    c2 = core.host("c2t5")
    assert c2.ip == "10.0.2.5" and c2.cell == "cell2" and c2.mac == "02:00:0a:00:02:05"


def test_ports_are_deterministic_and_infra_ports_known(tmp_path):
    t = topology.load(write(tmp_path, GOOD))
    assert t.links[0].a_port == 1 and t.links[0].b_port == 1
    assert [h.port for h in t.hosts if h.switch == "s2"] == [2, 3, 4]
    assert t.service_port == 2                      # s1: port 1 link, port 2 service
    assert t.host("web").port == 3
    assert t.infra_ports() == {1: {1}, 2: {1}}


@pytest.mark.parametrize("mutation, key, words", [
    (("switches:\n", "switches:\n  - {name: s3, dpid: 3, colour: red}\n"),
     "switches[0].colour", "unknown key"),
    (("  - {name: s2, dpid: 2}", "  - {name: s1, dpid: 2}"), "switches[1].name", "duplicate name"),
    (("  - {name: s2, dpid: 2}", "  - {name: s2, dpid: 1}"), "switches[1].dpid", "duplicate dpid"),
    (("ip: 10.0.100.10", "ip: 10.0.100.300"), "hosts[0].ip", "not an IPv4 address"),
    (("ip: 10.0.100.10", "ip: 192.168.1.1"), "hosts[0].ip", "outside"),
    (("{a: s1, b: s2, bw_mbps: 10}", "{a: s1, b: s9}"), "links[0].b", "not a switch"),
    (("switch: s2, subnet", "switch: s7, subnet"), "cells[0].switch", "not a switch"),
    (("subnet: 10.0.1.0/24", "subnet: 10.1.1.0/24"), "cells[0].subnet", "not inside"),
    (("terminals: 3", "terminals: 300"), "cells[0].terminals", "outside"),
    (("bw_mbps: 10", "bw_mbps: fast"), "links[0].bw_mbps", "expected a number"),
    (("dpid: 1}", "dpid: 1}\n  - {name: s3, dpid: 3}"), "links", "not all connected"),
])
def test_validation_errors_name_file_key_problem(tmp_path, mutation, key, words):
    old, new = mutation
    assert old in GOOD
    found = problems(tmp_path, GOOD.replace(old, new, 1))
    assert any(k == key and words in p and f.endswith("t.yaml") for f, k, p in found), found


def test_loop_is_rejected(tmp_path):
    text = GOOD.replace("switches:\n", "switches:\n  - {name: s3, dpid: 3}\n").replace(
        "  - {a: s1, b: s2, bw_mbps: 10}\n",
        "  - {a: s1, b: s2, bw_mbps: 10}\n  - {a: s2, b: s3}\n  - {a: s3, b: s1}\n")
    found = problems(tmp_path, text)
    assert [(k, p) for _, k, p in found] == [
        ("links[2]", "s3 - s1 closes a loop; switches must form a tree")]


def test_broken_yaml_and_missing_file(tmp_path):
    found = problems(tmp_path, "name: [unclosed\n")
    assert found[0][1] == "<document>" and "invalid YAML" in found[0][2] and "line" in found[0][2]
    with pytest.raises(ConfigError) as err:
        topology.load(tmp_path / "nope.yaml")
    assert "cannot read" in str(err.value)


def test_every_problem_is_reported_at_once(tmp_path):
    # schema problems are all reported together (semantic checks follow once they are fixed)
    text = GOOD.replace("ip: 10.0.100.10", "ip: bad").replace("dpid: 2", "dpid: two")
    found = problems(tmp_path, text)
    keys = {k for _, k, _ in found}
    assert {"hosts[0].ip", "switches[1].dpid"} <= keys


def test_check_command_exit_status(tmp_path, capsys):
    good = write(tmp_path, GOOD, "topology_ok.yaml")
    bad = write(tmp_path, GOOD.replace("dpid: 2", "dpid: x"), "topology_bad.yaml")
    assert cli.main(["check", str(good)]) == 0
    assert cli.main(["check", str(bad)]) == 2
    out = capsys.readouterr().out
    assert "topology_bad.yaml: switches[1].dpid: expected an integer" in out


def test_check_without_arguments_passes_every_shipped_file(capsys, monkeypatch):
    """`crs check` (and `make check`) on a clean checkout: every topology, configuration,
    defence template and scenario the project ships, each checked as what it is (a
    simulation scenario is not an emulated one)."""
    monkeypatch.chdir(ROOT)
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    assert "scenarios/moore2003.yaml: ok (simulation)" in out
    assert "scenarios/demo.yaml: ok (scenario)" in out


def test_check_reports_a_broken_simulation_scenario(tmp_path, capsys):
    bad = write(tmp_path, "name: x\npopulation: {vulnerable: -1, omega: 10}\nscan_rate: 10\n"
                "reaction_time_s: [60]\ndefences: [none]\n", "sim.yaml")
    assert cli.main(["check", str(bad)]) == 2
    assert "population.vulnerable: -1 is outside" in capsys.readouterr().out
