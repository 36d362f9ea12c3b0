"""The pipeline builders, checked by running packets through the simulated flow table."""
import pytest
from corekit import ROOT

from controller.core import Core
from controller.forwarding import Forwarding
from controller.openflow.flowsim import FlowSim
from controller.openflow.ofmsg import (
    OFPP_CONTROLLER,
    OFPP_FLOOD,
    Apply,
    Goto,
    Output,
    PacketOut,
)
from controller.openflow.tables import ADMISSION, FORWARDING, SECURITY, PipelineError, Priority
from controller.pipeline import AdmissionMode, admission_base, security_base
from controller.settings import Settings

H1, H2 = "02:00:0a:00:01:01", "02:00:0a:00:01:02"
BCAST = "ff:ff:ff:ff:ff:ff"


def frame(dst, src, eth_type=0x88B5):
    return bytes.fromhex(dst.replace(":", "") + src.replace(":", "")) + \
        eth_type.to_bytes(2, "big") + bytes(46)


def switch(mode=AdmissionMode(open=True), infra=()):
    sim = FlowSim()
    sim.apply(admission_base(mode, set(infra)) + security_base())
    sim.apply(Forwarding().switch_up(1))
    return sim


def test_open_admission_sends_an_unknown_source_to_the_controller():
    sim = switch()
    r = sim.process({"eth_src": H1, "eth_dst": H2, "eth_type": 0x0800}, in_port=1)
    assert r.tables() == [0, 1, 2] and r.to_controller and not r.outputs
    assert r.meters == [2]              # the miss is metered (packets/s)


def test_default_deny_when_authentication_is_required():
    sim = switch(AdmissionMode(open=False), infra=[5])
    r = sim.process({"eth_src": H1, "eth_dst": H2, "eth_type": 0x0800}, in_port=1)
    assert r.dropped and r.tables() == []
    # EAPOL still reaches the controller, through the punt meter
    r = sim.process({"eth_src": H1, "eth_dst": "01:80:c2:00:00:03", "eth_type": 0x888E}, 1)
    assert r.to_controller and r.meters == [1]
    # an inter-switch port is admitted (its traffic was admitted at its own edge)
    r = sim.process({"eth_src": H1, "eth_dst": H2, "eth_type": 0x0800}, in_port=5)
    assert r.tables() == [0, 1, 2]


def test_lldp_never_leaves_table_zero():
    r = switch().process({"eth_src": H1, "eth_dst": "01:80:c2:00:00:0e",
                          "eth_type": 0x88CC}, 1)
    assert r.dropped


def learn(fwd, sim, port, mac, dst=BCAST):
    out = [m for _, m in fwd.packet_in(1, port, mac, dst, frame(dst, mac))]
    sim.apply(out)
    return out


def test_learning_installs_one_source_and_one_destination_flow_per_host():
    fwd, sim = Forwarding(), switch()
    out = learn(fwd, sim, 1, H1)
    assert [m.actions for m in out if isinstance(m, PacketOut)] == [(Output(OFPP_FLOOD),)]
    # H2 is not known yet: its first frame reaches the controller, which learns it
    r = sim.process({"eth_src": H2, "eth_dst": H1, "eth_type": 0x0800}, in_port=2)
    assert r.to_controller and not r.outputs
    out = learn(fwd, sim, 2, H2, H1)
    assert [m.actions for m in out if isinstance(m, PacketOut)] == [(Output(1),)]
    assert sim.process({"eth_src": H2, "eth_dst": H1, "eth_type": 0x0800}, 2).ports == [1]
    assert sim.process({"eth_src": H1, "eth_dst": H2, "eth_type": 0x0800}, 1).ports == [2]
    # a known source to an unknown destination is flooded by the switch, not the controller
    r = sim.process({"eth_src": H1, "eth_dst": "02:00:0a:00:01:09", "eth_type": 0x0800}, 1)
    assert r.flooded and not r.to_controller
    # a third host costs one packet-in, and then reaches both others with none
    h3 = "02:00:0a:00:01:03"
    assert sim.process({"eth_src": h3, "eth_dst": H1, "eth_type": 0x0800}, 3).to_controller
    learn(fwd, sim, 3, h3, H1)
    for src, dst, port in ((h3, H2, 2), (H2, h3, 3), (H1, h3, 3)):
        r = sim.process({"eth_src": src, "eth_dst": dst, "eth_type": 0x0800}, fwd.macs[1][src])
        assert r.ports == [port] and not r.to_controller
    # O(hosts): one flow per host in each table (plus the misses and the dark-address drop)
    assert len([f for f in sim.table(2) if f.priority == Priority.FWD_HOST]) == 3
    assert len([f for f in sim.table(3) if f.priority == Priority.FWD_HOST]) == 3


