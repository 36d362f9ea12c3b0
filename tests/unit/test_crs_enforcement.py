"""Enforcement: decisions -> table-1 flows, checked by running packets through FlowSim."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.crs import enforcement as enf
from controller.crs.control import Override, decide
from controller.crs.decision import Decision, Level, Location, Service
from controller.crs.policy import parse_policy
from controller.openflow.flowsim import FlowSim
from controller.openflow.ofmsg import (
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Apply,
    FlowMod,
    Goto,
    Output,
)
from controller.openflow.tables import ADMISSION, FORWARDING, SECURITY, Priority

POLICY = parse_policy(yaml.safe_load((Path(__file__).resolve().parents[2] / "config" /
                                      "crs_policy.yaml").read_text()))
SVC = enf.ServiceAddresses("10.0.100.254", "10.0.100.1", "00:00:00:00:64:01")
HOSTS = {  # name: (port, ip, mac)
    "h1": (1, "10.0.1.1", "00:00:00:00:01:01"),
    "h2": (2, "10.0.1.2", "00:00:00:00:01:02"),
    "h3": (3, "10.0.2.3", "00:00:00:00:02:03"),
    "ctl": (10, "10.0.100.254", "00:00:00:00:64:fe"),
    "upd": (11, "10.0.100.1", "00:00:00:00:64:01"),
}
H1 = Location(1, 1, 1, HOSTS["h1"][2], HOSTS["h1"][1], "cell-a")
PEERS = ["10.0.1.0/24"]


def switch(*msgs):
    sim = FlowSim()
    sim.apply([ADMISSION.flow(1, {}, [Goto(1)])] + enf.base_flows())
    sim.apply(FORWARDING.flow(Priority.FWD_HOST, {"eth_dst": mac}, [Apply((Output(port),))])
              for port, _, mac in HOSTS.values())
    for m in msgs:
        sim.apply(m)
    return sim


def ip_pkt(src, dst, proto=IPPROTO_TCP, dport=5001, **over):
    _, sip, smac = HOSTS[src]
    _, dip, dmac = HOSTS[dst] if dst in HOSTS else (0, dst, "00:00:00:00:99:99")
    pkt = {"eth_src": smac, "eth_dst": dmac, "eth_type": ETH_TYPE_IP, "ipv4_src": sip,
           "ipv4_dst": dip, "ip_proto": proto}
    if proto == IPPROTO_TCP:
        pkt.update(tcp_src=40000, tcp_dst=dport)
    elif proto == IPPROTO_UDP:
        pkt.update(udp_src=40000, udp_dst=dport)
    pkt.update(over)
    return pkt


def send(sim, src, dst, **kw):
    return sim.process(ip_pkt(src, dst, **kw), HOSTS[src][0])


def arp(sim, src, dst="upd"):
    return sim.process({"eth_src": HOSTS[src][2], "eth_dst": HOSTS[dst][2],
                        "eth_type": ETH_TYPE_ARP, "arp_op": 1, "arp_spa": HOSTS[src][1],
                        "arp_tpa": HOSTS[dst][1]}, HOSTS[src][0])


def test_only_security_table_and_terminal_cookie():
    d = decide(Level.VULNERABLE, "cell-a", POLICY)
    msgs = enf.terminal_flows(d, H1, SVC, PEERS)
    flows = [m for m in msgs if isinstance(m, FlowMod)]
    assert all(f.table_id == SECURITY.table_id for f in flows)
    assert all(f.cookie == SECURITY.cookie(1) for f in flows)
    assert all(f.match.get("in_port") == 1 for f in flows if not f.is_delete)
    assert flows[0] == SECURITY.delete_sub(1)


def test_compliant_is_unrestricted():
    sim = switch(enf.terminal_flows(decide(Level.COMPLIANT, "cell-a", POLICY), H1, SVC, PEERS))
    assert send(sim, "h1", "h3").ports == [3]
    assert send(sim, "h1", "h2", dport=25).ports == [2]


def test_isolation_allows_only_services_and_survives_spoofing():
    d = decide(Level.INFECTED, "cell-a", POLICY)
    sim = switch(enf.terminal_flows(d, H1, SVC, PEERS))
    assert send(sim, "h1", "h2").dropped and send(sim, "h1", "h3").dropped
    assert send(sim, "h1", "ctl", dport=8080).ports == [10]
    assert send(sim, "h1", "ctl", dport=6653).dropped       # not the OpenFlow port
    assert send(sim, "h1", "ctl", dport=22).dropped         # nor anything else on its host
    assert send(sim, "h1", "upd", dport=8080).ports == [11]
    assert arp(sim, "h1").ports == [11] and arp(sim, "h1", "ctl").ports == [10]
    # no ARP leaves an isolated port but toward the two service addresses
    assert arp(sim, "h1", "h2").dropped and arp(sim, "h1", "h3").dropped
    # new MAC and IP, same port: still isolated
    spoof = ip_pkt("h1", "h3", eth_src="00:00:00:00:77:77", ipv4_src="10.0.2.77")
    assert sim.process(spoof, 1).dropped
    # other terminals are not affected
    assert send(sim, "h2", "h3").ports == [3]


def test_vulnerable_group_scope_meter_and_restricted_mail():
    d = decide(Level.VULNERABLE, "cell-a", POLICY)
    sim = switch(enf.terminal_flows(d, H1, SVC, PEERS))
    r = send(sim, "h1", "h2")
    assert r.ports == [2] and r.meters == [enf.rate_meter_id(1)]
    assert sim.meters[enf.rate_meter_id(1)].rate == 2000
    assert send(sim, "h1", "h3").dropped                # outside the group
    assert send(sim, "h1", "h2", dport=25).dropped       # mail restricted even inside
    assert send(sim, "h1", "upd", dport=25).ports == [11]  # update server stays reachable
    assert send(sim, "h1", "upd").meters == []            # and is not metered
    assert send(sim, "h2", "h3", dport=25).ports == [3]   # others' mail unaffected


def test_rate_limit_only_and_udp_restriction():
    d = Decision(Level.VULNERABLE, ("rate_limit", "restrict_apps"), meter_kbps=100,
                 restricted=(Service("udp", 53),))
    sim = switch(enf.terminal_flows(d, H1, SVC, PEERS))
    r = send(sim, "h1", "h3")
    assert r.ports == [3] and r.meters == [enf.rate_meter_id(1)]
    assert send(sim, "h1", "h3", proto=IPPROTO_UDP, dport=53).dropped
    assert send(sim, "h1", "h3", proto=IPPROTO_UDP, dport=54).ports == [3]


def test_quarantine_then_release_restores():
    q = decide(Level.COMPLIANT, "cell-a", POLICY, override=Override("quarantine"))
    sim = switch(enf.terminal_flows(q, H1, SVC, PEERS))
    assert send(sim, "h1", "h2").dropped
    sim.apply(enf.release_flows(1))
    assert send(sim, "h1", "h2").ports == [2]
    assert not [f for f in sim.table(1) if f.cookie == SECURITY.cookie(1)]
    assert enf.rate_meter_id(1) not in sim.meters


def test_rebuild_replaces_previous_flows():
    sim = switch(enf.terminal_flows(decide(Level.INFECTED, "cell-a", POLICY), H1, SVC, PEERS))
    sim.apply(enf.terminal_flows(decide(Level.COMPLIANT, "cell-a", POLICY), H1, SVC, PEERS))
    assert send(sim, "h1", "h3").ports == [3]


def test_sealed_group_meter_mode():
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" /
                          "crs_policy.yaml").read_text())
    doc["correlation"]["group_seal"]["mode"] = "meter"
    d = decide(Level.COMPLIANT, "cell-a", parse_policy(doc), sealed=True)
    sim = switch(enf.terminal_flows(d, H1, SVC, PEERS))
    inside, outside = send(sim, "h1", "h2"), send(sim, "h1", "h3")
    assert inside.ports == [2] and inside.meters == []
    assert outside.ports == [3] and outside.meters == [enf.outside_meter_id(1)]


def test_redirect_punts_web_then_rewrites_connection():
    d = decide(Level.UNKNOWN, "cell-a", POLICY)
    sim = switch(enf.terminal_flows(d, H1, SVC, PEERS))
    web = send(sim, "h1", "10.0.2.3", dport=80)
    assert web.to_controller and not web.ports
    assert send(sim, "h1", "h3").dropped                  # scope none
    sim.apply(enf.redirect_connection_flows(H1, SVC, "10.0.2.3", 40000,
                                            orig_mac=HOSTS["h3"][2]))
    r = send(sim, "h1", "h3", dport=80)
    assert r.ports == [11]
    (_, out), = r.outputs
    assert out["ipv4_dst"] == "10.0.100.1" and out["tcp_dst"] == 8080
    reply = {"eth_src": HOSTS["upd"][2], "eth_dst": HOSTS["h1"][2], "eth_type": ETH_TYPE_IP,
             "ipv4_src": "10.0.100.1", "ipv4_dst": "10.0.1.1", "ip_proto": IPPROTO_TCP,
             "tcp_src": 8080, "tcp_dst": 40000}
    back = sim.process(reply, 11)
    (_, got), = back.outputs
    assert back.ports == [1] and got["ipv4_src"] == "10.0.2.3" and got["tcp_src"] == 80
    # another client port of the same terminal is not rewritten back
    other = sim.process(dict(reply, tcp_dst=40001), 11)
    assert other.outputs[0][1]["ipv4_src"] == "10.0.100.1"
    # everything goes with the terminal's cookie
    assert {f.cookie for f in sim.table(1) if f.priority > 0} == {SECURITY.cookie(1)}


def test_group_seal_flows():
    msgs = enf.group_seal_flows(3, [1, 2], PEERS, SVC)
    sim = switch(msgs)
    assert send(sim, "h1", "h3").dropped and send(sim, "h2", "h3").dropped
    assert send(sim, "h1", "h2").ports == [2]
    assert send(sim, "h1", "upd").ports == [11] and arp(sim, "h2").ports == [11]
    assert arp(sim, "h1", "h2").ports == [2] and arp(sim, "h1", "h3").dropped
    assert send(sim, "h3", "h1").ports == [1]             # into the group: not this rule's job
    sim.apply(enf.group_unseal_flows(3))
    assert send(sim, "h1", "h3").ports == [3]
    metered = switch(enf.group_seal_flows(3, [1], PEERS, SVC, mode="meter", kbps=500))
    assert send(metered, "h1", "h3").meters == [enf.GROUP_METER_BASE + 3]
    with pytest.raises(ValueError):
        enf.group_seal_flows(3, [1], PEERS, SVC, mode="meter")


def test_terminal_flows_beat_group_seal():
    """A rate-limited terminal in a sealed group must not escape through its meter flow:
    the SCS narrows its Decision's scope when the group is sealed."""
    d = decide(Level.COMPLIANT, "cell-a", POLICY, sealed=True,
               override=Override("rate_limit", 100))
    sim = switch(enf.terminal_flows(d, H1, SVC, PEERS), enf.group_seal_flows(0, [1], PEERS, SVC))
    assert send(sim, "h1", "h3").dropped
    assert send(sim, "h1", "h2").meters == [enf.rate_meter_id(1)]


