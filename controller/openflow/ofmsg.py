"""OpenFlow 1.3 messages as plain data.

The pure core returns these; `controller.ryu_shell.ofconv` turns them into Ryu messages and
`controller.openflow.flowsim` applies them to a simulated switch in tests. Match fields use
the OXM names Ryu uses (``in_port``, ``eth_src``, ``ipv4_dst``, ``tcp_dst``...).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

# Reserved ports (OF1.3 §7.2.1)
OFPP_IN_PORT = 0xFFFFFFF8
OFPP_TABLE = 0xFFFFFFF9      # packet-out only: run the packet through the pipeline
OFPP_FLOOD = 0xFFFFFFFB
OFPP_ALL = 0xFFFFFFFC
OFPP_CONTROLLER = 0xFFFFFFFD
OFPP_LOCAL = 0xFFFFFFFE
OFPP_ANY = 0xFFFFFFFF
OFPCML_NO_BUFFER = 0xFFFF
OFP_NO_BUFFER = 0xFFFFFFFF

ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_EAPOL = 0x888E
ETH_TYPE_LLDP = 0x88CC
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17


# --- actions ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Output:
    port: int
    max_len: int = OFPCML_NO_BUFFER


@dataclass(frozen=True)
class SetField:
    field: str
    value: Any


Action = Union[Output, SetField]


# --- instructions ----------------------------------------------------------------------

@dataclass(frozen=True)
class Apply:
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class Goto:
    table_id: int


@dataclass(frozen=True)
class Meter:
    meter_id: int


Instruction = Union[Apply, Goto, Meter]


def match_key(match: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable, order-independent form of a match (flows are identified by it)."""
    return tuple(sorted(match.items()))


# --- messages --------------------------------------------------------------------------

@dataclass(frozen=True)
class FlowMod:
    """OFPT_FLOW_MOD. `command` is add, modify, modify_strict, delete or delete_strict."""

    table_id: int
    command: str = "add"
    priority: int = 0
    match: dict[str, Any] = field(default_factory=dict)
    instructions: tuple[Instruction, ...] = ()
    cookie: int = 0
    cookie_mask: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    send_flow_rem: bool = False
    out_port: int = OFPP_ANY

    def __hash__(self) -> int:  # match is a dict; hash on its items
        return hash((self.table_id, self.command, self.priority, match_key(self.match),
                     self.instructions, self.cookie, self.cookie_mask))

    @property
    def is_delete(self) -> bool:
        return self.command.startswith("delete")


@dataclass(frozen=True)
class MeterMod:
    """OFPT_METER_MOD with one drop band. Rates are in kbit/s or packets/s (`pps`)."""

    meter_id: int
    command: str = "add"  # add, modify, delete
    rate: int = 0
    burst: int = 0
    pps: bool = False


@dataclass(frozen=True)
class PacketOut:
    data: bytes
    actions: tuple[Action, ...]
    in_port: int = OFPP_CONTROLLER


@dataclass(frozen=True)
class Barrier:
    """OFPT_BARRIER_REQUEST. `tag` (not sent) tells the shell whose messages the reply
    confirms (`crs.control`)."""

    tag: Any = None


@dataclass(frozen=True)
class LocalFrame:
    """A frame for the switch's LOCAL port, not an OpenFlow message: the shell writes it on
    the switch's LOCAL interface (the EAPOL transport of `admission.local_port`), and the
    switch's table 0 takes it from there as arriving on OFPP_LOCAL."""

    data: bytes


Message = Union[FlowMod, MeterMod, PacketOut, Barrier, LocalFrame]
