"""The whole pure core, driven like the real controller: EAP through packet-ins, reports
through the CRSAP endpoint, a restart from the same database; checked on a simulated switch."""
import pytest
from corekit import C1, C2, CLEAN, INFECTED, T0, TOPO, WEB_MAC, authenticate, ip_pkt, report

from controller import topology
from controller.core import ApiError, Core
from controller.crs import messages as crsap
from controller.crs.agent import sci_from_posture
from controller.openflow.flowsim import FlowSim
from controller.openflow.ofmsg import PacketOut
from controller.settings import Settings


def test_nothing_but_eapol_before_authentication_and_entitled_services_after(boot):
    core, sim = boot()
    to_web = ip_pkt(C1, WEB_MAC, "10.0.1.1", "10.0.100.20", 80)
    assert sim.process(to_web, 2).dropped and sim.process(to_web, 2).tables() == []  # table-0 miss
    authenticate(core, sim, 2, C1, "c1t1")
    assert sim.process(to_web, 2).tables() == [0, 1, 2, 3]
    assert sim.process({**to_web, "tcp_dst": 22}, 2).dropped       # not entitled
    assert sim.process(ip_pkt(C1, C2, "10.0.1.1", "10.0.1.2", 5000), 2).tables() == [0, 1, 2, 3]
    # another MAC on the same port, or the same MAC on another port: still out
    assert sim.process({**to_web, "eth_src": "02:00:00:00:99:99"}, 2).dropped
    assert sim.process(to_web, 3).dropped
    assert core.counters["dot1x_admitted"] == 1


def test_logoff_and_port_down_revoke(boot):
    core, sim = boot()
    to_web = ip_pkt(C1, WEB_MAC, "10.0.1.1", "10.0.100.20", 80)
    sup, _ = authenticate(core, sim, 2, C1, "c1t1")
    sim.apply(m for _, m in core.packet_in(1, 2, 0, sup.logoff(), T0 + 1))
    assert sim.process(to_web, 2).dropped
    authenticate(core, sim, 2, C1, "c1t1", T0 + 2)
    assert not sim.process(to_web, 2).dropped
    sim.apply(m for _, m in core.port_status(1, 2, False, T0 + 3))
    assert sim.process(to_web, 2).dropped


def test_restart_rebuilds_bindings_from_the_store(boot_on):
    core, sim = boot_on()
    authenticate(core, sim, 2, C1, "c1t1")
    core2, sim2 = boot_on(now=T0 + 5)
    to_web = ip_pkt(C1, WEB_MAC, "10.0.1.1", "10.0.100.20", 80)
    assert sim2.process(to_web, 2).tables() == [0, 1, 2, 3]
    assert sim2.process(ip_pkt(C2, WEB_MAC, "10.0.1.2", "10.0.100.20"), 3).dropped


def test_report_isolates_survives_restart_and_clean_report_releases(boot_on):
    """On both stores: SQLite and PostgreSQL."""
    core, sim = boot_on(crs=True)
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
    core2, sim2 = boot_on(crs=True, now=T0 + 4)
    assert sim2.process(peer, 2).dropped
    assert sim2.process(to_update, 2).tables() == [0, 1, 2, 3]
    status, body, out = core2.crsap_message(report(keys, ident, 3, T0 + 5, CLEAN), T0 + 5)
    sim2.apply(m for _, m in out)
    assert crsap.decode(body).body["level"] == "COMPLIANT"
    assert sim2.process(peer, 2).tables() == [0, 1, 2, 3]


def test_forged_report_and_operator_actions(boot):
    core, sim = boot(crs=True)
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
    assert sim.process(probe, 2).tables() == [0, 1, 2, 3]
    # servers are not throttled (only terminals' ports are)
    assert sim.process({**probe, "eth_src": "02:00:0a:00:64:14"}, 4).tables() == [0, 1, 2, 3]
    assert core.status()["counters"]["throttle_released"] == 1


def test_a_scanner_of_dark_addresses_is_flagged_from_its_arp_requests(boot):
    from scapy.layers.l2 import ARP, Ether
    core, sim = boot(crs=True)
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


def test_a_session_restored_after_restart_still_expires(boot):
    core, sim = boot()
    authenticate(core, sim, 2, C1, "c1t1")
    to_update = ip_pkt(C1, WEB_MAC, "10.0.1.1", "10.0.100.20", 80)
    core2, sim2 = boot(now=T0 + 10)          # restart: no authenticator state
    assert not sim2.process(to_update, 2).dropped
    sim2.apply(m for _, m in core2.tick(T0 + 3600 + 1))  # past the session's lifetime
    assert sim2.process(to_update, 2).dropped


def record_sent(core):
    """Every message the core's packet path returns from now on, in order."""
    sent = []
    real = core.packet_in

    def recording(*a, **kw):
        out = real(*a, **kw)
        sent.extend(m for _, m in out)
        return out
    core.packet_in = recording
    return sent


