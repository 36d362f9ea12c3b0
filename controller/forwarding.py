"""L2 forwarding (table 2): learn where each MAC lives, install destination flows, flood the rest.

Every frame that misses table 2 reaches the controller, which learns its source and either
installs a flow for a known destination (and sends the frame there) or floods it with a
packet-out. Broadcasts also come here, so a host is learned on every switch its first ARP
crosses; unicast to a known host then stays in the datapath. Flooding relies on the switch
graph being a tree (topology files are checked for that).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from controller.openflow.ofmsg import (
    OFPP_CONTROLLER, OFPP_FLOOD, OFPP_IN_PORT, Apply, Message, Output, PacketOut,
)
from controller.openflow.tables import FORWARDING, Priority


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
        ]

    def switch_down(self, dpid: int) -> None:
        self.macs.pop(dpid, None)

    def port_down(self, dpid: int, port: int) -> list[Message]:
        """Forget the hosts behind a port that went down and remove their flows."""
        table = self.macs.get(dpid, {})
        gone = [mac for mac, p in table.items() if p == port]
        for mac in gone:
            del table[mac]
        return [FORWARDING.delete_match({"eth_dst": mac}) for mac in gone]

    def forget(self, mac: str) -> list[tuple[int, Message]]:
        """Forget a host everywhere (it left, or moved)."""
        out = []
        for dpid, table in self.macs.items():
            if table.pop(mac, None) is not None:
                out.append((dpid, FORWARDING.delete_match({"eth_dst": mac})))
        return out

    def packet_in(self, dpid: int, in_port: int, src: str, dst: str,
                  data: bytes) -> list[Message]:
        table = self.macs.setdefault(dpid, {})
        msgs: list[Message] = []
        if not int(src[:2], 16) & 1 and table.get(src) != in_port:
            moved = src in table
            table[src] = in_port
            if moved:
                msgs.append(FORWARDING.delete_match({"eth_dst": src}))
            # Install the reverse direction at once: replies need no packet-in.
            msgs.append(self._host_flow(src, in_port))
        out_port = table.get(dst)
        if out_port is None or int(dst[:2], 16) & 1:
            msgs.append(PacketOut(data, (Output(OFPP_FLOOD),), in_port))
            return msgs
        if out_port == in_port:
            return msgs  # destination is behind the port it came from: nothing to do
        msgs.append(self._host_flow(dst, out_port))
        port = OFPP_IN_PORT if out_port == in_port else out_port
        msgs.append(PacketOut(data, (Output(port),), in_port))
        return msgs

    def _host_flow(self, mac: str, port: int) -> Message:
        return FORWARDING.flow(Priority.FWD_HOST, {"eth_dst": mac},
                               [Apply((Output(port),))], idle_timeout=self.idle_timeout)
