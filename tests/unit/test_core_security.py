"""The pure core against a dishonest terminal, on a simulated switch: bindings pin (port, MAC,
IPv4), pre-authentication ARP is answered and never forwarded, evidence comes from the port,
a restart keeps the authenticator's hold on restored sessions, a rebuild never opens a
restriction even between two messages, and no frame whatsoever makes the core admit an
unauthenticated (port, MAC)."""
from __future__ import annotations

import struct
import tempfile

import pytest
from corekit import (
    C1,
    C2,
    CLEAN,
    INFECTED,
    T0,
    TOPO,
    WEB_MAC,
    authenticate,
    boot_core,
    ip_pkt,
    report,
    settings,
)
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from controller import packet, topology
from controller.core import Core
from controller.openflow.flowsim import FlowSim
from controller.openflow.ofmsg import Goto, PacketOut

UPDATE_IP, SVC_IP = "10.0.100.20", "10.0.100.254"
THIEF_PORT = 3


def arp_frame(src_mac, spa, tpa, sha=None, op=1, dst="ff:ff:ff:ff:ff:ff") -> bytes:
    return bytes(Ether(src=src_mac, dst=dst) /
                 ARP(op=op, hwsrc=sha or src_mac, psrc=spa, pdst=tpa))


def arp_pkt(src_mac, spa, tpa, sha=None):
    return {"eth_src": src_mac, "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x0806,
            "arp_op": 1, "arp_spa": spa, "arp_tpa": tpa, "arp_sha": sha or src_mac}


def test_binding_pins_the_address_for_ip_and_arp(boot):
    core, sim = boot()
    authenticate(core, sim, 2, C1, "c1t1")
    to_update = ip_pkt(C1, WEB_MAC, "10.0.1.1", UPDATE_IP, 80)
    assert sim.process(to_update, 2).tables() == [0, 1, 2, 3]
    spoofed = sim.process({**to_update, "ipv4_src": "10.0.1.2"}, 2)
    assert spoofed.tables() == [0] and spoofed.to_controller and not spoofed.outputs
    arp = sim.process(arp_pkt(C1, "10.0.1.1", "10.0.1.2"), 2)   # admitted, then proxy ARP
    assert arp.tables() == [0, 1, 2] and arp.to_controller
    for bad in (arp_pkt(C1, "10.0.1.2", "10.0.1.9"), arp_pkt(C1, "10.0.1.1", "10.0.1.9",
                                                              sha=C2)):
        r = sim.process(bad, 2)
        assert r.tables() == [0] and not r.outputs
    # the punted frames are counted and produce nothing
    frame = bytes(Ether(src=C1, dst=WEB_MAC) / IP(src="10.0.1.2", dst=UPDATE_IP) / UDP())
    assert core.packet_in(1, 2, 0, frame, T0 + 1) == []
    assert core.packet_in(1, 2, 0, arp_frame(C1, "10.0.1.2", "10.0.1.9"), T0 + 1) == []
    assert core.counters["attack_spoofed_ip_dropped"] == 1
    assert core.counters["attack_spoofed_arp_dropped"] == 1


def test_terminals_reach_only_the_controllers_http_port(boot):
    core, sim = boot()
    authenticate(core, sim, 2, C1, "c1t1")
    ctl_mac = topology.load(TOPO).service_mac
    to_ctl = ip_pkt(C1, ctl_mac, "10.0.1.1", SVC_IP, core.settings.rest_port)
    assert sim.process(to_ctl, 2).tables() == [0, 1, 2, 3]
    for port in (6653, 22, 5432):
        assert sim.process({**to_ctl, "tcp_dst": port}, 2).dropped
    # other addresses of the controller's host, other protocols to its MAC: dropped
    assert sim.process({**to_ctl, "ipv4_dst": "192.168.1.1"}, 2).dropped
    assert sim.process({"eth_src": C1, "eth_dst": ctl_mac, "eth_type": 0x86DD}, 2).dropped
    # the agent's reply to the controller's update push (from 7125 to an ephemeral port)
    reply = {**to_ctl, "tcp_src": 7125, "tcp_dst": 41000}
    assert sim.process(reply, 2).tables() == [0, 1, 2, 3]
    assert sim.process({**reply, "tcp_dst": 6653}, 2).dropped


