"""A new binding's flows reach the switches in an order that never opens more than the
binding allows and never sends a terminal's first frames to a switch that does not know it:
its own switch's flows and the forwarding flows of the switches toward the servers first,
table 0 last among them, then the other switches' forwarding flows (`_services_first`)."""
from __future__ import annotations

from corekit import CREDENTIALS, ROOT, T0, ip_pkt, run_exchange, settings

from controller import topology
from controller.admission.credentials import load_credentials
from controller.admission.supplicant import Supplicant
from controller.core import Core
from controller.openflow.flowsim import FlowSim
from controller.openflow.ofmsg import FlowMod, PacketOut
from controller.openflow.tables import ADMISSION, ETH_DST, FORWARDING

MOBILE_CORE = ROOT / "topologies" / "mobile_core.yaml"


def _bus_network(tmp_path):
    topo = topology.load(MOBILE_CORE)
    core = Core(settings(tmp_path), topo, now=T0)
    sims = {}
    for sw in topo.switches:
        ports = {h.port for h in topo.hosts if h.switch == sw.name}
        sims[sw.dpid] = FlowSim().apply(m for _, m in core.switch_up(sw.dpid, ports, T0))
    return topo, core, sims


def _admission_out(core, topo, host):
    """Authenticate `host` at its port; what the core returned for the whole exchange."""
    h = topo.host(host)
    edge = topo.switch(h.switch).dpid
    ident = f"{host}@crs.example"
    sup = Supplicant(ident, h.mac, psk=load_credentials(CREDENTIALS).demo_psk(ident))
    out = []

    def deliver(frame: bytes) -> list[bytes]:
        msgs = core.packet_in(edge, h.port, 0, frame, T0)
        out.extend(msgs)
        return [m.data for _, m in msgs if isinstance(m, PacketOut)]
    step = run_exchange(sup, deliver, steps=20)
    assert step is not None and step.status == "success", step
    return out


def _walk(topo, sims, frame, src_host, dst_host):
    """The frame from src_host's port along the tree to dst_host: per switch crossed, the
    simulated result (stops where a switch does not forward it)."""
    toward = topology.ports_toward(topo)
    src, dst = topo.host(src_host), topo.host(dst_host)
    sw, in_port, seen = topo.switch(src.switch).dpid, src.port, []
    dst_sw = topo.switch(dst.switch).dpid
    by_port = {(topo.switch(lk.a).dpid, lk.a_port): topo.switch(lk.b).dpid
               for lk in topo.links}
    by_port.update({(topo.switch(lk.b).dpid, lk.b_port): topo.switch(lk.a).dpid
                    for lk in topo.links})
    while True:
        r = sims[sw].process(frame, in_port)
        seen.append((sw, r))
        want = dst.port if sw == dst_sw else toward[(sw, dst_sw)]
        if r.ports != [want] or r.to_controller or sw == dst_sw:
            return seen
        nxt = by_port[(sw, want)]
        in_port, sw = toward[(nxt, sw)], nxt


def test_the_terminals_first_frame_to_a_server_never_meets_a_switch_that_does_not_know_it(
        tmp_path):
    topo, core, sims = _bus_network(tmp_path)
    c1, web = topo.host("c1t1"), topo.host("web")
    edge = topo.switch(c1.switch).dpid
    syn = ip_pkt(c1.mac, web.mac, c1.ip, web.ip, 80)
    flows = [(d, m) for d, m in _admission_out(core, topo, "c1t1") if isinstance(m, FlowMod)]
    opened_at = None
    for i, (dpid, m) in enumerate(flows):         # the switches apply them one by one
        sims[dpid].apply([m])
        path = _walk(topo, sims, syn, "c1t1", "web")
        if path[0][1].ports:                     # table 0 of the edge lets it through
            opened_at = i if opened_at is None else opened_at
            assert len(path) == 4 and all(not r.to_controller for _, r in path), (i, path)
            assert path[-1][1].ports == [web.port]
    assert opened_at is not None
    # what follows table 0's flows: the forwarding flows of the switches off that path only
    near = {topo.switch(n).dpid for n in ("bs1", "agg1", "gw", "svc")}
    last = max(i for i, (d, m) in enumerate(flows) if d == edge and m.table_id ==
               ADMISSION.table_id)
    assert opened_at <= last
    later = flows[last + 1:]
    assert later, "nothing deferred: the table-0 flows waited for every switch"
    assert all(d not in near and m.table_id in (FORWARDING.table_id, ETH_DST.table_id)
               for d, m in later)
    assert {d for d, _ in later} == {topo.switch(n).dpid for n in ("agg2", "bs2", "bs3")}
    # and in the end every switch knows the terminal: its frames arriving from its side
    # cross each of them without the controller
    toward = topology.ports_toward(topo)
    for sw, sim in sims.items():
        r = sim.process(syn, c1.port if sw == edge else toward[(sw, edge)])
        assert r.ports and not r.to_controller, (sw, r)


def test_the_switches_toward_the_services_follow_the_tree():
    """toward_services against the paths walked hop by hop, on every shipped topology."""
    for path in sorted((ROOT / "topologies").glob("*.yaml")):
        topo = topology.load(path)
        toward = topology.ports_toward(topo)
        peer = {}
        for lk in topo.links:
            a, b = topo.switch(lk.a).dpid, topo.switch(lk.b).dpid
            peer[(a, lk.a_port)], peer[(b, lk.b_port)] = b, a
        ends = {topo.switch(h.switch).dpid for h in topo.servers()}
        ends.add(topo.switch(topo.service_switch).dpid)
        got = topology.toward_services(topo)
        for sw in topo.switches:
            want = {sw.dpid}
            for t in ends:
                x = sw.dpid
                while x != t and (x, t) in toward:
                    x = peer[(x, toward[(x, t)])]
                    want.add(x)
            assert got[sw.dpid] == want, (path.name, sw.name)
    mc = topology.load(MOBILE_CORE)
    names = {s.dpid: s.name for s in mc.switches}
    assert {names[d] for d in topology.toward_services(mc)[mc.switch("bs3").dpid]} == \
        {"bs3", "agg2", "gw", "svc"}
