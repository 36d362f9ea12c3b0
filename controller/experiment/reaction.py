"""Reaction latency and authentication time of one run, from the controller's audit log,
the worms' events and the supplicants' output.

Why a separate module: the worm events (results.py) say what happened to the hosts; the
audit log says what the controller did and when. Joining both gives, per infected terminal:

- `infected_at`: the worm's `infected` record (ground truth);
- `detected_at`: its `threat_detected` record, i.e. when its posture file showed the threat
  (infection + detection delay); the agent reports from there;
- `reported_at`: the first audit `sci_report` of the terminal at level INFECTED;
- `decided_at`: the first audit `decision` that restricts it (isolate, meter, scope, seal);
- `enforced_at`: the first audit `flows` (or `seal_flows` of its group) at or after that
  decision: the flows were handed to the switch.

A host whose group was sealed before it was infected is `preemptive` (no latency: the
network held it before there was anything to detect).

reaction latency = enforced - detected (the reacting system's own share: agent report,
correlation, decision, flow installation); reaction time R = enforced - infected (what the
models call R: detection delay + reaction latency). All times are time.time() seconds.
Pure functions over lists of records (files are read with controller.jsonfile).
"""
from __future__ import annotations

import math
import re
import statistics
from typing import Any, Iterable, Sequence

RESTRICTING = ("isolate", "meter_kbps", "meter_pps", "group_sealed")
EAP_SUCCESS_RE = re.compile(r"^EAP-SUCCESS\s+([0-9.]+)\s*$", re.M)


def _name(terminal: Any) -> str:
    """Host name of an audit `terminal` (the EAP identity `<host>@realm`)."""
    return str(terminal or "").split("@")[0]


def restricting(decision: dict[str, Any]) -> bool:
    """Whether an audit `decision` record restricts the terminal."""
    if any(decision.get(k) for k in RESTRICTING):
        return True
    return decision.get("scope") not in (None, "all")