def test_preauth_arp_is_answered_by_the_controller_and_teaches_nothing(boot):
    core, sim = boot()
    authenticate(core, sim, 2, C1, "c1t1")
    t = topology.load(TOPO)
    stolen = arp_pkt(C1, "10.0.1.1", SVC_IP)            # the victim's MAC, another port
    r = sim.process(stolen, THIEF_PORT)
    assert r.to_controller and not r.outputs and r.tables() == [0]
    out = core.packet_in(1, THIEF_PORT, 0, arp_frame(C1, "10.0.1.1", SVC_IP), T0 + 1)
    assert len(out) == 1
    dpid, po = out[0]
    assert isinstance(po, PacketOut) and [a.port for a in po.actions] == [THIEF_PORT]
    reply = packet.parse(po.data)
    assert reply.arp_op == 2 and reply.arp_spa == SVC_IP and reply.src == t.service_mac
    assert all(C1 not in macs or macs[C1] != THIEF_PORT for macs in core.forwarding.macs.values())
    # a gratuitous ARP for the service address is not a request for it: nothing at all
    grat = arp_frame(C2, SVC_IP, SVC_IP)
    assert not sim.process(arp_pkt(C2, SVC_IP, SVC_IP), THIEF_PORT).outputs
    assert core.packet_in(1, THIEF_PORT, 0, grat, T0 + 2) == []
    # frames that reach forwarding from an edge port must come from a binding
    frame = bytes(Ether(src="02:00:00:00:99:99", dst="ff:ff:ff:ff:ff:ff") /
                  IP(src="10.0.1.2", dst="10.0.1.1") / UDP())
    assert core.packet_in(1, THIEF_PORT, 2, frame, T0 + 3) == []
    assert core.counters["attack_unbound_source_dropped"] == 1


def test_scan_evidence_belongs_to_the_port_not_to_the_claimed_address(boot):
    core, sim = boot(crs=True)
    _, k1 = authenticate(core, sim, 2, C1, "c1t1")
    _, k2 = authenticate(core, sim, 3, C2, "c1t2")
    for keys, ident in ((k1, "c1t1@crs.example"), (k2, "c1t2@crs.example")):
        core.crsap_message(report(keys, ident, 1, T0 + 1, CLEAN), T0 + 1)
    # c1t2's ARP for dark addresses claiming c1t1's address (had it passed table 0)
    for i in range(6):
        core.packet_in(1, 3, 2, arp_frame(C2, "10.0.1.1", f"10.0.1.{100 + i}"), T0 + 2 + i)
    flagged = core.security.scs.corr.scan_until
    assert "c1t1@crs.example" not in flagged and "c1t2@crs.example" in flagged


def test_restored_sessions_keep_logoff_port_down_and_must_reauthenticate(boot, tmp_path):
    core, sim = boot()
    sup, _ = authenticate(core, sim, 2, C1, "c1t1")
    authenticate(core, sim, 3, C2, "c1t2")
    to_update = ip_pkt(C1, WEB_MAC, "10.0.1.1", UPDATE_IP, 80)
    core2 = Core(settings(tmp_path), topology.load(TOPO), now=T0 + 5)
    sim2 = FlowSim()
    out = core2.switch_up(1, {1, 2, 3, 4}, T0 + 5)
    sim2.apply(m for _, m in out)
    asks = [m for _, m in out if isinstance(m, PacketOut) and m.data[12:14] == b"\x88\x8e"]
    assert len(asks) == 2                          # Request/Identity to each restored one
    assert not sim2.process(to_update, 2).dropped
    sim2.apply(m for _, m in core2.packet_in(1, 2, 0, sup.logoff(), T0 + 6))
    assert sim2.process(to_update, 2).dropped       # Logoff revokes a restored session
    # c1t2 never answers: revoked when the grace time is over
    grace = core2.settings.restore_grace_s
    c2_pkt = ip_pkt(C2, WEB_MAC, "10.0.1.2", UPDATE_IP, 80)
    sim2.apply(m for _, m in core2.tick(T0 + 5 + grace / 2))
    assert not sim2.process(c2_pkt, 3).dropped
    sim2.apply(m for _, m in core2.tick(T0 + 5 + grace + 0.1))
    assert sim2.process(c2_pkt, 3).dropped
    assert core2.counters["dot1x_restored_revoked"] == 1


