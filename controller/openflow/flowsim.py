"""A simulated OF1.3 switch: apply our flow-mods, then ask where a packet goes.

Unit tests use it the way Faucet uses `fakeoftable`: build messages with the pure core, apply
them here, and check the fate of packets table by table, without Ryu or a switch. It follows
OF1.3 semantics for what this project uses: priorities, table-miss (drop when no flow
matches), goto, apply-actions with output and set-field, meter instructions, strict and
non-strict add/modify/delete with cookie masks, and masked IPv4/MAC matches.

Like Faucet's fake table it refuses what a real switch would resolve arbitrarily: an `add`
whose match overlaps another flow's match at the same priority in the same table (some packet
matches both, and OF1.3 leaves undefined which one it hits) is an AssertionError naming both.
The same match again replaces the flow, as on a switch.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from controller.openflow.ofmsg import (
    OFPP_ALL,
    OFPP_ANY,
    OFPP_CONTROLLER,
    OFPP_FLOOD,
    OFPP_IN_PORT,
    Apply,
    Barrier,
    FlowMod,
    Goto,
    LocalFrame,
    Message,
    Meter,
    MeterMod,
    Output,
    PacketOut,
    SetField,
    match_key,
)


@dataclass
class Flow:
    table_id: int
    priority: int
    match: dict[str, Any]
    instructions: tuple
    cookie: int
    idle_timeout: int = 0
    packets: int = 0
    hard_timeout: int = 0


@dataclass
class Result:
    """The fate of one packet: where copies went and what happened on the way."""

    outputs: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    to_controller: bool = False
    meters: list[int] = field(default_factory=list)
    trace: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        return [p for p, _ in self.outputs]

    @property
    def dropped(self) -> bool:
        return not self.outputs and not self.to_controller

    @property
    def flooded(self) -> bool:
        return any(p in (OFPP_FLOOD, OFPP_ALL) for p in self.ports)

    def tables(self) -> list[int]:
        return [t for t, _, _ in self.trace]


class FlowSim:
    """One switch's flow tables and meters."""

    def __init__(self) -> None:
        self.flows: list[Flow] = []
        self.meters: dict[int, MeterMod] = {}
        self.packet_outs: list[PacketOut] = []
        self.local_frames: list[LocalFrame] = []

    def apply(self, msgs: Iterable[Message]) -> "FlowSim":
        for msg in msgs:
            if isinstance(msg, FlowMod):
                self._flow_mod(msg)
            elif isinstance(msg, MeterMod):
                if msg.command == "delete":
                    # as on a real switch: deleting a meter removes every flow that uses it
                    self.meters.pop(msg.meter_id, None)
                    self.flows = [f for f in self.flows if not any(
                        isinstance(i, Meter) and i.meter_id == msg.meter_id
                        for i in f.instructions)]
                else:
                    self.meters[msg.meter_id] = msg
            elif isinstance(msg, PacketOut):
                self.packet_outs.append(msg)
            elif isinstance(msg, LocalFrame):
                self.local_frames.append(msg)
            elif isinstance(msg, Barrier):
                pass
            else:
                raise TypeError(f"not an OpenFlow message: {msg!r}")
        return self

    def table(self, table_id: int) -> list[Flow]:
        return sorted((f for f in self.flows if f.table_id == table_id),
                      key=lambda f: -f.priority)

    def process(self, packet: dict[str, Any], in_port: int) -> Result:
        """Run a packet (a dict of OXM field values) through the pipeline from table 0."""
        pkt = dict(packet, in_port=in_port)
        result = Result()
        table_id: int | None = 0
        while table_id is not None:
            flow = self._lookup(table_id, pkt)
            if flow is None:
                return result  # table-miss without a miss flow: drop
            flow.packets += 1
            result.trace.append((table_id, flow.priority, dict(flow.match)))
            table_id = None
            for ins in flow.instructions:
                if isinstance(ins, Meter):
                    if ins.meter_id not in self.meters:
                        raise AssertionError(f"flow uses meter {ins.meter_id}, never added")
                    result.meters.append(ins.meter_id)
                elif isinstance(ins, Apply):
                    for act in ins.actions:
                        if isinstance(act, SetField):
                            pkt[act.field] = act.value
                        elif isinstance(act, Output):
                            if act.port == OFPP_CONTROLLER:
                                result.to_controller = True
                            else:
                                port = in_port if act.port == OFPP_IN_PORT else act.port
                                result.outputs.append((port, dict(pkt)))
                elif isinstance(ins, Goto):
                    if ins.table_id <= flow.table_id:
                        raise AssertionError("goto must go to a later table")
                    table_id = ins.table_id
        return result

    # --- internals ---------------------------------------------------------------------

    def _lookup(self, table_id: int, pkt: dict[str, Any]) -> Flow | None:
        for flow in self.table(table_id):
            if all(_field_matches(pkt.get(k), v) for k, v in flow.match.items()):
                return flow
        return None

    def _flow_mod(self, mod: FlowMod) -> None:
        if mod.command == "add":
            key = match_key(mod.match)
            self.flows = [f for f in self.flows if not (
                f.table_id == mod.table_id and f.priority == mod.priority
                and match_key(f.match) == key)]
            for f in self.flows:
                if f.table_id == mod.table_id and f.priority == mod.priority and \
                        matches_overlap(f.match, mod.match):
                    raise AssertionError(
                        f"overlapping flows in table {mod.table_id} at priority "
                        f"{mod.priority}: {f.match} (cookie {f.cookie:#x}) and "
                        f"{dict(mod.match)} (cookie {mod.cookie:#x}): some packet matches both")
            self.flows.append(Flow(mod.table_id, mod.priority, dict(mod.match),
                                   mod.instructions, mod.cookie, mod.idle_timeout,
                                   hard_timeout=mod.hard_timeout))
            return
        strict = mod.command.endswith("strict")
        chosen = [f for f in self.flows if self._selected(f, mod, strict)]
        if mod.command.startswith("delete"):
            self.flows = [f for f in self.flows if f not in chosen]
        elif mod.command.startswith("modify"):
            for f in chosen:
                f.instructions = mod.instructions
        else:
            raise ValueError(f"unknown flow-mod command {mod.command!r}")

    @staticmethod
    def _selected(f: Flow, mod: FlowMod, strict: bool) -> bool:
        if mod.table_id != 0xFF and f.table_id != mod.table_id:
            return False
        if mod.cookie_mask and (f.cookie & mod.cookie_mask) != (mod.cookie & mod.cookie_mask):
            return False
        if mod.out_port != OFPP_ANY and not any(
                isinstance(i, Apply) and any(isinstance(a, Output) and a.port == mod.out_port
                                             for a in i.actions) for i in f.instructions):
            return False
        if strict:
            return f.priority == mod.priority and match_key(f.match) == match_key(mod.match)
        # non-strict: the flow must be at least as specific as the given match
        return all(k in f.match and f.match[k] == v for k, v in mod.match.items())


