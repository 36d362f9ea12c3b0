"""A new binding's flows reach the switches in an order that never opens more than the
binding allows and never sends a terminal's first frames to a switch that does not know it:
its own switch's flows and the forwarding flows of the switches toward the servers first,
table 0 last among them, then the other switches' forwarding flows (`_services_first`)."""
from __future__ import annotations

import pytest
from corekit import CREDENTIALS, ROOT, T0, ip_pkt, run_exchange, settings

from controller import topology
from controller.admission.credentials import load_credentials
from controller.admission.supplicant import Supplicant
from controller.core import Core
from controller.openflow.flowsim import FlowSim
from controller.openflow.ofmsg import Barrier, FlowMod, Goto, PacketOut
from controller.openflow.tables import ADMISSION, ETH_DST, FORWARDING, SECURITY

MOBILE_CORE = ROOT / "topologies" / "mobile_core.yaml"


def _bus_network(tmp_path, crs=False):
    topo = topology.load(MOBILE_CORE)
    core = Core(settings(tmp_path, crs=crs), topo, now=T0)
    sims = {}
    for sw in topo.switches:
        ports = {h.port for h in topo.hosts if h.switch == sw.name}
        sims[sw.dpid] = FlowSim().apply(m for _, m in core.switch_up(sw.dpid, ports, T0))
    return topo, core, sims


def _admission_out(core, topo, host, at=None, now=T0):
    """Authenticate `host` at its port (or at `at`, a (switch name, port)); what the core
    returned for the whole exchange."""
    h = topo.host(host)
    sw, port = at or (h.switch, h.port)
    edge = topo.switch(sw).dpid
    ident = f"{host}@crs.example"
    sup = Supplicant(ident, h.mac, psk=load_credentials(CREDENTIALS).demo_psk(ident))
    out = []

    def deliver(frame: bytes) -> list[bytes]:
        msgs = core.packet_in(edge, port, 0, frame, now)
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


@pytest.mark.parametrize("crs", [False, True])
def test_the_terminals_first_frame_to_a_server_never_meets_a_switch_that_does_not_know_it(
        tmp_path, crs):
    topo, core, sims = _bus_network(tmp_path, crs)
    c1, upd = topo.host("c1t1"), topo.host("update")
    edge = topo.switch(c1.switch).dpid
    syn = ip_pkt(c1.mac, upd.mac, c1.ip, upd.ip, 80)   # reachable before any report
    msgs = [(d, m) for d, m in _admission_out(core, topo, "c1t1")
            if not isinstance(m, PacketOut)]
    opened = False
    for i, (dpid, m) in enumerate(msgs):          # the switches apply them one by one
        sims[dpid].apply([m])
        path = _walk(topo, sims, syn, "c1t1", "update")
        if FORWARDING.table_id in path[0][1].tables():   # past tables 0 and 1 of its edge
            opened = True
            assert len(path) == 4 and all(not r.to_controller for _, r in path), (i, path)
            assert path[-1][1].ports == [upd.port]
    assert opened
    if crs:
        assert any(isinstance(m, FlowMod) and m.table_id == SECURITY.table_id
                   for _, m in msgs), "the reacting system's flows for the terminal"
    # what follows table 0's flows: the forwarding flows of the switches off that path only
    # (no restriction, no meter, no barrier)
    near = {topo.switch(n).dpid for n in ("bs1", "agg1", "gw", "svc")}
    last = max(i for i, (d, m) in enumerate(msgs) if d == edge and
               isinstance(m, FlowMod) and m.table_id == ADMISSION.table_id)
    later = msgs[last + 1:]
    assert later, "nothing deferred: the table-0 flows waited for every switch"
    assert all(isinstance(m, FlowMod) and d not in near and
               m.table_id in (FORWARDING.table_id, ETH_DST.table_id) for d, m in later)
    assert {d for d, _ in later} == {topo.switch(n).dpid for n in ("agg2", "bs2", "bs3")}
    # and in the end every switch knows the terminal: its frames arriving from its side
    # cross each of them without the controller
    toward = topology.ports_toward(topo)
    for sw, sim in sims.items():
        r = sim.process(syn, c1.port if sw == edge else toward[(sw, edge)])
        assert r.ports and not r.to_controller, (sw, r)


def test_a_terminal_that_moved_is_forgotten_before_it_is_placed_on_every_switch(tmp_path):
    """c1t1 authenticates at bs1, then (same MAC) at c2t1's port on bs2: on each switch
    its old flows are deleted before the new ones are added, and in the end the server's
    frames to it go to its new port on every switch, not to the old one."""
    topo, core, sims = _bus_network(tmp_path)
    c1, c2, web = topo.host("c1t1"), topo.host("c2t1"), topo.host("web")
    for d, m in _admission_out(core, topo, "c1t1"):
        if not isinstance(m, PacketOut):
            sims[d].apply([m])
    moved = [(d, m) for d, m in _admission_out(core, topo, "c1t1", ("bs2", c2.port),
                                               now=T0 + 60)
             if isinstance(m, FlowMod) and m.table_id in (FORWARDING.table_id,
                                                           ETH_DST.table_id)]
    for sw in sims:
        mine = [m for d, m in moved if d == sw]
        dels = [i for i, m in enumerate(mine) if m.command.startswith("delete")]
        adds = [i for i, m in enumerate(mine) if m.command == "add"]
        assert adds and (not dels or max(dels) < min(adds)), (sw, mine)
    for d, m in moved:
        sims[d].apply([m])
    back = {"eth_src": web.mac, "eth_dst": c1.mac, "eth_type": 0x0800}
    toward = topology.ports_toward(topo)
    bs2 = topo.switch("bs2").dpid
    for sw, sim in sims.items():
        want = c2.port if sw == bs2 else toward[(sw, bs2)]
        assert sim.process(back, toward.get((sw, topo.switch("svc").dpid), web.port)
                           ).ports == [want], sw


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


def test_a_switch_with_a_confirmation_barrier_keeps_its_flows_before_it(tmp_path):
    """Flows deferred past a tagged barrier would count in that switch's next confirmed
    batch (`ryu_shell.confirmations`): such a switch defers nothing."""
    topo, core, _ = _bus_network(tmp_path)
    bs1, bs2, bs3 = (topo.switch(n).dpid for n in ("bs1", "bs2", "bs3"))
    fwd = FORWARDING.flow(20000, {"in_port": 1, "eth_src": "02:00:0a:00:01:01"},
                          [Goto(ETH_DST.table_id)])
    out = [(bs2, fwd), (bs2, Barrier(tag=(("t", 1),))), (bs3, fwd)]
    first, later = core.admission._services_first(out, bs1)
    assert first == out[:2] and later == [(bs3, fwd)]