def _step_by_step_never_open(sim: FlowSim, msgs, pkt, port, opened) -> None:
    for m in msgs:
        sim.apply([m])
        assert not opened(sim.process(pkt, port)), f"open after {m}"


def test_a_reconnect_rebuild_never_opens_a_restriction_between_two_messages(boot):
    core, sim = boot(crs=True)
    _, keys = authenticate(core, sim, 2, C1, "c1t1")
    _, k2 = authenticate(core, sim, 3, C2, "c1t2")
    ident = "c1t1@crs.example"
    sim.apply(m for _, m in core.crsap_message(report(keys, ident, 1, T0 + 1, CLEAN), T0 + 1)[2])
    sim.apply(m for _, m in core.crsap_message(
        report(k2, "c1t2@crs.example", 1, T0 + 1, CLEAN), T0 + 1)[2])
    row, out = core.api.act("rate-limit", "c1t1", {"kbps": 100}, T0 + 2)
    sim.apply(m for _, m in out)
    peer = ip_pkt(C1, C2, "10.0.1.1", "10.0.1.2", 5000)
    from controller.crs.enforcement import rate_meter_id
    meter = rate_meter_id(core.security.scs.terminals[ident].number)
    r = sim.process(peer, 2)
    assert meter in r.meters and 2 in r.tables()
    # the switch reconnects: every message of the rebuild, applied one at a time
    _step_by_step_never_open(sim, [m for _, m in core.switch_up(1, set(), T0 + 3)], peer, 2,
                             lambda res: 2 in res.tables() and meter not in res.meters)
    assert meter in sim.process(peer, 2).meters
    # an isolated terminal across a rebuild, and a seal (re)installed on it
    sim.apply(m for _, m in core.crsap_message(report(keys, ident, 2, T0 + 4, INFECTED),
                                               T0 + 4)[2])
    assert 2 not in sim.process(peer, 2).tables()
    _step_by_step_never_open(sim, [m for _, m in core.switch_up(1, set(), T0 + 5)], peer, 2,
                             lambda res: 2 in res.tables())
    # a sealed group's member relying on the seal: a seal (re)installed step by step
    out = [m for _, m in core.security.seal("cell1", True)]
    outside = ip_pkt(C2, WEB_MAC, "10.0.1.2", "10.0.100.99", 5000)
    sim.apply(out)
    assert 2 not in sim.process(outside, 3).tables()
    _step_by_step_never_open(sim, [m for _, m in core.security.seal("cell1", True)], outside, 3,
                             lambda res: 2 in res.tables())


# --- fuzz: any frame, any port, any table -----------------------------------------------

ETH_TYPES = [0x0800, 0x0806, 0x888E, 0x88CC, 0x8100, 0x86DD, 0x0000, 0xFFFF]
MACS = [C1, C2, "ff:ff:ff:ff:ff:ff", "01:80:c2:00:00:03", "02:00:0a:00:64:fe", WEB_MAC,
        "02:00:00:00:99:99"]