def matches_overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether some packet matches both `a` and `b`: every field they share must be
    compatible (equal values, or masked values that intersect); a field only one of them
    tests does not keep them apart."""
    return all(_values_intersect(a[k], b[k]) for k in a.keys() & b.keys())


def _values_intersect(x: Any, y: Any) -> bool:
    vx, mx = _value_mask(x)
    vy, my = _value_mask(y)
    if vx is None or vy is None:      # a value this simulator has no bit form for
        return x == y
    return (vx ^ vy) & mx & my == 0


def _value_mask(v: Any) -> tuple[int | None, int]:
    """A match value as (bits, mask); an exact value has every bit in its mask (-1)."""
    if isinstance(v, tuple):
        base, mask = v
        b, m = _bits(base), _bits(mask)
        return (b & m, m) if b is not None and m is not None else (None, 0)
    return _bits(v), -1


def _bits(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        if _MAC_RE.fullmatch(v):
            return _mac_int(v)
        try:
            return int(ipaddress.IPv4Address(v))
        except ValueError:
            return None
    return None


_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")


def _field_matches(value: Any, want: Any) -> bool:
    if value is None:
        return False
    if isinstance(want, tuple):  # (value, mask)
        base, mask = want
        if isinstance(base, int):
            return value & mask == base & mask
        if ":" in str(base):  # MAC
            return _mac_int(value) & _mac_int(mask) == _mac_int(base) & _mac_int(mask)
        m = int(ipaddress.IPv4Address(mask))
        return int(ipaddress.IPv4Address(value)) & m == int(ipaddress.IPv4Address(base)) & m
    return value == want


def _mac_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)
