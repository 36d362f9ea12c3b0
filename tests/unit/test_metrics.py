"""GET /metrics: the core's counters and state in Prometheus' text format, parsed back with
prometheus_client's own parser; the Grafana dashboard names only metrics that exist."""
import json
import re

from corekit import C1, CLEAN, INFECTED, ROOT, T0, authenticate, report
from prometheus_client.parser import text_string_to_metric_families

from controller.metrics import FAMILIES, exposition, family_of


def samples(core, ha=None) -> dict:
    out = {}
    for fam in text_string_to_metric_families(exposition(core, ha).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_an_admission_and_two_reports_show_up_as_metrics(boot):
    core, sim = boot(crs=True)
    _, keys = authenticate(core, sim, 2, C1, "c1t1")
    ident = "c1t1@crs.example"
    for seq, posture in ((1, CLEAN), (2, INFECTED)):
        status, _, out = core.crsap_message(report(keys, ident, seq, T0 + seq, posture),
                                            T0 + seq)
        assert status == 200
        sim.apply(m for _, m in out)
    s = samples(core, {"role": "leader", "generation": 3})
    assert s[("crs_eap_successes_total", (("method", "psk"),))] == 1
    assert s[("crs_packet_ins_total", (("class", "eapol"),))] >= 3
    assert s[("crs_crsap_messages_total", (("status", "200"),))] == 2
    assert s[("crs_decisions_total", (("action", "isolate"), ("level", "INFECTED")))] == 1
    assert s[("crs_sessions", ())] == 1
    assert s[("crs_terminals", (("level", "INFECTED"),))] == 1
    assert s[("crs_leader", ())] == 1 and s[("crs_lease_generation", ())] == 3
    assert s[("crs_eap_exchange_seconds_count", ())] >= 1
    assert s[("crs_store_commit_seconds_count", ())] >= 1
    # every counter of `crs status` is exported, under its family's labels
    names = {m: labels for _, m, labels, _ in FAMILIES} | {"crs_events_total": ("name",)}
    for name, value in core.status()["counters"].items():
        metric, values = family_of(name)
        assert s[(metric, tuple(sorted(zip(names[metric], values))))] == value, name


def test_family_prefixes_are_matched_longest_first():
    assert family_of("dot1x_success_psk") == ("crs_eap_successes_total", ("psk",))
    assert family_of("dot1x_success") == ("crs_dot1x_events_total", ("success",))
    assert family_of("decision_INFECTED_rate_limit") == ("crs_decisions_total",
                                                         ("INFECTED", "rate_limit"))
    assert family_of("something_new") == ("crs_events_total", ("something_new",))
    prefixes = [p for p, *_ in FAMILIES]
    for i, p in enumerate(prefixes):      # a prefix never hides a longer one after it
        assert not any(q.startswith(p) and q != p for q in prefixes[i + 1:]), p


def test_every_query_of_the_grafana_dashboard_names_a_metric_that_exists(boot):
    core, sim = boot(crs=True)
    authenticate(core, sim, 2, C1, "c1t1")
    exported = {n for n, _ in samples(core, {"role": "leader", "generation": 1})}
    exported |= {m for _, m, *_ in FAMILIES}
    dash = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 8
    for expr in exprs:
        for name in re.findall(r"\b(crs_[a-z_]+)", expr):
            assert name in exported, f"{name} in {expr!r} is not exported"


def test_the_reaction_benchmark_reads_commit_and_reaction_means_from_metrics(boot):
    """`crs bench reaction` times the parts the audit log cannot (the commit comes after
    its lines) from two scrapes of GET /metrics: mean ms per observation between them."""
    from controller.bench.reaction import controller_means, histogram_totals
    core, sim = boot(crs=True)
    _, keys = authenticate(core, sim, 2, C1, "c1t1")
    before = histogram_totals(exposition(core).decode())
    n0 = before["crs_store_commit_seconds"][1]
    status, _, out = core.crsap_message(report(keys, "c1t1@crs.example", 1, T0 + 1,
                                               INFECTED), T0 + 1)
    assert status == 200 and out
    after = histogram_totals(exposition(core).decode())
    assert after["crs_store_commit_seconds"][1] > n0
    means = controller_means(before, after)
    assert 0 < means["store_commit_mean_ms"] < 1000
    # the shell observes arrival -> flows sent; a core alone sends nothing
    assert means["arrival_to_flows_sent_mean_ms"] is None


def test_the_reaction_benchmark_splits_arrival_to_flows_from_counters():
    from controller.bench.reaction import counter_means
    before = {"time_store_sync_us": 1000, "store_syncs": 2, "store_syncs_inline": 0,
              "time_store_held_us": 0, "store_outputs_held": 0}
    after = {"time_store_sync_us": 4000, "store_syncs": 6, "store_syncs_inline": 2,
             "time_store_held_us": 3000, "store_outputs_held": 5,
             "time_crsap_core_us": 900, "crsap_group_commits": 3}
    m = counter_means(before, after)
    assert m == {"store_sync_mean_ms": 0.5, "outputs_held_mean_ms": 0.6,
                 "crsap_core_per_group_ms": 0.3, "store_syncs_inline_share": 2 / 6}
    assert counter_means({}, {})["store_sync_mean_ms"] is None     # nothing happened
