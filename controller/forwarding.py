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
    OFPP_CONTROLLER, OFPP_FLOOD, Apply, Message, Output, PacketOut,
)
from controller.openflow.tables import FORWARDING, Priority


# Experiments give unused ("dark") addresses this MAC in the terminals' neighbour tables, so
# a worm's probes to them are dropped in the datapath instead of flooded through the controller.
DARK_MAC = "02:00:de:ad:be:ef"


@dataclass
class Forwarding:
    idle_timeout: int = 300
    # dpid -> mac -> port
    macs: dict[int, dict[str, int]] = field(default_factory=dict)

    def switch_up(self, dpid: int) -> list[Message]:
        """Base flows of table 2: drop what we learned before, table-miss to the controller."""
        self.macs[dpid] = {}
        return [
            FORWARDING.delete_all(),
            FORWARDING.flow(Priority.MISS, {}, [Apply((Output(OFPP_CONTROLLER),))]),
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
                  data: bytes) -> list[Message]:
        table = self.macs.setdefault(dpid, {})
        msgs: list[Message] = []
        if not int(src[:2], 16) & 1 and table.get(src) != in_port:
            if src in table:      # moved: its old flows point the wrong way
                msgs += _flows_of(src)
            table[src] = in_port
        out_port = table.get(dst)
        if out_port is None or int(dst[:2], 16) & 1:
            msgs.append(PacketOut(data, (Output(OFPP_FLOOD),), in_port))
            return msgs
        if out_port == in_port:
            return msgs  # destination is behind the port it came from: nothing to do
        msgs.append(self._pair_flow(in_port, src, dst, out_port))
        msgs.append(self._pair_flow(out_port, dst, src, in_port))
        msgs.append(PacketOut(data, (Output(out_port),), in_port))
        return msgs

    def _pair_flow(self, in_port: int, src: str, dst: str, out_port: int) -> Message:
        return FORWARDING.flow(Priority.FWD_HOST,
                               {"in_port": in_port, "eth_src": src, "eth_dst": dst},
                               [Apply((Output(out_port),))], idle_timeout=self.idle_timeout)


def _flows_of(mac: str) -> list[Message]:
    return [FORWARDING.delete_match({"eth_src": mac}), FORWARDING.delete_match({"eth_dst": mac})]