@st.composite
def frames(draw):
    dst, src = draw(st.sampled_from(MACS)), draw(st.sampled_from(MACS))
    eth = draw(st.sampled_from(ETH_TYPES))
    head = packet.mac_bytes(dst) + packet.mac_bytes(src)
    if draw(st.booleans()):            # an 802.1Q tag, sometimes a second one
        head += struct.pack("!HH", 0x8100, draw(st.integers(0, 0xFFFF)))
    body = draw(st.sampled_from([
        bytes(IP(src="10.0.1.1", dst=UPDATE_IP) / UDP()),
        bytes(ARP(op=1, hwsrc=src, psrc=draw(st.sampled_from(["10.0.1.1", "10.0.1.2", SVC_IP])),
                  pdst=draw(st.sampled_from([SVC_IP, "10.0.1.9", "10.0.1.1"])))),
        b"\x01\x00\x00\x05\x02\x01\x00\x05\x01",              # EAPOL EAP-Response/Identity
        b"\x01\x01\x00\x00", b"\x01\x02\x00\x00",             # EAPOL Start, Logoff
        b"",
    ])) + draw(st.binary(max_size=40))
    data = head + struct.pack("!H", eth) + body
    cut = draw(st.integers(0, len(data)))
    return data[:cut] if draw(st.booleans()) else data


@hsettings(max_examples=200, deadline=None,
           suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.tuples(st.integers(1, 5), st.sampled_from([0, 1, 2]), frames()),
                min_size=50, max_size=50))
def test_fuzzed_packet_ins_never_crash_and_never_admit_an_unauthenticated_station(events):
    with tempfile.TemporaryDirectory() as d:
        from pathlib import Path
        core, sim = boot_core(Path(d), crs=True)
        authenticate(core, sim, 2, C1, "c1t1")
        trusted = core.admission.trusted.get(1, set())
        for i, (port, table, data) in enumerate(events):
            sim.apply(m for _, m in core.packet_in(1, port, table, data, T0 + 1 + i * 0.01))
        bound = {(p, mac) for (_, p, mac) in core.admission.bound}
        assert bound <= {(2, C1)}
        for f in sim.table(0):
            if any(isinstance(i, Goto) for i in f.instructions):
                port, mac = f.match.get("in_port"), f.match.get("eth_src")
                assert port in trusted or (port, mac) in bound, f


def test_a_second_station_on_a_bound_port_gets_no_address_of_anothers(boot):
    core, sim = boot()
    authenticate(core, sim, 2, C1, "c1t1")
    other = "02:00:00:00:42:42"
    authenticate(core, sim, 2, other, "c1t2")          # a hub: another subscriber, same port
    as_c1 = ip_pkt(other, WEB_MAC, "10.0.1.1", UPDATE_IP, 80)
    assert 2 not in sim.process(as_c1, 2).tables()      # punted, never forwarded
    assert core.packet_in(1, 2, 0, bytes(Ether(src=other, dst=WEB_MAC) /
                                         IP(src="10.0.1.1", dst=UPDATE_IP) / UDP()),
                          T0 + 1) == []
    assert core.counters["attack_spoofed_first_address_dropped"] == 1
    # its own free address is pinned at its first frame, and then only that one passes
    own = bytes(Ether(src=other, dst=WEB_MAC) / IP(src="10.0.1.50", dst=UPDATE_IP) / UDP())
    sim.apply(m for _, m in core.packet_in(1, 2, 0, own, T0 + 2))
    assert sim.process(ip_pkt(other, WEB_MAC, "10.0.1.50", UPDATE_IP, 80), 2).tables() == \
        [0, 1, 2, 3]
    assert 2 not in sim.process(as_c1, 2).tables()


