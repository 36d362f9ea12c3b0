"""L2 forwarding in two tables, as Faucet does: O(hosts) flows, not O(pairs).

Table 2 (eth_src) holds one flow per known host and switch: (in_port, eth_src) -> table 3.
A frame from a source the switch does not know there misses, goes to the controller through
a packets/s meter, and teaches where the source lives (or that it moved). Table 3 (eth_dst)
holds one flow per known host and switch: eth_dst -> the port toward it; a miss floods.

With a topology file the controller places hosts before they send: servers and the service
address when a switch connects, a terminal when its binding is made (admission on), every
host of the file when admission is open. A placed host gets its two flows on every switch
at once (the port toward its edge switch; the switch graph is a tree), so a new pair costs
no packet-in at all. ARP requests then go to the controller, which hands each to the one
placed host that holds the asked address (no flooding) and drops the rest when admission is
on (nobody lives there; the request is a failed first contact, evidence for the scan
detector). Without a topology file hosts
are learned per switch from table-2 misses and ARP is flooded like any broadcast.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from controller import packet
from controller.openflow.ofmsg import (
    ETH_TYPE_ARP,
    OFPP_CONTROLLER,
    OFPP_FLOOD,
    Apply,
    Goto,
    Message,
    Meter,
    MeterMod,
    Output,
    PacketOut,
)
from controller.openflow.tables import ETH_DST, FORWARDING, Priority
from controller.topology import Topology, ports_toward

MISS_METER_ID = 2      # 1 is the EAPOL meter of table 0
FLOOD_METER_ID = 0x00D00001   # table 3's flood of unknown destinations and broadcasts

# Experiments give unused ("dark") addresses this MAC in the terminals' neighbour tables, so
# a worm's probes to them are dropped in the datapath instead of flooded through the controller.
DARK_MAC = "02:00:de:ad:be:ef"

Out = list[tuple[int, Message]]


@dataclass
class Placed:
    dpid: int        # the edge switch
    port: int        # its port
    ip: str | None


@dataclass
class Forwarding:
    idle_timeout: int = 300
    miss_pps: int = 1000
    flood_pps: int = 1000      # what any one switch floods (broadcasts, unknown unicast)
    # From the topology file (optional): the port of switch x toward switch a, and which
    # ports are inter-switch. With them hosts are placed on every switch at once.
    toward: dict[tuple[int, int], int] = field(default_factory=dict)
    infra: dict[int, set[int]] = field(default_factory=dict)
    topology_known: bool = False     # hosts are placed on every switch; ARP is directed
    max_learned: int = 8192          # learned (not placed) hosts kept per switch
    # ARP requests for an address nobody was placed at: flooded (open network) or dropped
    flood_unknown_arp: bool = True
    # dpid -> mac -> port: what each connected switch holds in tables 2 and 3
    macs: dict[int, dict[str, int]] = field(default_factory=dict)
    placed: dict[str, Placed] = field(default_factory=dict)      # mac -> where
    fixed: set[str] = field(default_factory=set)    # placed from the topology file
    by_ip: dict[str, str] = field(default_factory=dict)          # placed ip -> mac
    # switches of other CRS domains (roaming): never connected here, reached through the
    # boundary (topology `domains:`)
    foreign: set[int] = field(default_factory=set)

    @property
    def proxy_arp(self) -> bool:
        return self.topology_known

    def switch_up(self, dpid: int) -> list[Message]:
        """Base flows of tables 2 and 3 (table-2 misses to the controller through a
        packets/s meter, so no host can flood the controller), then every placed host."""
        self.macs[dpid] = {}
        msgs: list[Message] = [
            FORWARDING.delete_all(), ETH_DST.delete_all(),
            MeterMod(MISS_METER_ID, "delete"),
            MeterMod(MISS_METER_ID, "add", rate=self.miss_pps, burst=max(10, self.miss_pps // 10),
                     pps=True),
            FORWARDING.flow(Priority.MISS, {}, [Meter(MISS_METER_ID),
                                                Apply((Output(OFPP_CONTROLLER),))]),
            MeterMod(FLOOD_METER_ID, "delete"),
            MeterMod(FLOOD_METER_ID, "add", rate=self.flood_pps,
                     burst=max(10, self.flood_pps // 10), pps=True),
            ETH_DST.flow(Priority.MISS, {}, [Meter(FLOOD_METER_ID),
                                             Apply((Output(OFPP_FLOOD),))]),
            ETH_DST.flow(Priority.FWD_DROP, {"eth_dst": DARK_MAC}, []),
        ]
        if self.proxy_arp:
            msgs.append(FORWARDING.flow(Priority.FWD_ARP, {"eth_type": ETH_TYPE_ARP,
                                                           "arp_op": 1},
                                        [Meter(MISS_METER_ID),
                                         Apply((Output(OFPP_CONTROLLER),))]))
        for mac, p in self.placed.items():
            port = self._port_on(dpid, p)
            if port is not None:
                msgs += self._install(dpid, mac, port, permanent=True)
        return msgs

    def switch_down(self, dpid: int) -> None:
        self.macs.pop(dpid, None)

    def place(self, mac: str, dpid: int, port: int, ip: str | None) -> Out:
        """`mac` (with `ip`) lives at edge (dpid, port): its flows on every switch."""
        if not self.topology_known:
            return []      # without the switch graph, hosts are learned per switch
        old = self.placed.get(mac)
        if old is not None and (old.dpid, old.port) == (dpid, port) and old.ip == ip:
            return []
        if mac in self.fixed and old is not None:
            return []      # a host of the topology file never moves (its MAC is reserved)
        out = self.forget(mac) if old is not None or any(mac in t for t in
                                                          self.macs.values()) else []
        p = self.placed[mac] = Placed(dpid, port, ip)
        if ip:
            self.by_ip[ip] = mac
        for sw in self.macs:
            at = self._port_on(sw, p)
            if at is not None:
                out += [(sw, m) for m in self._install(sw, mac, at, permanent=True)]
        return out

    def place_topology(self, t: Topology, everyone: bool, domain: str | None = None) -> None:
        """Learn the switch graph from the file and place its servers and the service
        address (every host of the file when `everyone`: admission is open; otherwise
        terminals are placed when their binding is made). `domain`: this controller's
        (the other CRS domains' switches are foreign)."""
        self.topology_known, self.toward, self.infra = True, ports_toward(t), t.infra_ports()
        self.foreign = t.foreign_dpids(domain)
        for h in t.hosts if everyone else t.servers():
            self.place(h.mac, t.switch(h.switch).dpid, h.port, h.ip)
            self.fixed.add(h.mac)
        self.place(t.service_mac, t.switch(t.service_switch).dpid, t.service_port,
                   t.service_ip)
        self.fixed.add(t.service_mac)

    def forget(self, mac: str, at: tuple[int, int] | None = None) -> Out:
        """Forget a host everywhere (it left, or moved); with `at`, only if it was placed
        at that (dpid, port): a revoked binding never removes a host placed elsewhere."""
        if at is not None and mac in self.placed and \
                (self.placed[mac].dpid, self.placed[mac].port) != at:
            return []
        if mac in self.fixed:
            return []
        p = self.placed.pop(mac, None)
        if p is not None and p.ip and self.by_ip.get(p.ip) == mac:
            del self.by_ip[p.ip]
        out: Out = []
        for dpid, table in self.macs.items():
            if table.pop(mac, None) is not None:
                out += [(dpid, m) for m in _flows_of(mac)]
        return out

    def port_down(self, dpid: int, port: int) -> list[Message]:
        """Forget the hosts learned behind a port that went down and remove their flows
        (placed hosts go when their binding is revoked)."""
        table = self.macs.get(dpid, {})
        gone = [mac for mac, p in table.items() if p == port and mac not in self.placed]
        msgs: list[Message] = []
        for mac in gone:
            del table[mac]
            msgs += _flows_of(mac)
        return msgs

    def packet_in(self, dpid: int, in_port: int, src: str, dst: str,
                  data: bytes) -> Out:
        """A frame whose source table 2 does not know on that port: learn it on this switch
        (a host neither the file nor a binding placed; it ages out: the source flow is
        relearnt every `idle_timeout` s, the destination flow idles out after twice that,
        and each switch keeps at most `max_learned` of them), then send the frame on."""
        table = self.macs.setdefault(dpid, {})
        out: Out = []
        if not int(src[:2], 16) & 1 and src not in self.placed:
            if table.get(src, in_port) != in_port:    # moved: its old flows point wrongly
                out += self.forget(src)
            table.pop(src, None)                      # newest last: the oldest age out first
            while len(table) >= self.max_learned:
                oldest = next((m for m in table if m not in self.placed), None)
                if oldest is None:
                    break
                del table[oldest]       # its flows age out in the switch by their timeouts
            out += [(dpid, m) for m in self._install(dpid, src, in_port, permanent=False)]
        out_port = table.get(dst)
        if out_port is None or int(dst[:2], 16) & 1:
            out.append((dpid, PacketOut(data, (Output(OFPP_FLOOD),), in_port)))
        elif out_port != in_port:
            out.append((dpid, PacketOut(data, (Output(out_port),), in_port)))
        return out

    def arp_request(self, dpid: int, in_port: int, frame: packet.Frame,
                    data: bytes) -> tuple[Out, bool]:
        """An ARP request table 2 sent up: delivered to the placed host that holds the asked
        address only (out of its edge port), else flooded or dropped. The host answers
        itself, so its reply crosses its own table 1: an isolated terminal stays silent,
        which a reply made by the controller on its behalf would betray. Returns the
        messages and whether someone lives at the asked address."""
        mac = self.by_ip.get(frame.arp_tpa or "")
        if mac is not None:
            p = self.placed[mac]
            if frame.arp_tpa == frame.arp_spa or (p.dpid, p.port) == (dpid, in_port):
                return [], True            # a gratuitous ARP, or asked from its own port
            if p.dpid in self.foreign:     # another domain's: toward it, it answers there
                return self._toward_foreign(dpid, in_port, data, {p.dpid}), True
            if p.dpid not in self.macs:
                return [], True            # its switch is not connected
            return [(p.dpid, PacketOut(data, (Output(p.port),)))], True
        if self.flood_unknown_arp:
            return [(dpid, PacketOut(data, (Output(OFPP_FLOOD),), in_port))], False
        # perhaps a terminal of another domain: asked there, never sent back where it came
        # from (the switch graph is a tree: it ends at the far domain's own switches)
        return self._toward_foreign(dpid, in_port, data, self.foreign), False

    # --- internals ----------------------------------------------------------------------

    def _toward_foreign(self, dpid: int, in_port: int, data: bytes, to: set[int]) -> Out:
        ports = sorted({self.toward[(dpid, f)] for f in to if (dpid, f) in self.toward}
                       - {in_port})
        if not ports:
            return []
        return [(dpid, PacketOut(data, tuple(Output(p) for p in ports), in_port))]

    def _port_on(self, sw: int, p: Placed) -> int | None:
        return p.port if sw == p.dpid else self.toward.get((sw, p.dpid))

    def _install(self, dpid: int, mac: str, port: int, permanent: bool) -> list[Message]:
        table = self.macs.setdefault(dpid, {})
        msgs: list[Message] = []
        if table.get(mac, port) != port:
            msgs += _flows_of(mac)
        table[mac] = port
        relearn = 0 if permanent else self.idle_timeout
        return msgs + [
            FORWARDING.flow(Priority.FWD_HOST, {"in_port": port, "eth_src": mac},
                            [Goto(ETH_DST.table_id)], hard_timeout=relearn),
            ETH_DST.flow(Priority.FWD_HOST, {"eth_dst": mac}, [Apply((Output(port),))],
                         idle_timeout=2 * relearn),
        ]


def _flows_of(mac: str) -> list[Message]:
    return [FORWARDING.delete_match({"eth_src": mac}), ETH_DST.delete_match({"eth_dst": mac})]
