"""The whole pure core, driven like the real controller: EAP through packet-ins, reports
through the CRSAP endpoint, a restart from the same database; checked on a simulated switch."""
from pathlib import Path

import pytest

from controller import topology
from controller.admission.credentials import load_credentials
from controller.admission.supplicant import Supplicant
from controller.core import ApiError, Core
from controller.crs import messages as crsap
from controller.crs.agent import sci_from_posture
from controller.openflow.flowsim import FlowSim
from controller.openflow.ofmsg import PacketOut
from controller.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TOPO = str(ROOT / "topologies" / "minimal.yaml")
CREDENTIALS = str(ROOT / "config" / "credentials.yaml")
C1, C2 = "02:00:0a:00:01:01", "02:00:0a:00:01:02"
WEB_MAC = "02:00:0a:00:64:14"
T0 = 1_000_000.0


def settings(tmp_path, crs=False):
    return Settings(db_path=str(tmp_path / "crs.db"), audit_log=str(tmp_path / "audit.jsonl"),
                    topology_file=TOPO, admission_mode="authenticate",
                    credentials_file=CREDENTIALS,
                    authorization_file=str(ROOT / "config" / "authorization.yaml"),
                    crs_enabled=crs, crs_policy_file=str(ROOT / "config" / "crs_policy.yaml"))


def boot(tmp_path, crs=False, now=T0):
    core = Core(settings(tmp_path, crs), topology.load(TOPO), now=now)
    sim = FlowSim()
    sim.apply(m for _, m in core.switch_up(1, {1, 2, 3, 4}, now))
    return core, sim


def ip_pkt(src_mac, dst_mac, src_ip, dst_ip, dport=80):
    return {"eth_src": src_mac, "eth_dst": dst_mac, "eth_type": 0x0800, "ipv4_src": src_ip,
            "ipv4_dst": dst_ip, "ip_proto": 6, "tcp_dst": dport}


def authenticate(core, sim, port, mac, host, now=T0):
    ident = f"{host}@crs.example"
    psk = load_credentials(CREDENTIALS).demo_psk(ident)
    sup = Supplicant(ident, mac, psk=psk)
    frames, step = [sup.start()], None
    for _ in range(20):
        if not frames:
            break
        out = []
        for f in frames:
            msgs = core.packet_in(1, port, 0, f, now)
            sim.apply(m for _, m in msgs)
            out += [m.data for _, m in msgs if isinstance(m, PacketOut)]
        frames = []
        for data in out:
            step = sup.handle(data)
            frames += step.frames
    assert step is not None and step.status == "success", step
    return sup, step.keys


def test_nothing_but_eapol_before_authentication_and_entitled_services_after(tmp_path):
    core, sim = boot(tmp_path)
    to_web = ip_pkt(C1, WEB_MAC, "10.0.1.1", "10.0.100.20", 80)
    assert sim.process(to_web, 2).dropped and sim.process(to_web, 2).tables() == []  # table-0 miss
    authenticate(core, sim, 2, C1, "c1t1")
    assert sim.process(to_web, 2).tables() == [0, 1, 2]
    assert sim.process({**to_web, "tcp_dst": 22}, 2).dropped       # not entitled
    assert sim.process(ip_pkt(C1, C2, "10.0.1.1", "10.0.1.2", 5000), 2).tables() == [0, 1, 2]
    # another MAC on the same port, or the same MAC on another port: still out
    assert sim.process({**to_web, "eth_src": "02:00:00:00:99:99"}, 2).dropped
    assert sim.process(to_web, 3).dropped
    assert core.counters["dot1x_admitted"] == 1


