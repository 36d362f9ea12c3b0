"""SMOKE TESTS of the X.1125 benchmarks (reaction, reports): they run on tiny parameters and
write well-formed result files with the expected keys. They assert no timings (a benchmark
is not a test); the analysis of the raw records is checked on hand-made data."""
from array import array

from nethelpers import ROOT, summary_rows

from controller import jsonfile
from controller.bench import reaction, reports
from controller.crs import messages as crsap


def test_trial_analysis_finds_the_first_lost_datagram():
    sent = array("d", [10.000 + i * 0.001 for i in range(20)])   # seq i sent at 10 + i ms
    arrived = {i: sent[i] + 0.0002 for i in range(20) if i < 7 or i >= 15}
    arrived.pop(3)                                  # one random loss before the block
    r = reaction.analyse_trial(10.0045, 10.0145, sent, arrived)
    assert r["valid"] and r["lost_before_block"] == 0   # seq 3 was sent before t0
    assert abs(r["reaction_first_lost_ms"] - 2.5) < 1e-6    # seq 7: 10.007 - 10.0045
    assert abs(r["reaction_last_arrival_ms"] - 1.7) < 1e-6  # seq 6 arrived at 10.0062
    r = reaction.analyse_trial(10.0025, 10.0145, sent, arrived)
    assert r["valid"] and r["lost_before_block"] == 1
    # already blocked before the report / nothing lost before the release: invalid
    assert not reaction.analyse_trial(10.0085, 10.0145, sent, arrived)["valid"]
    assert not reaction.analyse_trial(10.0, 10.0055, sent, arrived)["valid"]


def test_reports_benchmark_writes_its_file(tmp_path):
    result = reports.run(str(tmp_path), terminals=300, groups=3, clients=2, connections=4,
                         warmup_s=0.5,
                         duration_s=1.5, scs_reports=50, scs_max_s=2, core_reports=30,
                         core_max_s=2, scaling=(30,))
    data = jsonfile.read(tmp_path / "reports.json")
    assert data["benchmark"] == "reports" and data["parameters"]["terminals"] == 300
    rate = summary_rows(tmp_path, "reports.json")[
        "reports end to end (10,000 terminals), rate / p50"]
    assert rate["values"] == [data["end_to_end"]["accepted_per_s"],
                              data["end_to_end"]["latency_ms"]["p50"]]
    assert rate["verdict"] == "not measured at scale"      # 300 terminals, not 10,000
    assert data["terminals_restored"] == 300
    e2e = data["end_to_end"]
    assert e2e["accepted_per_s"] > 0 and e2e["statuses"].get("200", 0) > 0
    assert set(e2e["statuses"]) == {"200"}, e2e["statuses"]   # every signed report accepted
    assert e2e["latency_ms"]["n"] > 0 and e2e["latency_ms"]["p50"] > 0
    assert data["core_in_process"]["statuses"] == {"200": data["core_in_process"]["us"]["n"]}
    idle = data["core_in_process"]["after_idle_us"]     # lone reports, 50 ms apart
    assert idle["n"] > 0 and idle["p50"] > 0
    assert data["core_in_process"]["after_idle_cpu_us"]["p50"] > 0
    assert set(data["scs_by_terminals"]) == {"30", "300"}
    for n in ("30", "300"):     # the pure core, alone and in group commits, at each size
        c = data["core_by_terminals"][n]
        assert set(c["statuses"]) == {"200"} and set(c["grouped_statuses"]) == {"200"}
        assert c["group_1_us"]["p50"] > 0 and c["group_32_us"]["p50"] > 0
    for stages in data["core_breakdown_us"].values():     # groups and alone
        assert stages["commit (disk sync)"] > 0 and stages["verify (HMAC, replay)"] > 0
    assert e2e["client_cpu_us_per_report"] > 0 and e2e["answers_verified"] > 0
    assert e2e["controller_cpu_breakdown_us"]["core (SCS, store, audit, commit)"] > 0
    assert e2e["messages_per_commit"] >= 1
    assert (tmp_path / "reports_scaling.png").stat().st_size > 1000
    for r in data["scs_by_terminals"].values():
        assert r["steady_us"]["n"] > 0 and r["flip_us"]["n"] > 0
    assert result["scs_in_process"]["steady_us"]["p99"] >= \
        result["scs_in_process"]["steady_us"]["p50"] > 0


def test_reports_are_accepted_by_the_pure_scs():
    from controller.crs.policy import load_policy
    from controller.crs.scs import Enforce, Reply
    policy = load_policy(ROOT / "config/crs_policy.yaml")
    terms = reports.population(5, 2)
    scs = reports.pure_scs(terms, policy, 1000.0)
    out = scs.handle(None, reports.report(terms[0], 1, 1000.0), 1000.0)
    reply = next(e for e in out if isinstance(e, Reply))
    assert crsap.decode(reply.payload).body["level"] == "COMPLIANT"
    assert not any(isinstance(e, Enforce) for e in out)     # restored decisions hold
    out = scs.handle(None, reports.report(terms[0], 2, 1000.5, infected=True), 1000.5)
    assert any(isinstance(e, Enforce) and e.decision.isolate for e in out)


def test_reaction_benchmark_writes_its_file(tmp_path):
    result = reaction.run(str(tmp_path), trials=3)
    data = jsonfile.read(tmp_path / "reaction.json")
    assert data["benchmark"] == "reaction" and data["parameters"]["trials"] == 3
    row = summary_rows(tmp_path, "reaction.json")[
        "reaction (report sent -> attacker dropped), p50 / p99"]
    assert row["values"] == [data["reaction_first_lost_ms"]["p50"],
                             data["reaction_first_lost_ms"]["p99"]]
    assert data["failures"] == [] and data["trials_valid"] == 3
    for key in ("reaction_first_lost_ms", "reaction_last_arrival_ms", "report_http_ms",
                "report_to_controller_ms", "controller_report_to_flows_ms"):
        assert data[key]["n"] == 3 and data[key]["p50"] is not None, key
    first, last = data["reaction_first_lost_ms"], data["reaction_last_arrival_ms"]
    assert 0 < first["min"] <= first["max"] and 0 < last["min"]
    assert result["datagrams_received"] < result["datagrams_sent"]
    # the controller's commit and arrival -> flows sent, from its /metrics
    means = data["controller_means"]
    assert means["store_commit_mean_ms"] > 0 and means["arrival_to_flows_sent_mean_ms"] > 0
    # and from its counters: each decision's flows waited for a sync of the store
    assert means["store_sync_mean_ms"] > 0 and means["outputs_held_mean_ms"] > 0
    assert means["crsap_core_per_group_ms"] > 0