def test_host_move_replaces_its_flows():
    fwd, sim = Forwarding(), switch()
    learn(fwd, sim, 1, H1)
    learn(fwd, sim, 2, H2, H1)
    assert sim.process({"eth_src": H2, "eth_dst": H1, "eth_type": 0x0800}, 2).ports == [1]
    # H1 speaks from port 3: its source flow does not match there, the controller relearns
    assert sim.process({"eth_src": H1, "eth_dst": BCAST, "eth_type": 0x0800}, 3).to_controller
    learn(fwd, sim, 3, H1)
    assert sim.process({"eth_src": H2, "eth_dst": H1, "eth_type": 0x0800}, 2).ports == [3]
    assert sim.process({"eth_src": H1, "eth_dst": H2, "eth_type": 0x0800}, 1).to_controller


def test_port_down_forgets_hosts_behind_it():
    fwd, sim = Forwarding(), switch()
    learn(fwd, sim, 1, H1)
    learn(fwd, sim, 2, H2, H1)
    sim.apply(fwd.port_down(1, 1))
    r = sim.process({"eth_src": H2, "eth_dst": H1, "eth_type": 0x0800}, in_port=2)
    assert r.flooded and 1 not in r.ports          # H1's destination flow is gone
    assert sim.process({"eth_src": H1, "eth_dst": H2, "eth_type": 0x0800}, 1).to_controller


def own_settings(tmp_path):
    """Default settings, with the database and audit log in the test's own folder."""
    return Settings(db_path=str(tmp_path / "crs.db"), audit_log=str(tmp_path / "audit.jsonl"))


def test_reconnect_rebuilds_without_duplicates_and_keeps_security_flows(tmp_path):
    core = Core(own_settings(tmp_path))
    sim = FlowSim()
    sim.apply(m for _, m in core.switch_up(1, set()))
    quarantine = SECURITY.flow(Priority.SEC_DENY, {"in_port": 1}, [], sub=7)
    sim.apply([quarantine])
    sim.apply(m for _, m in core.switch_up(1, set()))
    assert len(sim.table(0)) == len({(f.priority, tuple(sorted(f.match.items())))
                                     for f in sim.table(0)})
    r = sim.process({"eth_src": H1, "eth_dst": H2, "eth_type": 0x0800}, in_port=1)
    assert r.dropped and r.tables() == [0, 1]      # quarantine survived the reconnect


def test_core_counts_and_survives_malformed_frames(tmp_path):
    core = Core(own_settings(tmp_path))
    core.switch_up(1, set())
    assert core.packet_in(1, 1, 2, b"\x01\x02") == []
    assert core.counters["bad_frames"] == 1
    out = core.packet_in(1, 1, 2, frame(BCAST, H1))
    assert any(isinstance(m, PacketOut) for _, m in out)


def test_tables_reject_undeclared_fields_and_bad_gotos():
    with pytest.raises(PipelineError):
        FORWARDING.flow(10, {"ipv4_dst": "10.0.0.1", "eth_type": 0x800})
    with pytest.raises(PipelineError):
        ADMISSION.flow(10, {}, [Goto(2)])
    with pytest.raises(PipelineError, match="needs ip_proto"):
        SECURITY.flow(10, {"eth_type": 0x800, "tcp_dst": 25})


def test_delete_by_cookie_touches_only_one_owner_value():
    sim = FlowSim()
    a = SECURITY.flow(100, {"in_port": 1}, [], sub=1)
    b = SECURITY.flow(100, {"in_port": 2}, [], sub=2)
    sim.apply([a, b, SECURITY.delete_sub(1)])
    assert [f.match for f in sim.table(1)] == [{"in_port": 2}]
    sim.apply([FORWARDING.flow(5, {"eth_dst": H1}, [Apply((Output(1),))]),
               SECURITY.delete_all()])
    assert sim.table(1) == [] and len(sim.table(2)) == 1