def test_logoff_and_port_down_revoke(tmp_path):
    core, sim = boot(tmp_path)
    to_web = ip_pkt(C1, WEB_MAC, "10.0.1.1", "10.0.100.20", 80)
    sup, _ = authenticate(core, sim, 2, C1, "c1t1")
    sim.apply(m for _, m in core.packet_in(1, 2, 0, sup.logoff(), T0 + 1))
    assert sim.process(to_web, 2).dropped
    authenticate(core, sim, 2, C1, "c1t1", T0 + 2)
    assert not sim.process(to_web, 2).dropped
    sim.apply(m for _, m in core.port_status(1, 2, False, T0 + 3))
    assert sim.process(to_web, 2).dropped


def test_restart_rebuilds_bindings_from_the_store(tmp_path):
    core, sim = boot(tmp_path)
    authenticate(core, sim, 2, C1, "c1t1")
    core2, sim2 = boot(tmp_path, now=T0 + 5)
    to_web = ip_pkt(C1, WEB_MAC, "10.0.1.1", "10.0.100.20", 80)
    assert sim2.process(to_web, 2).tables() == [0, 1, 2]
    assert sim2.process(ip_pkt(C2, WEB_MAC, "10.0.1.2", "10.0.100.20"), 3).dropped


def report(keys, ident, seq, now, posture):
    body = {"ms_id": ident, "sci": sci_from_posture(posture)}
    return crsap.encode("SCIReport", ident, seq, now, body, keys.crs_report_key)


CLEAN = {"os": {"patch_level": 12}, "antivirus": {"signature_version": 2041},
         "agent_version": "1.0.0", "firewall": True, "threats": [], "attackers": []}
INFECTED = {**CLEAN, "threats": [{"name": "Worm.Demo", "count": 1, "cleaned": False}]}


def test_report_isolates_survives_restart_and_clean_report_releases(tmp_path):
    core, sim = boot(tmp_path, crs=True)
    _, keys = authenticate(core, sim, 2, C1, "c1t1")
    ident = "c1t1@crs.example"
    peer = ip_pkt(C1, C2, "10.0.1.1", "10.0.1.2", 5000)
    to_update = ip_pkt(C1, "02:00:0a:00:64:14", "10.0.1.1", "10.0.100.20", 80)
    status, body, out = core.crsap_message(report(keys, ident, 1, T0 + 1, CLEAN), T0 + 1)
    sim.apply(m for _, m in out)
    assert status == 200 and crsap.decode(body).body["level"] == "COMPLIANT"
    assert not sim.process(peer, 2).dropped
    status, body, out = core.crsap_message(report(keys, ident, 2, T0 + 2, INFECTED), T0 + 2)
    sim.apply(m for _, m in out)
    assert crsap.decode(body).body["level"] == "INFECTED"
    assert sim.process(peer, 2).dropped
    assert sim.process({**peer, "eth_src": "02:00:00:00:99:98"}, 2).dropped
    # a replayed clean report changes nothing
    status, _, out = core.crsap_message(report(keys, ident, 1, T0 + 1, CLEAN), T0 + 3)
    assert status == 403 and sim.process(peer, 2).dropped
    # restart: a fresh core on the same database rebuilds the isolation on connect
    core2, sim2 = boot(tmp_path, crs=True, now=T0 + 4)
    assert sim2.process(peer, 2).dropped
    assert sim2.process(to_update, 2).tables() == [0, 1, 2]
    status, body, out = core2.crsap_message(report(keys, ident, 3, T0 + 5, CLEAN), T0 + 5)
    sim2.apply(m for _, m in out)
    assert crsap.decode(body).body["level"] == "COMPLIANT"
    assert sim2.process(peer, 2).tables() == [0, 1, 2]