def test_reauthentication_after_a_logoff_reconnects_an_infected_terminal(boot):
    core, sim = boot(crs=True)
    sup, keys = authenticate(core, sim, 2, C1, "c1t1")
    authenticate(core, sim, 3, C2, "c1t2")
    ident = "c1t1@crs.example"
    sim.apply(m for _, m in core.crsap_message(report(keys, ident, 1, T0 + 1, INFECTED),
                                               T0 + 1)[2])
    sim.apply(m for _, m in core.packet_in(1, 2, 0, sup.logoff(), T0 + 2))
    assert not core.security.scs.terminals[ident].online
    _, keys = authenticate(core, sim, 2, C1, "c1t1", T0 + 5000)
    t = core.security.scs.terminals[ident]
    assert t.online and t.decision is not None and t.decision.isolate
    peer = ip_pkt(C1, C2, "10.0.1.1", "10.0.1.2", 5000)
    assert 2 not in sim.process(peer, 2).tables()


def test_every_packet_in_is_accounted_by_class(boot):
    core, sim = boot()
    authenticate(core, sim, 2, C1, "c1t1")
    core.packet_in(1, 2, 2, arp_frame(C1, "10.0.1.1", "10.0.1.2"), T0 + 1)
    core.packet_in(1, 3, 0, arp_frame(C2, "10.0.1.2", SVC_IP), T0 + 1)
    core.packet_in(1, 2, 2, b"\x00" * 5, T0 + 1)
    c = core.counters
    assert c["packet_in_eapol"] >= 2 and c["packet_in_arp"] == 1
    assert c["packet_in_admission_punt"] == 1 and c["packet_in_bad"] == 1
    assert sum(v for k, v in c.items() if k.startswith("packet_in_")) == c["packet_ins"]


def test_a_terminal_authenticating_with_someone_elses_mac_is_not_admitted(boot):
    """Forwarding places a terminal's MAC on every switch at its binding: a subscriber who
    authenticates with another's MAC (or a server's) must not move that host's traffic."""
    core, sim = boot()
    authenticate(core, sim, 2, C1, "c1t1")
    to_c1 = ip_pkt(WEB_MAC, C1, UPDATE_IP, "10.0.1.1", 80)
    assert sim.process(to_c1, 4).ports == [2]
    authenticate(core, sim, 3, C1, "c1t2", now=T0 + 1)         # c1t1's MAC on port 3
    authenticate(core, sim, 3, WEB_MAC, "c1t2", now=T0 + 2)    # the update server's
    assert core.counters["attack_mac_in_use_refused"] == 2
    assert sim.process(to_c1, 4).ports == [2]                  # c1t1's traffic stays put
    assert sim.process(ip_pkt(C2, WEB_MAC, "10.0.1.2", UPDATE_IP), 3).dropped
    assert sim.process(ip_pkt(C1, WEB_MAC, "10.0.1.2", UPDATE_IP), 3).dropped
    assert sim.process(ip_pkt(WEB_MAC, C1, UPDATE_IP, "10.0.1.1"), 4).ports == [2]
    # and the victim keeps working after the attacker's session ends
    assert sim.process(ip_pkt(C1, WEB_MAC, "10.0.1.1", UPDATE_IP), 2).ports == [4]


def test_one_failing_report_in_a_group_costs_only_itself(boot):
    """Group commit: a report whose handling fails is rolled back alone (savepoint); the
    others in the group are committed and enforced, and the failed terminal's decision is
    made and sent anew at its next report."""
    core, sim = boot(crs=True)
    _, k1 = authenticate(core, sim, 2, C1, "c1t1")
    _, k2 = authenticate(core, sim, 3, C2, "c1t2")
    a, b = "c1t1@crs.example", "c1t2@crs.example"
    scs = core.security.scs
    real = scs.handle

    def handle(tid, raw, now):
        effects = real(tid, raw, now)
        if b in raw.decode():
            raise RuntimeError("a bug while handling c1t2's report")
        return effects
    scs.handle = handle
    now = T0 + 5
    results = core.crsap_messages([report(k1, a, 1, now, INFECTED), report(k2, b, 1, now,
                                                                             INFECTED)], now)
    assert [r[0] for r in results] == [200, 500]
    assert results[0][2] and not results[1][2]
    for _, m in results[0][2]:
        sim.apply([m])
    assert sim.process(ip_pkt(C1, WEB_MAC, "10.0.1.1", "10.0.1.2", 445), 2).dropped
    stored = {r.tid: r for r in core.store.terminals()}
    assert stored[a].decision["level"] == "INFECTED"
    assert stored[b].decision is None or stored[b].decision["level"] != "INFECTED"
    assert scs.terminals[b].decision is None          # to be made and sent anew
    assert core.counters["crsap_message_failed"] == 1
    scs.handle = real
    status, _, out = core.crsap_message(report(k2, b, 2, now + 1, INFECTED), now + 1)
    assert status == 200 and out, "the retried report is enforced"
    assert {r.tid: r for r in core.store.terminals()}[b].decision["level"] == "INFECTED"


