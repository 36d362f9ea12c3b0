"""Reaction latency and authentication time from audit log + worm events
(controller.experiment.reaction), the defence files for larger topologies and the scenario's
`authenticate` option, and the demo's table / claim (controller.demo)."""
from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.experiment import defences, reaction
from controller.experiment.scenario import parse_scenario

ISO = {"isolate": True, "scope": "none", "meter_kbps": None, "group_sealed": False}
PERMIT = {"isolate": False, "scope": "all", "meter_kbps": None, "group_sealed": False}


def audit_isolation(host: str, at: float, group: str = "cell1") -> list[dict]:
    """What the core writes for an INFECTED report: report, flows, then the decision (the
    flows record comes first, both computed at the decision's `at`)."""
    tid = f"{host}@crs.example"
    return [{"t": at - 5, "event": "connect", "terminal": tid, "group": group},
            {"t": at - 5, "event": "decision", "terminal": tid, "at": at - 5,
             "level": "UNKNOWN", **PERMIT},
            {"t": at - 5, "event": "flows", "terminal": tid, "level": "UNKNOWN"},
            {"t": at + 0.0004, "event": "sci_report", "terminal": tid, "level": "INFECTED",
             "at": at},
            {"t": at + 0.0006, "event": "flows", "terminal": tid, "level": "INFECTED"},
            {"t": at + 0.0007, "event": "decision", "terminal": tid, "at": at,
             "level": "INFECTED", **ISO}]


def worm(host: str, infected: float, detected: float | None) -> list[dict]:
    out = [{"t": infected - 10, "event": "start", "host": host},
           {"t": infected, "event": "infected", "host": host}]
    if detected is not None:
        out.append({"t": detected, "event": "threat_detected", "host": host})
    return out


def test_latency_is_detection_to_flows_and_r_is_infection_to_flows():
    rows = reaction.per_host(worm("c1t3", 100.0, 101.0), audit_isolation("c1t3", 101.05))
    (row,) = rows
    assert row["decided_at"] == 101.05                      # the decision's own `at`
    assert abs(row["enforced_at"] - 101.0506) < 1e-9        # flows written before the record
    assert abs(row["reaction_latency_s"] - 0.0506) < 1e-4
    assert abs(row["reaction_time_s"] - 1.0506) < 1e-4
    s = reaction.summarize_hosts(rows)
    assert s["infected_hosts"] == s["enforced_hosts"] == 1


def test_host_never_enforced_has_no_latency_and_is_not_counted():
    rows = reaction.per_host(worm("c1t1", 10.0, 11.0) + worm("c1t2", 20.0, None),
                             audit_isolation("c1t1", 11.2))
    by = {r["host"]: r for r in rows}
    assert by["c1t2"]["enforced_at"] is None and by["c1t2"]["reaction_latency_s"] is None
    s = reaction.summarize_hosts(rows)
    assert s["infected_hosts"] == 2 and s["enforced_hosts"] == 1
    assert abs(s["reaction_latency_s"] - 0.2006) < 1e-4


def test_permit_flows_before_the_decision_do_not_count_as_enforcement():
    audit = audit_isolation("c1t1", 50.0)
    # a COMPLIANT flows record between the report and the decision is not enforcement
    audit.insert(3, {"t": 49.0, "event": "flows", "terminal": "c1t1@crs.example",
                     "level": "COMPLIANT"})
    (row,) = reaction.per_host(worm("c1t1", 48.0, 49.0), audit)
    assert row["enforced_at"] > 50.0


def test_group_seal_enforces_every_member_of_the_group():
    tid = "c2t1@crs.example"
    audit = [{"t": 1.0, "event": "connect", "terminal": tid, "group": "seal1"},
             {"t": 5.0, "event": "decision", "terminal": tid, "at": 5.0, "level": "INFECTED",
              "isolate": False, "scope": "all", "group_sealed": True},
             {"t": 5.2, "event": "seal_flows", "group": "seal1", "sealed": True},
             {"t": 5.1, "event": "seal_flows", "group": "seal2", "sealed": True}]
    (row,) = reaction.per_host(worm("c2t1", 4.0, 4.5), audit)
    assert row["enforced_at"] == 5.2


