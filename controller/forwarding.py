"""L2 forwarding (table 2): learn where each MAC lives, install flows per (source, destination).

Flows match (in_port, eth_src, eth_dst), as Ryu's simple_switch_13 does, so every new pair
of hosts costs one packet-in and the controller learns every source it must know. (A
destination-only flow would let replies bypass the controller and leave their senders
unlearned, flooding through the controller forever.) When both ends are known, both
directions are installed at once. Each new pair is also a "first contact" the reacting
system and the throttle can observe. Flooding relies on the switch graph being a tree
(topology files are checked for that).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from controller.openflow.ofmsg import (
    OFPP_CONTROLLER,
    OFPP_FLOOD,
    Apply,
    Message,
    Meter,
    MeterMod,
    Output,
    PacketOut,
)
from controller.openflow.tables import FORWARDING, Priority

MISS_METER_ID = 2      # 1 is the EAPOL meter of table 0

# Experiments give unused ("dark") addresses this MAC in the terminals' neighbour tables, so
# a worm's probes to them are dropped in the datapath instead of flooded through the controller.
DARK_MAC = "02:00:de:ad:be:ef"


@dataclass
class Forwarding:
    idle_timeout: int = 300
    # dpid -> mac -> port
    macs: dict[int, dict[str, int]] = field(default_factory=dict)

    miss_pps: int = 1000
    # From the topology file (optional): the port of switch x toward switch a, and which
    # ports are inter-switch. A host learned on an edge port is then known on every switch
    # at once, so a new pair's first packet installs the whole path.
    toward: dict[tuple[int, int], int] = field(default_factory=dict)
    infra: dict[int, set[int]] = field(default_factory=dict)

    def switch_up(self, dpid: int) -> list[Message]:
        """Base flows of table 2: drop what we learned before; table-miss to the controller
        through a packets/s meter, so no host can flood the controller with new pairs."""
        self.macs[dpid] = {}
        return [
            FORWARDING.delete_all(),
            MeterMod(MISS_METER_ID, "delete"),
            MeterMod(MISS_METER_ID, "add", rate=self.miss_pps, burst=max(10, self.miss_pps // 10),
                     pps=True),
            FORWARDING.flow(Priority.MISS, {}, [Meter(MISS_METER_ID),
                                                Apply((Output(OFPP_CONTROLLER),))]),
            FORWARDING.flow(Priority.FWD_DROP, {"eth_dst": DARK_MAC}, []),
        ]

    def switch_down(self, dpid: int) -> None:
        self.macs.pop(dpid, None)

    def port_down(self, dpid: int, port: int) -> list[Message]:
        """Forget the hosts behind a port that went down and remove their flows."""
        table = self.macs.get(dpid, {})
        gone = [mac for mac, p in table.items() if p == port]
        msgs: list[Message] = []
        for mac in gone:
            del table[mac]
            msgs += _flows_of(mac)
        return msgs

    def forget(self, mac: str) -> list[tuple[int, Message]]:
        """Forget a host everywhere (it left, or moved)."""
        out = []
        for dpid, table in self.macs.items():
            if table.pop(mac, None) is not None:
                out += [(dpid, m) for m in _flows_of(mac)]
        return out

    def packet_in(self, dpid: int, in_port: int, src: str, dst: str,
                  data: bytes) -> list[tuple[int, Message]]:
        """A frame that missed table 2. Returns messages per switch: where both hosts are
        known, the pair's flows go to every such switch at once, so the rest of the path
        needs no packet-in."""
        table = self.macs.setdefault(dpid, {})
        out: list[tuple[int, Message]] = []
        if not int(src[:2], 16) & 1 and table.get(src) != in_port:
            if src in table:      # moved: its old flows point the wrong way
                out += [(dpid, m) for m in _flows_of(src)]
            table[src] = in_port
            if self.toward and in_port not in self.infra.get(dpid, ()):
                out += self._place_everywhere(src, dpid)
        out_port = table.get(dst)
        if out_port is None or int(dst[:2], 16) & 1:
            out.append((dpid, PacketOut(data, (Output(OFPP_FLOOD),), in_port)))
            return out
        if out_port == in_port:
            return out  # destination is behind the port it came from: nothing to do
        for sw, macs in self.macs.items():
            a, b = macs.get(src), macs.get(dst)
            if a is not None and b is not None and a != b:
                out += [(sw, self._pair_flow(a, src, dst, b)),
                        (sw, self._pair_flow(b, dst, src, a))]
        out.append((dpid, PacketOut(data, (Output(out_port),), in_port)))
        return out

    def _place_everywhere(self, mac: str, edge: int) -> list[tuple[int, Message]]:
        """`mac` sits on an edge port of switch `edge`: on every other connected switch it
        is behind the port toward `edge` (the switch graph is a tree)."""
        out: list[tuple[int, Message]] = []
        for sw, macs in self.macs.items():
            port = self.toward.get((sw, edge))
            if sw == edge or port is None or macs.get(mac) == port:
                continue
            if mac in macs:
                out += [(sw, m) for m in _flows_of(mac)]
            macs[mac] = port
        return out

    def _pair_flow(self, in_port: int, src: str, dst: str, out_port: int) -> Message:
        return FORWARDING.flow(Priority.FWD_HOST,
                               {"in_port": in_port, "eth_src": src, "eth_dst": dst},
                               [Apply((Output(out_port),))], idle_timeout=self.idle_timeout)


def _flows_of(mac: str) -> list[Message]:
    return [FORWARDING.delete_match({"eth_src": mac}), FORWARDING.delete_match({"eth_dst": mac})]
