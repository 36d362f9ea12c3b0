"""The four-table OF1.3 pipeline: one table, one owner, one cookie, named priority bands.

| table | owner | decides |
| 0 admission  | EAC (X.1124)       | who may send at all |
| 1 security   | CRS NAC/ASC (X.1125) | per-terminal and per-group restrictions |
| 2 eth_src    | forwarding         | is the source known here (else learn it; ARP requests up) |
| 3 eth_dst    | forwarding         | where a permitted packet goes (else flood) |

A `Table` knows which match fields it accepts and which tables it may jump to, and every flow
it builds is checked against that: a mistake fails in a unit test, not on a switch.
Cookies carry the owner in the top byte and an owner-chosen value (e.g. a terminal number)
below, so an owner deletes "its" flows, or one terminal's flows, by cookie.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from controller.openflow.ofmsg import (
    OFPP_ANY,
    Apply,
    FlowMod,
    Goto,
    Instruction,
    Meter,
)

OWNER_SHIFT = 56
OWNER_MASK = 0xFF << OWNER_SHIFT
ALL_BITS = (1 << 64) - 1


class PipelineError(ValueError):
    """A flow that does not fit its table's declared schema."""


@dataclass(frozen=True)
class Table:
    table_id: int
    name: str
    owner_cookie: int
    match_fields: frozenset[str]
    next_tables: frozenset[int]

    def cookie(self, sub: int = 0) -> int:
        if not 0 <= sub < (1 << OWNER_SHIFT):
            raise PipelineError(f"{self.name}: cookie value {sub} out of range")
        return (self.owner_cookie << OWNER_SHIFT) | sub

    def flow(self, priority: int, match: dict[str, Any] | None = None,
             instructions: Iterable[Instruction] = (), *, sub: int = 0,
             idle_timeout: int = 0, hard_timeout: int = 0,
             send_flow_rem: bool = False) -> FlowMod:
        """An add flow-mod for this table, checked against its schema."""
        match = dict(match or {})
        self._check(priority, match, tuple(instructions))
        return FlowMod(table_id=self.table_id, command="add", priority=priority, match=match,
                       instructions=tuple(instructions), cookie=self.cookie(sub),
                       idle_timeout=idle_timeout, hard_timeout=hard_timeout,
                       send_flow_rem=send_flow_rem)

    def delete_all(self) -> FlowMod:
        """Delete every flow this owner put in this table."""
        return FlowMod(table_id=self.table_id, command="delete", cookie=self.cookie(0),
                       cookie_mask=OWNER_MASK, out_port=OFPP_ANY)

    def delete_sub(self, sub: int) -> FlowMod:
        """Delete the flows carrying one owner value (e.g. one terminal's flows)."""
        return FlowMod(table_id=self.table_id, command="delete", cookie=self.cookie(sub),
                       cookie_mask=ALL_BITS)

    def delete_match(self, match: dict[str, Any], priority: int | None = None) -> FlowMod:
        """Delete flows of this owner by match (strict when a priority is given)."""
        self._check(priority or 0, dict(match), ())
        return FlowMod(table_id=self.table_id,
                       command="delete_strict" if priority is not None else "delete",
                       priority=priority or 0, match=dict(match), cookie=self.cookie(0),
                       cookie_mask=OWNER_MASK)

    def _check(self, priority: int, match: dict[str, Any], instructions: tuple) -> None:
        if not 0 <= priority <= 0xFFFF:
            raise PipelineError(f"{self.name}: priority {priority} out of range")
        if not self.match_fields.issuperset(match):
            extra = set(match) - self.match_fields
            raise PipelineError(f"{self.name}: match fields {sorted(extra)} not declared")
        for ins in instructions:
            if isinstance(ins, Goto) and ins.table_id not in self.next_tables:
                raise PipelineError(f"{self.name}: may not go to table {ins.table_id}")
            if not isinstance(ins, (Apply, Goto, Meter)):
                raise PipelineError(f"{self.name}: unknown instruction {ins!r}")
        _check_prerequisites(self.name, match)


# OF1.3 match prerequisites (§7.2.3.6), so a bad match fails here and not on the switch.
_PREREQ = {
    "ipv4_src": ("eth_type", {0x0800}), "ipv4_dst": ("eth_type", {0x0800}),
    "ip_proto": ("eth_type", {0x0800, 0x86DD}),
    "arp_spa": ("eth_type", {0x0806}), "arp_tpa": ("eth_type", {0x0806}),
    "arp_op": ("eth_type", {0x0806}), "arp_sha": ("eth_type", {0x0806}),
    "tcp_src": ("ip_proto", {6}), "tcp_dst": ("ip_proto", {6}),
    "udp_src": ("ip_proto", {17}), "udp_dst": ("ip_proto", {17}),
    "icmpv4_type": ("ip_proto", {1}),
}


def _check_prerequisites(table: str, match: dict[str, Any]) -> None:
    for fld in match:           # a match has a few fields; the table of rules has twelve
        rule = _PREREQ.get(fld)
        if rule is not None and match.get(rule[0]) not in rule[1]:
            raise PipelineError(f"{table}: match on {fld} needs {rule[0]} in "
                                f"{sorted(rule[1])}")


L2 = {"in_port", "eth_src", "eth_dst", "eth_type", "vlan_vid"}
L3 = {"ipv4_src", "ipv4_dst", "ip_proto", "arp_spa", "arp_tpa", "arp_op", "arp_sha",
      "icmpv4_type"}
L4 = {"tcp_src", "tcp_dst", "udp_src", "udp_dst"}

ADMISSION = Table(0, "admission", 0x01, frozenset(L2 | L3 | L4), frozenset({1}))
SECURITY = Table(1, "security", 0x02, frozenset(L2 | L3 | L4), frozenset({2}))
FORWARDING = Table(2, "eth_src", 0x03, frozenset(L2 | {"arp_op"}), frozenset({3}))
ETH_DST = Table(3, "eth_dst", 0x04, frozenset(L2), frozenset())
PIPELINE = (ADMISSION, SECURITY, FORWARDING, ETH_DST)


class Priority:
    """Named priority bands. Higher bands always win over lower ones."""

    # table 0 admission
    ADM_CONTROL = 40000    # LLDP dropped; EAPOL to the controller (metered)
    ADM_INFRA = 30000      # inter-switch ports: admitted at their own edge already
    ADM_BINDING = 20000    # authenticated (port, MAC[, IP]) bindings
    ADM_PREAUTH = 10000    # what the policy allows before authentication
    ADM_OPEN = 100         # "allow all" when authentication is disabled
    # table 1 security control
    SEC_ALLOW = 30000      # what a restricted terminal may still reach (controller, update server)
    SEC_REDIRECT = 25000   # web redirection to the update server
    SEC_DENY = 20000       # per-terminal drops (isolate, restricted applications, scope)
    SEC_METER = 15000      # per-terminal rate limit, then forwarding
    SEC_GROUP = 10000      # group scope (sealed cell)
    SEC_THROTTLE = 5000    # virus throttle: working-set destinations on, the rest to the controller
    # tables 2 (eth_src) and 3 (eth_dst) forwarding
    FWD_DROP = 30000       # table 3: frames to the dark-address MAC of experiments
    FWD_ARP = 25000        # table 2: ARP requests to the controller (proxy ARP, evidence)
    FWD_HOST = 20000       # a known host: table 2 its (in_port, source), table 3 its MAC
    FWD_FLOOD = 10000      # broadcast / multicast
    MISS = 0