def test_member_of_a_group_sealed_before_its_infection_is_preemptive():
    tid = "c3t5@crs.example"
    audit = [{"t": 1.0, "event": "connect", "terminal": tid, "group": "cell3"},
             {"t": 5.0, "event": "seal_flows", "group": "cell3", "sealed": True},
             {"t": 5.0, "event": "decision", "terminal": tid, "at": 5.0, "level": "COMPLIANT",
              "isolate": False, "scope": "all", "group_sealed": True},
             {"t": 16.0, "event": "decision", "terminal": tid, "at": 16.0, "level": "INFECTED",
              "isolate": False, "scope": "group", "group_sealed": True}]
    (row,) = reaction.per_host(worm("c3t5", 15.0, 16.0), audit)
    assert row["preemptive"] and row["reaction_latency_s"] is None
    s = reaction.summarize_hosts([row])
    assert s["preemptive_hosts"] == 1 and s["enforced_hosts"] == 0


def test_restricting_decisions():
    assert reaction.restricting(ISO)
    assert reaction.restricting({**PERMIT, "meter_kbps": 8})
    assert reaction.restricting({**PERMIT, "scope": "group"})
    assert not reaction.restricting(PERMIT)


def test_authentication_time_from_eap_success_line_or_keys_file():
    logs = {"a": "EAPOL-START 1.0\nEAP-SUCCESS 0.004125\n", "b": "EAPOL-START 1.0\n"}
    keys = {"b": {"authenticated_at": 12.5}, "c": {"authenticated_at": 3.0}}
    got = reaction.authentication_times(logs, keys, {"b": 12.0})
    assert got == {"a": 0.004125, "b": 0.5}                  # c: no start time known
    assert reaction.eap_success_s("EAP-FAILURE timeout") is None


def test_merge_configuration_pools_hosts_over_runs():
    facts = [{"reaction": {"reaction_latency_s_per_host": [0.05, 0.07], "reaction_time_s": 1.06,
                           "enforced_hosts": 2},
              "authentication": {"per_terminal_s": {"a": 0.002, "b": 0.004}},
              "authentication_s": 1.5},
             {"reaction": {"reaction_latency_s_per_host": [0.06], "reaction_time_s": 1.04,
                           "enforced_hosts": 1},
              "authentication": {"per_terminal_s": {"a": 0.003}}, "authentication_s": 2.5}]
    m = reaction.merge_configuration(facts)
    assert m["reaction_latency_s"] == 0.06 and m["reaction_latency_s_p95"] == 0.07
    assert m["enforced_hosts"] == 3 and m["reaction_time_s"] == 1.05
    assert m["authentication_ms"] == 3.0 and m["authentication_all_terminals_s"] == 2.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e3), st.floats(0, 5), st.floats(0, 2),
                          st.booleans()), min_size=1, max_size=12))
def test_latency_never_negative_and_r_is_delay_plus_latency(hosts):
    wr, audit = [], []
    for i, (t_inf, delay, lat, enforced) in enumerate(hosts):
        name = f"c1t{i + 1}"
        wr += worm(name, t_inf, t_inf + delay)
        if enforced:
            audit += audit_isolation(name, t_inf + delay + lat)
    rows = {r["host"]: r for r in reaction.per_host(wr, audit)}
    assert len(rows) == len(hosts)
    for i, (_, delay, _, enforced) in enumerate(hosts):
        row = rows[f"c1t{i + 1}"]
        assert (row["enforced_at"] is not None) == enforced
        if enforced:
            assert row["reaction_latency_s"] >= 0
            assert abs(row["reaction_time_s"] - delay - row["reaction_latency_s"]) < 1e-3


# --- defences for larger topologies, authentication without CRS ---------------------------