def test_a_group_whose_commit_fails_is_decided_and_enforced_anew(boot):
    """The group commit itself fails (a full disk): no flows or answers leave, nothing is on
    disk, and memory, which went ahead, does not keep the decision as if enforced: the
    terminal's next report isolates it, flows and all."""
    core, sim = boot(crs=True)
    _, k1 = authenticate(core, sim, 2, C1, "c1t1")
    a = "c1t1@crs.example"
    to_peer = ip_pkt(C1, C2, "10.0.1.1", "10.0.1.2", 5000)
    status, _, out = core.crsap_message(report(k1, a, 1, T0 + 1, CLEAN), T0 + 1)
    sim.apply(m for _, m in out)
    assert status == 200 and not sim.process(to_peer, 2).dropped
    db = core.store.db
    real = db.write

    def write(sql, params=()):
        if sql == "COMMIT":
            raise OSError("disk full")
        return real(sql, params)
    db.write = write
    now = T0 + 5
    with pytest.raises(OSError):          # (the shell answers the group 500, sends nothing)
        core.crsap_messages([report(k1, a, 2, now, INFECTED)], now)
    assert core.counters["crsap_group_failed"] == 1
    assert {r.tid: r for r in core.store.terminals()}[a].decision["level"] == "COMPLIANT"
    db.write = real
    status, _, out = core.crsap_message(report(k1, a, 3, now + 1, INFECTED), now + 1)
    assert status == 200 and out, "the next report is enforced"
    sim.apply(m for _, m in out)
    assert sim.process(to_peer, 2).dropped
    assert {r.tid: r for r in core.store.terminals()}[a].decision["level"] == "INFECTED"


def test_binding_flows_restrict_first_and_an_early_own_frame_is_not_an_attack(boot):
    from corekit import ROOT

    from controller.admission.authorization import load_authorization
    from controller.admission.binding import ControllerService, Server, binding_flows
    authz = load_authorization(ROOT / "config" / "authorization.yaml")
    msgs = binding_flows(7, 2, C1, "10.0.1.1", "staff", authz, [Server("update", UPDATE_IP)],
                         ControllerService(SVC_IP, "02:00:00:00:ff:fe", (8080,)))
    allows = [i for i, m in enumerate(msgs) if any(isinstance(x, Goto) for x in m.instructions)]
    drops = [i for i, m in enumerate(msgs) if not m.instructions]
    assert allows and drops and max(drops) < min(allows)     # no allow before its drops
    assert msgs[-2].match.get("ipv4_src") == "10.0.1.1"      # the broadest allow last,
    assert msgs[-1].match == {"in_port": 2, "eth_src": C1}   # then the punt of the rest
    assert msgs[-1].priority < min(m.priority for m in msgs[:-1])
    core, sim = boot()
    authenticate(core, sim, 2, C1, "c1t1")
    own = bytes(Ether(src=C1, dst=WEB_MAC) / IP(src="10.0.1.1", dst=UPDATE_IP) / UDP())
    assert core.packet_in(1, 2, 0, own, T0 + 1) == []
    assert core.counters["binding_frame_before_flows_dropped"] == 1
    assert not [k for k in core.counters if k.startswith("attack_spoofed")]
