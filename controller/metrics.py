"""Prometheus metrics (`GET /metrics` on the REST port, loopback only): what `crs status`
counts, in Prometheus' terms.

Nothing extra happens on the packet path: counters are the core's own (one dict increment
where the event happens), grouped at scrape time into labelled families by name prefix
(`FAMILIES`; a counter no family claims is still exported, as `crs_events_total{name}`).
Gauges are read from the core's state at scrape time. The four histograms are the only
observations added: EAP exchange time at the server, report handling time, store commit
time, and reaction time (a report's arrival -> its flows sent); each is a few buckets and a
sum, updated in place (`observe`).
"""
from __future__ import annotations

import bisect
from typing import Any, Callable, Iterator

# (counter-name prefix, metric, label(s), help). First match wins: longer prefixes first.
FAMILIES: list[tuple[str, str, tuple[str, ...], str]] = [
    ("packet_in_", "crs_packet_ins_total", ("class",),
     "Packet-ins handled, by class (eapol, arp, admission_punt, security, ...)"),
    ("dot1x_success_", "crs_eap_successes_total", ("method",),
     "EAP exchanges that ended in Success, by method"),
    ("dot1x_failure_", "crs_eap_failures_total", ("method",),
     "EAP exchanges that ended in Failure, by method (none: before a method was chosen)"),
    ("dot1x_", "crs_dot1x_events_total", ("event",),
     "802.1X authenticator events: EAPOL frames and what became of them"),
    ("crsap_answered_", "crs_crsap_messages_total", ("status",),
     "CRSAP messages (reports, leaves, inquiries) answered, by HTTP status"),
    ("crs_rejected_", "crs_reports_rejected_total", ("reason",),
     "CRSAP messages refused, by reason (bad MAC, replay, schema, unknown sender...)"),
    ("decision_", "crs_decisions_total", ("level", "action"),
     "Decisions enforced, by the terminal's level and each action of the decision"),
    ("of_flow_mods_table_", "crs_flow_mods_total", ("table",),
     "OpenFlow flow-mods sent, by table"),
    ("of_meter_mods", "crs_meter_mods_total", (), "OpenFlow meter-mods sent"),
    ("attack_", "crs_attacks_dropped_total", ("kind",),
     "Attacks from terminals that were stopped, by kind"),
]

# seconds; the exchange and the reaction are milliseconds here, a commit a fraction of that
_FAST = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
_SLOW = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HISTOGRAM_HELP = {
    "eap_exchange": (_SLOW, "EAP exchange at the server: first Request/Identity -> Success"),
    "report": (_SLOW, "A CRSAP message from arrival to its answer (queue, store, flows)"),
    "store_commit": (_FAST, "One store transaction's commit (disk sync or database round trip)"),
    "reaction": (_SLOW, "A report's arrival -> the flows of the decision it caused sent"),
}


class Histogram:
    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds, self.counts = bounds, [0] * len(bounds)
        self.sum, self.count = 0.0, 0

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(self.bounds, seconds)
        if i < len(self.counts):
            self.counts[i] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        out, run = [], 0
        for le, n in zip(self.bounds, self.counts):
            run += n
            out.append((repr(le), run))
        return out + [("+Inf", self.count)]


HISTOGRAMS = {name: Histogram(bounds) for name, (bounds, _) in HISTOGRAM_HELP.items()}


def observe(name: str, seconds: float) -> None:
    """One observation (process-wide: a controller process runs one core at a time)."""
    HISTOGRAMS[name].observe(seconds)


def family_of(counter: str) -> tuple[str, tuple[str, ...]]:
    """The metric and label values a core counter is exported as."""
    for prefix, metric, labels, _ in FAMILIES:
        if counter.startswith(prefix):
            rest = counter[len(prefix):]
            if len(labels) == 2:
                first, _, second = rest.partition("_")
                return metric, (first, second)
            return metric, (rest,) if labels else ()
    return "crs_events_total", (counter,)


def families(counters: dict[str, int], gauges: dict[str, Any]) -> Iterator[Any]:
    """Prometheus metric families for a core's counters and gauges, and the histograms."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    found: dict[str, Any] = {}
    for prefix, metric, labels, text in FAMILIES:
        found[metric] = CounterMetricFamily(metric, text, labels=list(labels))
    found["crs_events_total"] = CounterMetricFamily(
        "crs_events_total", "Every other event the controller counts (crs status counters)",
        labels=["name"])
    for name, value in sorted(counters.items()):
        metric, values = family_of(name)
        found[metric].add_metric(list(values), value)
    yield from found.values()
    for name, (text, labels, samples) in gauges.items():
        g = GaugeMetricFamily(name, text, labels=list(labels))
        for values, v in samples:
            g.add_metric(list(values), v)
        yield g
    for name, h in HISTOGRAMS.items():
        yield HistogramMetricFamily(f"crs_{name}_seconds", HISTOGRAM_HELP[name][1],
                                    buckets=h.cumulative(), sum_value=h.sum)


def core_gauges(core: Any, ha: dict[str, Any] | None) -> dict[str, Any]:
    """Gauges read from the core's state now: (help, label names, [(label values, v)])."""
    levels: dict[str, int] = {}
    sealed = 0
    if core.security is not None:
        for t in core.security.scs.terminals.values():
            lvl = (t.decision.level if t.decision is not None else t.own_level).name
            levels[lvl] = levels.get(lvl, 0) + 1
        sealed = len(core.security.scs.corr.sealed)
    g: dict[str, Any] = {
        "crs_terminals": ("Terminals the reacting system knows, by security level", ("level",),
                          [((k,), v) for k, v in sorted(levels.items())]),
        "crs_sessions": ("Authenticated terminals (bindings in table 0)", (),
                         [((), len(core.admission.bound) if core.admission else 0)]),
        "crs_sealed_groups": ("Groups sealed by the reacting system (X.1125 scope)", (),
                              [((), sealed)]),
        "crs_switches_connected": ("Switches connected to this controller", (),
                                   [((), len(core.switches))]),
    }
    if ha is not None:
        g["crs_leader"] = ("1 if this controller leads (several controllers), else 0", (),
                           [((), 1 if ha.get("role") == "leader" else 0)])
        g["crs_lease_generation"] = ("The lease generation this controller last saw", (),
                                     [((), ha.get("generation") or 0)])
    return g


def collector(core: Callable[[], Any], ha: Callable[[], dict[str, Any] | None]) -> Any:
    """A prometheus_client collector over the live core (`core()` at each scrape)."""
    class _Collector:
        def collect(self) -> Iterator[Any]:
            c = core()
            return families(c.status()["counters"], core_gauges(c, ha()))
    return _Collector()


def exposition(core: Any, ha: dict[str, Any] | None = None) -> bytes:
    """The Prometheus text format for `core` (what GET /metrics answers)."""
    from prometheus_client import CollectorRegistry, generate_latest
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector(lambda: core, lambda: ha))
    return generate_latest(registry)