def test_crs_defence_on_more_cells_than_the_shipped_authorization(tmp_path):
    files = defences.write_defence_files("crs_isolate", {}, 8, "t.yaml", tmp_path)
    auth = yaml.safe_load(files.authorization.read_text())
    assert all(f"cell{c}" in auth["groups"] for c in range(1, 9))
    assert auth["groups"]["cell8"] == auth["groups"]["cell1"]
    ctl = yaml.safe_load(files.controller_config.read_text())
    assert ctl["admission"]["authorization"] == str(files.authorization)
    # 3 cells: the shipped file already has them, nothing extra written
    small = defences.write_defence_files("crs_isolate", {}, 3, "t.yaml", tmp_path / "s")
    assert small.authorization is None


def test_authenticate_without_crs_gives_admission_but_no_agents(tmp_path):
    files = defences.write_defence_files("none", {}, 3, "t.yaml", tmp_path, authenticate=True)
    ctl = yaml.safe_load(files.controller_config.read_text())
    assert ctl["admission"]["mode"] == "authenticate" and "crs" not in ctl
    assert files.authenticate and not files.agents
    plain = defences.write_defence_files("none", {}, 3, "t.yaml", tmp_path / "p")
    assert not plain.authenticate and not plain.agents
    iso = defences.write_defence_files("crs_isolate", {}, 3, "t.yaml", tmp_path / "i")
    assert iso.authenticate and iso.agents


def test_scenario_authenticate_option():
    base = {"name": "x", "topology": "t.yaml", "cells": 1, "terminals_per_cell": 2,
            "defences": ["none"], "duration_s": 5}
    assert parse_scenario(base).authenticate is False
    assert parse_scenario({**base, "authenticate": True}).authenticate is True


# --- the demo's table and claim ---------------------------------------------------------

def _conf(defence: str, frac: float, **kw) -> dict:
    return {"defence": defence, "configuration": defence, "runs": 3, "infected_fraction": frac,
            "infected_fraction_p95": frac, "time_to_containment_s": kw.get("ttc"),
            "t50_s": kw.get("t50"), "reaction_latency_s": kw.get("lat"),
            "reaction_time_s": kw.get("r"), "authentication_ms": kw.get("auth")}


def test_demo_claim_and_table():
    from controller import demo
    good = {"runs": [_conf("none", 1.0, t50=15.2, auth=2.5),
                     _conf("crs_isolate", 0.0417, ttc=0.0, lat=0.048, r=1.05, auth=2.1)]}
    ok, text = demo.verdict(good)
    assert ok and "100%" in text and "4%" in text
    table = demo.format_demo_table(good)
    assert "48 ms" in table and "2.10 ms" in table and "1.05 s" in table
    bad = {"runs": [_conf("none", 0.7), _conf("crs_isolate", 0.05)]}
    assert demo.verdict(bad)[0] is False
    assert demo.verdict({"runs": [_conf("none", 1.0)]})[0] is False


def test_partial_coverage_enforces_the_first_cells_only(tmp_path):
    from controller.emulation.processes import ROOT
    from controller.settings import load_settings, validate
    metro = ROOT / "topologies/metro.yaml"
    files = defences.write_defence_files("crs_isolate", {"coverage_fraction": 0.5}, 8, metro,
                                         tmp_path)
    doc = yaml.safe_load(files.controller_config.read_text())
    assert doc["crs"]["enforce"] == ["cell1", "cell2", "cell3", "cell4"]
    validate(load_settings(str(files.controller_config)))             # a configuration that loads
    # a scenario on 6 of metro's 8 cells: half of those 6
    six = defences.write_defence_files("crs_isolate", {"coverage_fraction": 0.5}, 6, metro,
                                       tmp_path / "six")
    assert yaml.safe_load(six.controller_config.read_text())["crs"]["enforce"] == \
        ["cell1", "cell2", "cell3"]
    full = defences.write_defence_files("crs_isolate", {"coverage_fraction": 1.0}, 8, metro,
                                        tmp_path / "full")
    assert "enforce" not in yaml.safe_load(full.controller_config.read_text())["crs"]
    try:
        defences.write_defence_files("throttle", {"coverage_fraction": 0.5}, 8, metro,
                                     tmp_path / "t")
    except defences.DefenceError as exc:
        assert "crs.enforce" in str(exc)
    else:
        raise AssertionError("throttle with partial coverage was accepted")
