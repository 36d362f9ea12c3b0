"""Security control (X.1125 8.2, 8.3): level + group + correlation state -> Decision.

Operator actions override the policy: `quarantine` isolates whatever the level, `rate_limit`
adds a meter on top of what the level requires (the lower of the two in kbit/s). A terminal
has one meter: where the policy meters its level in packets/s, that meter stays (a kbit/s
limit could pass a scan's small probes far faster) and the operator's is recorded, not
applied. A sealed group (correlation) narrows every member's scope to its group; in
"meter" seal mode out-of-group traffic is metered instead, unless the terminal has a meter
of its own: then it is dropped (out-of-group traffic through the seal's meter only would
bypass the terminal's, and a seal only ever tightens).
"""
from __future__ import annotations

from dataclasses import dataclass

from controller.crs.decision import Decision, Level
from controller.crs.policy import Policy


@dataclass(frozen=True)
class Override:
    """An operator's action on one terminal, in force until `release`."""

    kind: str                 # "quarantine" or "rate_limit"
    kbps: int | None = None


def decide(level: Level, group: str | None, policy: Policy, reason: str = "",
           sealed: bool = False, override: Override | None = None,
           accusers: tuple[str, ...] = (), agentless: bool = False) -> Decision:
    """Everything that must hold for a terminal at `level` in `group` (`agentless`: it
    answered no SCA probe, X.1125 11.1)."""
    ctl = policy.control_for(level, group, agentless)
    if agentless and level == Level.UNKNOWN:
        reason = "no SCA: agentless terminal"
    actions = list(ctl.actions)
    isolate = "isolate" in actions
    scope = ctl.scope
    meter, meter_pps = ctl.rate_limit_kbps, ctl.rate_limit_pps
    operator = None
    outside = None
    if sealed:
        if scope == "all":
            scope = "group"
        if policy.correlation.seal_mode == "meter" and scope == "group" and \
                meter is None and meter_pps is None:
            outside = policy.correlation.seal_meter_kbps
        reason = f"{reason}; group sealed" if reason else "group sealed"
    if override is not None and override.kind == "quarantine":
        isolate, scope, operator = True, "none", "quarantine"
        actions = sorted(set(actions) - {"permit"} | {"isolate"})
        reason = f"operator quarantine ({reason})" if reason else "operator quarantine"
    elif override is not None and override.kind == "rate_limit" and override.kbps:
        if meter_pps is None:
            meter = override.kbps if meter is None else min(meter, override.kbps)
            if outside is not None:          # now a meter of its own: see above
                outside = None
        operator = "rate_limit"
        actions = sorted(set(actions) - {"permit"} | {"rate_limit"})
        what = "operator rate limit" if meter_pps is None else \
            f"operator rate limit (not applied: the policy holds it to {meter_pps} packets/s)"
        reason = f"{what} ({reason})" if reason else what
    return Decision(
        level=level, actions=tuple(actions), scope=scope, meter_kbps=meter, meter_pps=meter_pps,
        restricted=ctl.restrict_apps, redirect_web="redirect_web" in actions,
        isolate=isolate, update=ctl.update, group_sealed=sealed, outside_kbps=outside,
        operator=operator, reason=reason, policy_version=policy.version,
        accusers=tuple(accusers))
