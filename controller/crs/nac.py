"""NAC/ASC side of the SCS: make table 1 hold decisions without ever opening a gap.

`enforcement.terminal_flows` describes the flows a decision needs. Replacing a terminal's
flows by "delete, then add" would let its packets through between the two; here the new
flows are added first under the other cookie generation (the generation bit of the cookie
value), then the previous generation is deleted. Flows with the same match and priority
are simply overwritten by the add. Meters are added once per switch and modified after.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Iterable, Sequence

from controller.crs import enforcement
from controller.crs.acks import Control, ControlAck
from controller.crs.decision import Decision, Level, Location, Service
from controller.openflow.ofmsg import Barrier, FlowMod, Message, MeterMod
from controller.openflow.tables import SECURITY

GEN_BIT = 1 << 36


def sub_of(number: int, gen: int) -> int:
    return number | (GEN_BIT if gen & 1 else 0)


def hold(decision: Decision, loc: Location, svc: enforcement.ServiceAddresses,
         peers: Sequence[str], gen: int, meters: set[int]) -> list[Message]:
    """Messages that switch the terminal at `loc` to `decision` under generation `gen`.

    `meters` is the set of meter ids present on the switch; it is updated in place."""
    new_sub, old_sub = sub_of(loc.number, gen), sub_of(loc.number, gen + 1)
    wanted = enforcement.terminal_flows(decision, loc, svc, peers)
    adds: list[Message] = []
    used: set[int] = set()
    for m in wanted:
        if isinstance(m, FlowMod) and m.command == "add":
            adds.append(replace(m, cookie=SECURITY.cookie(new_sub)))
        elif isinstance(m, MeterMod) and m.command == "add":
            used.add(m.meter_id)
            adds.insert(0, replace(m, command="modify" if m.meter_id in meters else "add"))
            meters.add(m.meter_id)
    out = adds + [SECURITY.delete_sub(old_sub)]
    for meter_id in (enforcement.rate_meter_id(loc.number),
                     enforcement.outside_meter_id(loc.number)):
        if meter_id in meters and meter_id not in used:
            out.append(MeterMod(meter_id, "delete"))
            meters.discard(meter_id)
    return out


def release(loc: Location, meters: set[int]) -> list[Message]:
    """Remove every table-1 flow and meter of one terminal (both generations)."""
    out: list[Message] = [SECURITY.delete_sub(sub_of(loc.number, 0)),
                          SECURITY.delete_sub(sub_of(loc.number, 1))]
    for meter_id in (enforcement.rate_meter_id(loc.number),
                     enforcement.outside_meter_id(loc.number)):
        if meter_id in meters:
            out.append(MeterMod(meter_id, "delete"))
            meters.discard(meter_id)
    return out


# --- decisions to and from the store ------------------------------------------------------

def decision_to_dict(d: Decision) -> dict:
    return {"level": d.level.value, "actions": list(d.actions), "scope": d.scope,
            "meter_kbps": d.meter_kbps, "meter_pps": d.meter_pps,
            "restricted": [[s.proto, s.port] for s in d.restricted],
            "redirect_web": d.redirect_web, "isolate": d.isolate, "update": d.update,
            "group_sealed": d.group_sealed, "outside_kbps": d.outside_kbps,
            "operator": d.operator, "reason": d.reason, "policy_version": d.policy_version,
            "accusers": list(d.accusers)}


def decision_from_dict(d: dict) -> Decision:
    return Decision(level=Level(d["level"]), actions=tuple(d["actions"]), scope=d["scope"],
                    meter_kbps=d["meter_kbps"], meter_pps=d.get("meter_pps"),
                    restricted=tuple(Service(p, n) for p, n in d["restricted"]),
                    redirect_web=d["redirect_web"], isolate=d["isolate"], update=d["update"],
                    group_sealed=d["group_sealed"], outside_kbps=d["outside_kbps"],
                    operator=d["operator"], reason=d["reason"],
                    policy_version=d["policy_version"], accusers=tuple(d["accusers"]))


def group_ports(locations: Iterable[Location]) -> dict[int, list[int]]:
    """Edge ports of a group's members per switch."""
    out: dict[int, list[int]] = {}
    for loc in locations:
        out.setdefault(loc.dpid, []).append(loc.port)
    return out


class Nac:
    """The NAC behind the Control interface (X.1125 11.4): a Control becomes the messages
    that hold its decision on the terminal's switch, closed by a barrier tagged with it; the
    switch's answer to that barrier becomes ControlAcks."""

    def __init__(self, svc: enforcement.ServiceAddresses, meters: Callable[[int], set[int]]):
        self.svc, self.meters = svc, meters

    def control(self, c: Control) -> list[Message]:
        msgs = hold(c.decision, c.location, self.svc, c.peers, c.generation,
                    self.meters(c.location.dpid))
        return msgs + [Barrier(tag=((c.terminal, c.generation),))]

    @staticmethod
    def answer(tag: Any, error: str | None) -> list[ControlAck]:
        """The acknowledgements a switch's reply to a tagged barrier carries (an error on
        one of the messages before it: refused)."""
        return [ControlAck(tid, gen, error is None, error or "") for tid, gen in tag or ()]