def test_flowsim_priority_and_masked_match():
    sim = FlowSim()
    sim.apply([
        SECURITY.flow(10, {"eth_type": 0x800, "ipv4_dst": ("10.0.1.0", "255.255.255.0")}, []),
        SECURITY.flow(20, {"eth_type": 0x800, "ipv4_dst": "10.0.1.9"}, [Goto(2)]),
    ])
    sim.apply([ADMISSION.flow(0, {}, [Goto(1)]),
               FORWARDING.flow(0, {}, [Apply((Output(OFPP_CONTROLLER),))])])
    assert sim.process({"eth_type": 0x800, "ipv4_dst": "10.0.1.9"}, 1).to_controller
    assert sim.process({"eth_type": 0x800, "ipv4_dst": "10.0.1.8"}, 1).dropped
    assert sim.process({"eth_type": 0x800, "ipv4_dst": "10.0.2.8"}, 1).dropped


def test_dark_address_mac_is_dropped_in_the_datapath():
    from controller.forwarding import DARK_MAC
    fwd, sim = Forwarding(), switch()
    learn(fwd, sim, 1, H1)
    r = sim.process({"eth_src": H1, "eth_dst": DARK_MAC, "eth_type": 0x0800}, 1)
    assert r.dropped and r.tables() == [0, 1, 2, 3]


def placed_network(name, fwd_kw=None):
    """Every switch of a topology file, as the core places hosts on it."""
    from controller import topology
    from controller.topology import ports_toward
    topo = topology.load(ROOT / "topologies" / name)
    fwd = Forwarding(topology_known=True, toward=ports_toward(topo), infra=topo.infra_ports(),
                     **(fwd_kw or {}))
    sims = {}
    for s in topo.switches:
        sims[s.dpid] = switch()
        sims[s.dpid].apply(fwd.switch_up(s.dpid))
    return topo, fwd, sims


def place(topo, fwd, sims, host):
    h = topo.host(host)
    for d, m in fwd.place(h.mac, topo.switch(h.switch).dpid, h.port, h.ip):
        sims[d].apply([m])
    return h


def test_with_the_topology_placed_hosts_reach_each_other_with_no_packet_in():
    """mobile_core: c1t1 (bs1) -> web (svc) crosses bs1, agg1, gw, svc; once both are placed
    (web from the file, c1t1 at its binding) every switch forwards both ways by itself."""
    from controller.topology import ports_toward
    topo, fwd, sims = placed_network("mobile_core.yaml")
    c1, web = place(topo, fwd, sims, "c1t1"), place(topo, fwd, sims, "web")
    path = [("bs1", c1.port, 1), ("agg1", 2, 1), ("gw", 2, 1), ("svc", 1, web.port)]
    for name, in_port, out_port in path:
        d = topo.switch(name).dpid
        r = sims[d].process({"eth_src": c1.mac, "eth_dst": web.mac, "eth_type": 0x800}, in_port)
        assert r.ports == [out_port] and not r.to_controller, (name, r)
        back = sims[d].process({"eth_src": web.mac, "eth_dst": c1.mac, "eth_type": 0x800},
                               out_port)
        assert back.ports == [in_port] and not back.to_controller, (name, back)
    assert ports_toward(topo)[(topo.switch("gw").dpid, topo.switch("bs1").dpid)] == 2
    # a switch that connects later gets every placed host at once
    late = FlowSim()
    late.apply(admission_base(AdmissionMode(open=True), set()) + security_base())
    bs1 = topo.switch("bs1").dpid
    late.apply(fwd.switch_up(bs1))
    assert late.process({"eth_src": c1.mac, "eth_dst": web.mac, "eth_type": 0x800},
                        c1.port).ports == [1]


def test_arp_for_a_placed_host_goes_to_that_host_only_and_the_rest_is_dropped():
    from scapy.layers.l2 import ARP, Ether

    from controller import packet
    topo, fwd, sims = placed_network("mobile_core.yaml", {"flood_unknown_arp": False})
    c1, web = place(topo, fwd, sims, "c1t1"), place(topo, fwd, sims, "web")
    bs1, svc = topo.switch("bs1").dpid, topo.switch("svc").dpid
    r = sims[bs1].process({"eth_src": c1.mac, "eth_dst": BCAST, "eth_type": 0x0806,
                           "arp_op": 1}, c1.port)
    assert r.to_controller and not r.outputs         # never flooded through the network
    ask = bytes(Ether(src=c1.mac, dst=BCAST) / ARP(op=1, hwsrc=c1.mac, psrc=c1.ip,
                                                   pdst=web.ip))
    out, live = fwd.arp_request(bs1, c1.port, packet.parse(ask), ask)
    # web answers itself (its reply crosses its own table 1): the request goes to its port
    assert live and out == [(svc, PacketOut(ask, (Output(web.port),)))]
    dark = bytes(Ether(src=c1.mac, dst=BCAST) / ARP(op=1, hwsrc=c1.mac, psrc=c1.ip,
                                                    pdst="10.0.1.200"))
    assert fwd.arp_request(bs1, c1.port, packet.parse(dark), dark) == ([], False)


