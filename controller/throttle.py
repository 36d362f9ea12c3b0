"""Williamson's virus throttle, enforced by the controller (Williamson, ACSAC 2002).

Per terminal, a working set of the `working_set` most recent destinations may be reached
at once; traffic to any other destination waits in a delay queue from which one new
destination is released every 1 / `new_dest_per_s` seconds (it then joins the working set,
evicting the least recently used entry). A normal host rarely notices; a scanning worm is
slowed to the release rate. In OpenFlow: table 1 sends a throttled terminal's IPv4 traffic
to the controller unless a working-set flow (terminal port, destination) lets it on;
released packets are sent back into the pipeline (OFPP_TABLE).

The state machine is pure: `packet` and `tick` return what to install, delete and re-send.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from controller.openflow.ofmsg import (
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    OFPP_CONTROLLER,
    OFPP_TABLE,
    Apply,
    Goto,
    Message,
    Output,
    PacketOut,
)
from controller.openflow.tables import FORWARDING, SECURITY, Priority

SUB_BASE = 1 << 44          # table-1 cookie values of the throttle (above terminal numbers)
QUEUED_PACKETS_PER_DEST = 4  # packets kept per waiting destination (more are dropped)


@dataclass
class HostState:
    port: int
    number: int
    working: "OrderedDict[str, float]" = field(default_factory=OrderedDict)  # dst -> last use
    queue: "deque[str]" = field(default_factory=deque)                        # waiting dsts
    held: dict[str, list[bytes]] = field(default_factory=dict)
    next_release: float = 0.0


@dataclass
class Throttle:
    working_set: int = 5
    new_dest_per_s: float = 1.0
    queue_alarm: int = 100          # Williamson's alarm: a queue this long means a scanner
    hosts: dict[tuple[int, int], HostState] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def base_flows(self, dpid: int, port: int, number: int) -> list[Message]:
        """Throttle the terminal on (dpid, port): ARP passes, IPv4 goes to the controller
        unless its destination is in the working set."""
        self.hosts.setdefault((dpid, port), HostState(port, number))
        sub = SUB_BASE + number
        return [
            SECURITY.flow(Priority.SEC_THROTTLE + 10, {"in_port": port, "eth_type": ETH_TYPE_ARP},
                          [Goto(FORWARDING.table_id)], sub=sub),
            SECURITY.flow(Priority.SEC_THROTTLE, {"in_port": port, "eth_type": ETH_TYPE_IP},
                          [Apply((Output(OFPP_CONTROLLER),))], sub=sub),
        ] + [self._allow(port, number, dst) for dst in self.hosts[(dpid, port)].working]

    def packet(self, dpid: int, port: int, dst: str, data: bytes,
               now: float) -> list[Message]:
        """A packet-in of a throttled terminal to `dst`."""
        h = self.hosts.get((dpid, port))
        if h is None:
            return []
        if dst in h.working:            # flow raced with an eviction, or just installed
            h.working.move_to_end(dst)
            h.working[dst] = now
            return [self._allow(port, h.number, dst), _resend(data, port)]
        if dst not in h.held:
            h.queue.append(dst)
            h.held[dst] = []
            self._count("throttle_queued")
            if len(h.queue) == self.queue_alarm:
                self._count("throttle_alarm")
        if len(h.held[dst]) < QUEUED_PACKETS_PER_DEST:
            h.held[dst].append(data)
        else:
            self._count("throttle_dropped")
        if h.next_release <= now:       # an idle throttle releases at once
            return self._release(dpid, h, now)
        return []

    def tick(self, now: float) -> list[tuple[int, Message]]:
        out: list[tuple[int, Message]] = []
        for (dpid, _), h in self.hosts.items():
            if h.queue and h.next_release <= now:
                out += [(dpid, m) for m in self._release(dpid, h, now)]
        return out

    def forget(self, dpid: int, port: int) -> list[Message]:
        h = self.hosts.pop((dpid, port), None)
        return [SECURITY.delete_sub(SUB_BASE + h.number)] if h else []

    def queue_length(self, dpid: int, port: int) -> int:
        h = self.hosts.get((dpid, port))
        return len(h.queue) if h else 0

    # --- internals ---------------------------------------------------------------------

    def _release(self, dpid: int, h: HostState, now: float) -> list[Message]:
        dst = h.queue.popleft()
        packets = h.held.pop(dst, [])
        h.next_release = now + 1.0 / self.new_dest_per_s
        msgs: list[Message] = []
        if len(h.working) >= self.working_set:
            old, _ = h.working.popitem(last=False)
            msgs.append(SECURITY.delete_match(_match(h.port, old), Priority.SEC_THROTTLE + 20))
        h.working[dst] = now
        msgs.append(self._allow(h.port, h.number, dst))
        msgs += [_resend(p, h.port) for p in packets]
        self._count("throttle_released")
        return msgs

    def _allow(self, port: int, number: int, dst: str) -> Message:
        return SECURITY.flow(Priority.SEC_THROTTLE + 20, _match(port, dst),
                             [Goto(FORWARDING.table_id)], sub=SUB_BASE + number)

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1


def _match(port: int, dst: str) -> dict:
    return {"in_port": port, "eth_type": ETH_TYPE_IP, "ipv4_dst": dst}


def _resend(data: bytes, port: int) -> PacketOut:
    return PacketOut(data, (Output(OFPP_TABLE),), port)