def host_times(worm_records: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per host: `infected_at` and `detected_at` (first of each) from the worm events."""
    out: dict[str, dict[str, float]] = {}
    keys = {"infected": "infected_at", "threat_detected": "detected_at"}
    for r in worm_records:
        key = keys.get(r.get("event"))
        host, t = r.get("host"), r.get("t")
        if key and host and isinstance(t, (int, float)):
            d = out.setdefault(host, {})
            d[key] = min(float(t), d.get(key, math.inf))
    return out


def controller_events(audit_records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per host, from the audit log: `reports` (times of INFECTED reports), `decisions`
    ((at, level) of restricting decisions), `flows` ((t, level)), `seals` (times its group
    was sealed). The core writes a decision's `flows` record just before the `decision`
    record, both computed at the decision's `at`: flows count from that `at` on."""
    out: dict[str, dict[str, Any]] = {}
    group_of: dict[str, str] = {}
    seals: list[tuple[float, str]] = []

    def host_of(r: dict[str, Any]) -> dict[str, Any]:
        return out.setdefault(_name(r.get("terminal")),
                              {"reports": [], "decisions": [], "flows": [], "seals": []})
    for r in sorted((r for r in audit_records if isinstance(r.get("t"), (int, float))),
                    key=lambda r: r["t"]):
        ev, t = r.get("event"), float(r["t"])
        if ev == "seal_flows" and r.get("sealed"):
            seals.append((t, str(r.get("group"))))
        if not r.get("terminal"):
            continue
        if ev == "connect":
            group_of[_name(r["terminal"])] = str(r.get("group"))
        elif ev == "sci_report" and r.get("level") == "INFECTED":
            host_of(r)["reports"].append(t)
        elif ev == "decision" and restricting(r):
            at = r.get("at")
            host_of(r)["decisions"].append((float(at) if isinstance(at, (int, float)) else t,
                                            str(r.get("level"))))
        elif ev == "flows":
            host_of(r)["flows"].append((t, str(r.get("level"))))
    for host, d in out.items():
        d["seals"] = [t for t, g in seals if group_of.get(host) == g]
    return out


def enforcement_after(ev: dict[str, Any], since: float) -> dict[str, float]:
    """The first restricting decision at or after `since` and the flows that enforced it
    (`decided_at`, `enforced_at`), plus the first INFECTED report after `since`."""
    got: dict[str, float] = {}
    rep = [t for t in ev.get("reports", []) if t >= since]
    if rep:
        got["reported_at"] = rep[0]
    for at, level in ev.get("decisions", []):
        if at < since:
            continue
        got["decided_at"] = at
        cand = [t for t, lv in ev.get("flows", []) if t >= at and lv == level]
        cand += [t for t in ev.get("seals", []) if t >= at]
        if cand:
            got["enforced_at"] = min(cand)
        break
    return got


def per_host(worm_records: Sequence[dict[str, Any]],
             audit_records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per infected host: the times above (None when it never happened) and the
    derived `reaction_latency_s` and `reaction_time_s`. A host already restricted before it
    was infected (a member of a group sealed earlier) is `preemptive`: the network held it
    before there was anything to detect, so it has no reaction latency."""
    hosts, ctl = host_times(worm_records), controller_events(audit_records)
    rows = []
    for host in sorted(h for h, d in hosts.items() if "infected_at" in d):
        inf = hosts[host]["infected_at"]
        ev = ctl.get(host, {})
        row: dict[str, Any] = {"host": host, "infected_at": inf,
                               "detected_at": hosts[host].get("detected_at"),
                               "reported_at": None, "decided_at": None, "enforced_at": None,
                               "preemptive": any(at < inf for at, _ in ev.get("decisions", []))}
        if not row["preemptive"]:
            row.update(enforcement_after(ev, inf))
        enf, det = row["enforced_at"], row["detected_at"]
        row["reaction_latency_s"] = round(enf - det, 4) if enf is not None and det is not None \
            else None
        row["reaction_time_s"] = round(enf - inf, 4) if enf is not None else None
        rows.append(row)
    return rows


def _median(xs: Sequence[float]) -> float | None:
    return round(statistics.median(xs), 4) if xs else None


def _p95(xs: Sequence[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return round(s[max(0, math.ceil(0.95 * len(s)) - 1)], 4)


def summarize_hosts(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A run's reaction facts: medians / p95 over its infected hosts that were enforced."""
    lat = [r["reaction_latency_s"] for r in rows if r["reaction_latency_s"] is not None]
    rt = [r["reaction_time_s"] for r in rows if r["reaction_time_s"] is not None]
    return {"infected_hosts": len(rows), "enforced_hosts": len(rt),
            "preemptive_hosts": sum(bool(r.get("preemptive")) for r in rows),
            "reaction_latency_s": _median(lat), "reaction_latency_s_p95": _p95(lat),
            "reaction_time_s": _median(rt), "reaction_time_s_p95": _p95(rt),
            "reaction_latency_s_per_host": lat}


def eap_success_s(text: str) -> float | None:
    """Seconds of the exchange from a supplicant_main output (`EAP-SUCCESS <s>`), or None."""
    m = EAP_SUCCESS_RE.search(text or "")
    return float(m.group(1)) if m else None


def authentication_times(logs: dict[str, str], keys: dict[str, dict[str, Any]],
                         started: dict[str, float]) -> dict[str, float]:
    """Per terminal: the EAP exchange time from its supplicant's `EAP-SUCCESS` line, or else
    keys-file `authenticated_at` minus the supplicant's start (includes process start-up)."""
    out: dict[str, float] = {}
    for host in sorted(set(logs) | set(keys)):
        s = eap_success_s(logs.get(host, ""))
        if s is None:
            at, t0 = (keys.get(host) or {}).get("authenticated_at"), started.get(host)
            if isinstance(at, (int, float)) and t0 is not None:
                s = float(at) - t0
        if s is not None:
            out[host] = round(s, 6)
    return out


def merge_configuration(facts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """summary.json keys for one configuration from its runs' runner facts (the runs'
    `reaction` and `authentication` sections): pooled over hosts of all runs."""
    lat = [x for f in facts
           for x in (f.get("reaction") or {}).get("reaction_latency_s_per_host", [])]
    rts = [(f.get("reaction") or {}).get("reaction_time_s") for f in facts]
    rts = [x for x in rts if x is not None]
    auth = [x for f in facts for x in ((f.get("authentication") or {}).get("per_terminal_s")
                                       or {}).values()]
    all_in = [f["authentication_s"] for f in facts if isinstance(f.get("authentication_s"),
                                                                  (int, float))]
    out: dict[str, Any] = {
        "reaction_latency_s": _median(lat), "reaction_latency_s_p95": _p95(lat),
        "reaction_time_s": _median(rts),
        "enforced_hosts": sum((f.get("reaction") or {}).get("enforced_hosts", 0) for f in facts),
        "preemptive_hosts": sum((f.get("reaction") or {}).get("preemptive_hosts", 0)
                                for f in facts),
        "authentication_ms": round(statistics.median(auth) * 1000, 3) if auth else None,
        "authentication_ms_p95": round(_p95(auth) * 1000, 3) if auth else None,
        "authentication_all_terminals_s": _median(all_in),
    }
    return out


__all__ = ["authentication_times", "controller_events", "eap_success_s", "enforcement_after",
           "host_times",
           "merge_configuration", "per_host", "restricting", "summarize_hosts"]