def test_flows_grow_with_hosts_not_with_pairs():
    """metro: every host placed; each switch then holds two flows per host (source and
    destination) and a constant few, whatever the number of pairs that talk."""
    topo, fwd, sims = placed_network("metro.yaml")
    for h in topo.hosts:
        place(topo, fwd, sims, h.name)
    n = len(topo.hosts)
    for d, sim in sims.items():
        flows = len(sim.table(2)) + len(sim.table(3))
        assert 2 * n <= flows <= 2 * n + 5, (d, flows, n)
    a, b = topo.hosts[0], topo.hosts[-1]
    edge = topo.switch(a.switch).dpid
    r = sims[edge].process({"eth_src": a.mac, "eth_dst": b.mac, "eth_type": 0x800}, a.port)
    assert r.ports and not r.to_controller and not r.flooded


def test_meter_id_ranges_never_collide():
    """A shared meter id would silently share a rate (a terminal's rate limit once became
    the punt meter's 100 packets/s)."""
    from controller.admission.binding import PUNT_METER_ID
    from controller.crs.enforcement import GROUP_METER_BASE, outside_meter_id, rate_meter_id
    from controller.forwarding import FLOOD_METER_ID, MISS_METER_ID
    from controller.pipeline import EAPOL_METER_ID, EAPOL_PORT_METER_BASE, MAX_METERED_PORT
    fixed = {EAPOL_METER_ID, MISS_METER_ID, PUNT_METER_ID, FLOOD_METER_ID}
    assert len(fixed) == 4
    terminals = {f(n) for n in range(1, 200_001) for f in (rate_meter_id, outside_meter_id)}
    ports = {EAPOL_PORT_METER_BASE + p for p in (1, MAX_METERED_PORT)}
    groups = {GROUP_METER_BASE + g for g in (1, 100_999)}
    assert not fixed & terminals and not fixed & ports and not fixed & groups
    assert max(terminals) < PUNT_METER_ID < FLOOD_METER_ID < min(ports) <= max(ports) \
        < min(groups)


def test_floods_are_metered_and_learned_hosts_age_out_and_are_capped():
    from controller.forwarding import FLOOD_METER_ID
    fwd, sim = Forwarding(max_learned=3), switch()
    learn(fwd, sim, 1, H1)
    r = sim.process({"eth_src": H1, "eth_dst": BCAST, "eth_type": 0x0800}, 1)
    assert r.flooded and FLOOD_METER_ID in r.meters      # no line-rate flood from anyone
    src = next(f for f in sim.table(2) if f.match.get("eth_src") == H1)
    dst = next(f for f in sim.table(3) if f.match.get("eth_dst") == H1)
    assert src.hard_timeout > 0 and dst.idle_timeout == 2 * src.hard_timeout
    for i in range(2, 10):                                # a flood of new source MACs
        learn(fwd, sim, 2, f"02:00:0a:00:02:{i:02x}")
    assert len(fwd.macs[1]) == 3 and H1 not in fwd.macs[1]   # the oldest made way


def test_a_topology_host_is_never_moved_or_forgotten_by_a_binding():
    topo, fwd, sims = placed_network("mobile_core.yaml")
    fwd.place_topology(topo, everyone=False)          # servers and the service address
    web = topo.host("web")
    bs1 = topo.switch("bs1").dpid
    assert fwd.place(web.mac, bs1, 3, "10.0.1.99") == []
    assert fwd.forget(web.mac, at=(bs1, 3)) == [] and fwd.forget(web.mac) == []
    assert fwd.placed[web.mac].dpid == topo.switch(web.switch).dpid
    c1 = place(topo, fwd, sims, "c1t1")
    assert fwd.forget(c1.mac, at=(bs1, c1.port + 1)) == []    # not where it was placed
    assert c1.mac in fwd.placed