def test_forged_report_and_operator_actions(tmp_path):
    core, sim = boot(tmp_path, crs=True)
    _, keys = authenticate(core, sim, 2, C1, "c1t1")
    ident = "c1t1@crs.example"
    forged = crsap.encode("SCIReport", ident, 5, T0 + 1,
                          {"ms_id": ident, "sci": sci_from_posture(CLEAN)}, b"x" * 32)
    status, _, _ = core.crsap_message(forged, T0 + 1)
    assert status == 403 and core.counters["crs_rejected_unauthenticated"] == 1
    sim.apply(m for _, m in core.crsap_message(report(keys, ident, 6, T0 + 2, CLEAN), T0 + 2)[2])
    peer = ip_pkt(C1, C2, "10.0.1.1", "10.0.1.2", 5000)
    row, out = core.api.act("quarantine", "10.0.1.1", None, T0 + 3)
    sim.apply(m for _, m in out)
    assert row["level"] and sim.process(peer, 2).dropped
    row, out = core.api.act("release", "c1t1", None, T0 + 4)
    sim.apply(m for _, m in out)
    assert not sim.process(peer, 2).dropped
    with pytest.raises(ApiError) as err:
        core.api.act("quarantine", "nobody", None, T0 + 5)
    assert err.value.status == 404


def test_throttle_mode_sends_new_destinations_through_the_controller(tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    s = Settings(db_path=str(tmp_path / "crs.db"), audit_log=str(tmp_path / "a.jsonl"),
                 topology_file=TOPO, throttle_enabled=True, throttle_working_set=5,
                 throttle_new_dest_per_s=1.0)
    core = Core(s, topology.load(TOPO), now=T0)
    sim = FlowSim()
    sim.apply(m for _, m in core.switch_up(1, {1, 2, 3, 4}, T0))
    probe = ip_pkt(C1, C2, "10.0.1.1", "10.0.1.2", 4444)
    assert sim.process(probe, 2).to_controller and sim.process(probe, 2).tables() == [0, 1]
    frame = bytes(Ether(src=C1, dst=C2) / IP(src="10.0.1.1", dst="10.0.1.2") /
                  UDP(sport=1, dport=4444))
    out = core.packet_in(1, 2, 1, frame, T0)
    sim.apply(m for _, m in out)
    assert any(isinstance(m, PacketOut) and m.data == frame for _, m in out)
    assert sim.process(probe, 2).tables() == [0, 1, 2]
    # servers are not throttled (only terminals' ports are)
    assert sim.process({**probe, "eth_src": "02:00:0a:00:64:14"}, 4).tables() == [0, 1, 2]
    assert core.status()["counters"]["throttle_released"] == 1


def test_a_scanner_of_dark_addresses_is_flagged_from_its_arp_requests(tmp_path):
    from scapy.layers.l2 import ARP, Ether
    core, sim = boot(tmp_path, crs=True)
    _, keys = authenticate(core, sim, 2, C1, "c1t1")
    ident = "c1t1@crs.example"
    sim.apply(m for _, m in core.crsap_message(report(keys, ident, 1, T0 + 1, CLEAN), T0 + 1)[2])
    peer = ip_pkt(C1, C2, "10.0.1.1", "10.0.1.2", 5000)
    assert not sim.process(peer, 2).dropped
    for i in range(4):   # who-has for four addresses nobody holds
        arp = bytes(Ether(src=C1, dst="ff:ff:ff:ff:ff:ff") /
                    ARP(op=1, hwsrc=C1, psrc="10.0.1.1", pdst=f"10.0.1.{100 + i}"))
        sim.apply(m for _, m in core.packet_in(1, 2, 2, arp, T0 + 2 + i))
    assert core.counters["crs_scan_flagged"] == 1
    # one flag counts as one accuser; k = 2, so the scanner alone is not yet isolated
    assert not sim.process(peer, 2).dropped


def test_a_session_restored_after_restart_still_expires(tmp_path):
    core, sim = boot(tmp_path)
    authenticate(core, sim, 2, C1, "c1t1")
    to_update = ip_pkt(C1, WEB_MAC, "10.0.1.1", "10.0.100.20", 80)
    core2, sim2 = boot(tmp_path, now=T0 + 10)          # restart: no authenticator state
    assert not sim2.process(to_update, 2).dropped
    sim2.apply(m for _, m in core2.tick(T0 + 3600 + 1))  # past the session's lifetime
    assert sim2.process(to_update, 2).dropped
