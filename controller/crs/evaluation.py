"""Security evaluation (X.1125 8.1): SCI -> security level by an ordered rule table.

Rules are evaluated top-down, the first whose conditions all hold decides, otherwise the
policy default applies. No SCI at all is UNKNOWN. The SCI has passed the CRSAP schema
(controller.crs.messages.SCI); missing parts are still handled so a caller can never crash us.
"""
from __future__ import annotations

from typing import Any, Callable

from controller.crs.decision import Level
from controller.crs.policy import Policy


def version_tuple(text: str) -> tuple[int, ...]:
    """'1.2.3' -> (1, 2, 3); anything unparsable sorts lowest."""
    try:
        return tuple(int(p) for p in str(text).split("."))
    except ValueError:
        return (-1,)


def _threats(sci: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in sci.get("threats") or () if isinstance(t, dict)]


def _int(sci: dict[str, Any], part: str, key: str) -> int | None:
    value = (sci.get(part) or {}).get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _below(value: int | None, limit: int) -> bool:
    return value is None or value < limit  # an unreported number does not meet a baseline


TESTS: dict[str, Callable[[dict[str, Any], Any], bool]] = {
    "threats_uncleaned": lambda s, want: any(not t.get("cleaned", False)
                                             for t in _threats(s)) == want,
    "threats_present": lambda s, want: bool(_threats(s)) == want,
    "patch_level_below": lambda s, n: _below(_int(s, "os", "patch_level"), n),
    "signature_version_below": lambda s, n: _below(_int(s, "antivirus", "signature_version"), n),
    "agent_version_below": lambda s, v: (version_tuple(s.get("agent_version", ""))
                                         < version_tuple(v)),
    "firewall": lambda s, want: s.get("firewall") is want,
    "os_name_in": lambda s, names: (s.get("os") or {}).get("name") in names,
    "attackers_reported": lambda s, want: bool(s.get("attackers")) == want,
}


def evaluate(sci: dict[str, Any] | None, policy: Policy) -> tuple[Level, str]:
    """The level of a terminal and the reason (the rule that matched)."""
    if not isinstance(sci, dict):
        return Level.UNKNOWN, "no SCI reported"
    for rule in policy.rules:
        if all(TESTS[cond](sci, want) for cond, want in rule.when):
            return rule.level, f"rule {rule.name}"
    return policy.default_level, "default"
