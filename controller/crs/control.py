"""Security control (X.1125 8.2, 8.3): level + group + correlation state -> Decision.

Operator actions override the policy: `quarantine` isolates whatever the level, `rate_limit`
adds a meter on top of what the level requires (the lower of the two in kbit/s; it replaces
a packets/s meter of the policy: one meter per terminal, and the operator chose this one).
A sealed group (correlation) narrows every member's scope to its group; in "meter" seal
mode out-of-group traffic is metered instead.
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
        if policy.correlation.seal_mode == "meter" and scope == "group":
            outside = policy.correlation.seal_meter_kbps
        reason = f"{reason}; group sealed" if reason else "group sealed"
    if override is not None and override.kind == "quarantine":
        isolate, scope, operator = True, "none", "quarantine"
        actions = sorted(set(actions) - {"permit"} | {"isolate"})
        reason = f"operator quarantine ({reason})" if reason else "operator quarantine"
    elif override is not None and override.kind == "rate_limit" and override.kbps:
        meter = override.kbps if meter is None else min(meter, override.kbps)
        meter_pps = None
        operator = "rate_limit"
        actions = sorted(set(actions) - {"permit"} | {"rate_limit"})
        reason = f"operator rate limit ({reason})" if reason else "operator rate limit"
    return Decision(
        level=level, actions=tuple(actions), scope=scope, meter_kbps=meter, meter_pps=meter_pps,
        restricted=ctl.restrict_apps, redirect_web="redirect_web" in actions,
        isolate=isolate, update=ctl.update, group_sealed=sealed, outside_kbps=outside,
        operator=operator, reason=reason, policy_version=policy.version,
        accusers=tuple(accusers))