def test_a_packets_per_second_meter_holds_a_scan_whatever_its_frame_size():
    """A worm's probes are small: the policy can meter an infected terminal in packets/s
    (OF1.3 PKTPS band); nothing loosens that meter (one meter per terminal)."""
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" /
                          "crs_policy.yaml").read_text())
    doc["control"]["levels"]["INFECTED"] = {"actions": ["rate_limit"], "rate_limit_pps": 1}
    d = decide(Level.INFECTED, "cell-a", parse_policy(doc))
    assert (d.meter_pps, d.meter_kbps, d.unrestricted) == (1, None, False)
    msgs = enf.terminal_flows(d, H1, SVC, PEERS)
    meter = next(m for m in msgs if getattr(m, "meter_id", None) == enf.rate_meter_id(1)
                 and m.command == "add")
    assert (meter.pps, meter.rate, meter.burst) == (True, 1, 1)
    r = send(switch(msgs), "h1", "h3")
    assert r.ports == [3] and r.meters == [enf.rate_meter_id(1)]
    # an operator's kbit/s limit never replaces it (a kbit/s meter passes small probes)
    op = decide(Level.INFECTED, "cell-a", parse_policy(doc), override=Override("rate_limit",
                                                                                 100000))
    assert (op.meter_pps, op.meter_kbps, op.operator) == (1, None, "rate_limit")
    assert "not applied" in op.reason and op.same_enforcement(d)
    # a seal in meter mode drops what leaves the group rather than bypass the meter
    doc["correlation"]["group_seal"]["mode"] = "meter"
    sealed = decide(Level.INFECTED, "cell-a", parse_policy(doc), sealed=True)
    assert (sealed.meter_pps, sealed.outside_kbps, sealed.scope) == (1, None, "group")
