"""Security levels and the per-terminal Decision (X.1125 8.2): what must hold, as plain data.

The SCS stores a Decision, the enforcement builders turn it into table-1 flows. Keeping it a
frozen value means "did anything change for this terminal?" is an equality test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Level(str, Enum):
    """Security levels of the evaluation policy (8.1)."""

    COMPLIANT = "COMPLIANT"
    VULNERABLE = "VULNERABLE"
    UNKNOWN = "UNKNOWN"
    INFECTED = "INFECTED"

    @property
    def severity(self) -> int:
        """Order used to combine evidence: the worse level wins."""
        return _SEVERITY[self]


_SEVERITY = {Level.COMPLIANT: 0, Level.VULNERABLE: 1, Level.UNKNOWN: 2, Level.INFECTED: 3}


def worse(a: Level, b: Level) -> Level:
    return a if a.severity >= b.severity else b


ACTIONS = ("permit", "restrict_apps", "rate_limit", "redirect_web", "isolate")
SCOPES = ("none", "group", "all")


@dataclass(frozen=True)
class Service:
    """An L4 service, e.g. tcp/25 (mail)."""

    proto: str  # "tcp" or "udp"
    port: int

    def __str__(self) -> str:
        return f"{self.proto}/{self.port}"


@dataclass(frozen=True)
class Decision:
    """What must hold for one terminal.

    - `isolate`: only ARP, the controller service address and the update server reachable.
    - `scope`: how far the terminal may reach otherwise: none (services only), its group, all.
    - `meter_kbps`: an OF1.3 meter on everything it sends (None: no limit); `meter_pps`
      the same in packets per second (a decision has one or the other).
    - `restricted`: L4 services dropped (the update server stays reachable).
    - `redirect_web`: tcp/80 goes to the update server's portal.
    - `outside_kbps`: when the group is sealed in "meter" mode, out-of-group traffic is
      metered at this rate instead of dropped (None: dropped).
    """

    level: Level
    actions: tuple[str, ...] = ("permit",)
    scope: str = "all"
    meter_kbps: int | None = None
    meter_pps: int | None = None
    restricted: tuple[Service, ...] = ()
    redirect_web: bool = False
    isolate: bool = False
    update: str | None = None
    group_sealed: bool = False
    outside_kbps: int | None = None
    operator: str | None = None       # "quarantine" / "rate_limit" when an operator forced it
    reason: str = ""
    policy_version: int = 0
    accusers: tuple[str, ...] = field(default=())

    @property
    def unrestricted(self) -> bool:
        """True when no table-1 flow is needed for this terminal."""
        return (not self.isolate and self.scope == "all" and self.meter_kbps is None
                and self.meter_pps is None and not self.restricted and not self.redirect_web)

    def same_enforcement(self, other: "Decision | None") -> bool:
        """Whether `other` needs the same flows (reason and version may differ)."""
        if other is None:
            return False
        keys = ("isolate", "scope", "meter_kbps", "meter_pps", "restricted", "redirect_web",
                "outside_kbps")
        return all(getattr(self, k) == getattr(other, k) for k in keys)

    def summary(self) -> dict:
        """A JSON-able form for the audit log and the REST API."""
        return {"level": self.level.value, "actions": list(self.actions), "scope": self.scope,
                "meter_kbps": self.meter_kbps, "meter_pps": self.meter_pps,
                "restricted": [str(s) for s in self.restricted],
                "redirect_web": self.redirect_web, "isolate": self.isolate,
                "update": self.update, "group_sealed": self.group_sealed,
                "outside_kbps": self.outside_kbps, "operator": self.operator,
                "reason": self.reason, "policy_version": self.policy_version,
                "accusers": list(self.accusers)}


@dataclass(frozen=True)
class Location:
    """Where a terminal attaches: the enforcement builders match on its edge port."""

    number: int            # the terminal's cookie value in table 1 (SECURITY.cookie(number))
    dpid: int
    port: int
    mac: str
    ip: str
    group: str | None = None