def test_reauthentication_in_place_keeps_the_flows_and_a_move_reinstalls_them(boot):
    from controller.openflow.ofmsg import FlowMod
    core, sim = boot()
    authenticate(core, sim, 2, C1, "c1t1")
    sent = record_sent(core)
    authenticate(core, sim, 2, C1, "c1t1", now=T0 + 60)       # same port, same MAC
    assert not [m for m in sent if isinstance(m, FlowMod) and m.table_id == 0]
    assert core.counters["dot1x_reauth_flows_kept"] == 1
    to_web = ip_pkt(C1, WEB_MAC, "10.0.1.1", "10.0.100.20", 80)
    assert sim.process(to_web, 2).tables() == [0, 1, 2, 3]    # still admitted
    sent.clear()
    authenticate(core, sim, 3, C1, "c1t1", now=T0 + 120)      # moved to another port
    assert [m for m in sent if isinstance(m, FlowMod) and m.table_id == 0]
    assert sim.process(to_web, 2).dropped


def test_admission_is_the_last_flow_sent_restrictions_and_forwarding_come_first(boot):
    from controller.openflow.ofmsg import FlowMod
    core, sim = boot(crs=True)
    sent = record_sent(core)
    authenticate(core, sim, 2, C1, "c1t1")
    adds = [m for m in sent if isinstance(m, FlowMod) and m.command == "add"]
    first_admission = min(i for i, m in enumerate(adds) if m.table_id == 0)
    assert [m for m in adds if m.table_id == 1], "the terminal's table-1 flows were sent"
    assert [m for m in adds if m.table_id in (2, 3)], "and its forwarding flows"
    assert all(m.table_id == 0 for m in adds[first_admission:]), \
        "no table-1 flow, nor a forwarding flow on its own switch, may follow its admission"
    # (other switches' forwarding flows may: tests/unit/test_admission_order.py)


def _row(core, ident):
    return core.store.db.execute("SELECT state, updated FROM terminals WHERE tid = ?",
                                 (ident,)).fetchone()


def test_a_reports_sequence_number_and_time_outlive_a_restart(boot_on):
    """A report that changes its terminal's row writes the row with its sequence number
    (one write instead of two); a steady one (the same SCI, the same decision) writes only
    its time and sequence number in the narrow replay row. After a restart the terminal
    has its last report's time, a replay of it or of anything older is refused, and the SCI
    history keeps each new SCI, not every report."""
    core, sim = boot_on(crs=True)
    _, keys = authenticate(core, sim, 2, C1, "c1t1")
    ident = "c1t1@crs.example"
    status, _, _ = core.crsap_message(report(keys, ident, 1, T0 + 1, CLEAN), T0 + 1)
    assert status == 200 and ident not in core.store.replay()   # (in its row)
    row = _row(core, ident)
    for seq in (2, 3):                                          # steady
        status, _, _ = core.crsap_message(report(keys, ident, seq, T0 + seq, CLEAN), T0 + seq)
        assert status == 200
    assert _row(core, ident) == row and core.store.replay()[ident] == 3
    core_b, _ = boot_on(crs=True, now=T0 + 3.5)
    assert core_b.security.scs.terminals[ident].last_report == T0 + 3
    status, _, _ = core.crsap_message(report(keys, ident, 4, T0 + 4, INFECTED), T0 + 4)
    assert status == 200 and _row(core, ident) != row           # a change: the row
    assert core.store.db.execute("SELECT COUNT(*) FROM sci").fetchone()[0] == 2
    core2, _ = boot_on(crs=True, now=T0 + 5)
    assert core2.security.scs.terminals[ident].last_report == T0 + 4
    for seq in (4, 3):
        status, _, _ = core2.crsap_message(report(keys, ident, seq, T0 + 5, CLEAN), T0 + 5)
        assert status == 403
    status, body, _ = core2.crsap_message(report(keys, ident, 5, T0 + 5, CLEAN), T0 + 5)
    assert status == 200 and crsap.decode(body).body["level"] == "COMPLIANT"


def test_a_steady_reports_time_does_not_outlive_its_agents_leave(boot_on):
    """Steady reports, then the agent says Leave (its report no longer counts: UNKNOWN at
    best): after a restart the terminal has no last report, not the steady reports' time."""
    core, sim = boot_on(crs=True)
    _, keys = authenticate(core, sim, 2, C1, "c1t1")
    ident = "c1t1@crs.example"
    for seq in (1, 2, 3):
        status, _, _ = core.crsap_message(report(keys, ident, seq, T0 + seq, CLEAN), T0 + seq)
        assert status == 200
    leave = crsap.encode("Leave", ident, 4, T0 + 4, {"ms_id": ident, "reason": "SIGTERM"},
                         keys.crs_report_key)
    status, _, _ = core.crsap_message(leave, T0 + 4)
    assert status == 204
    core2, _ = boot_on(crs=True, now=T0 + 5)
    t = core2.security.scs.terminals[ident]
    assert t.last_report is None and t.own_level.value == "UNKNOWN"
