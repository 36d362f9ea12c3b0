"""A new leader rebuilds a switch that kept its tables without a gap (make before break):
checked on a simulated switch, message by message, against the flows a cold rebuild makes."""
import pytest
from corekit import C1, C2, CLEAN, T0, WEB_MAC, authenticate, boot_core, ip_pkt, report

from controller.openflow.flowsim import FlowSim
from controller.openflow.ofmsg import FlowMod, MeterMod, match_key
from controller.openflow.reconcile import Installed, make_before_break, match_id

C1_TO_WEB = ip_pkt(C1, WEB_MAC, "10.0.1.1", "10.0.100.20", 80)
C2_TO_C1 = ip_pkt(C2, C1, "10.0.1.2", "10.0.1.1", 5000)   # a quarantine keeps the server


def installed(sim: FlowSim) -> list[Installed]:
    return [Installed(f.table_id, f.priority, dict(f.match), f.cookie) for f in sim.flows]


def flow_set(sim: FlowSim) -> set:
    return {(f.table_id, f.priority, match_key(f.match), f.cookie, f.instructions)
            for f in sim.flows}


@pytest.mark.parametrize("pending", [False, True], ids=["in-step", "logoff-not-sent"])
def test_takeover_rebuild_opens_no_gap_and_ends_where_a_cold_rebuild_ends(tmp_path, pending):
    # the old leader: two terminals admitted and clean, then c1t2 quarantined
    old, sim = boot_core(tmp_path, crs=True)
    for port, mac, host in ((2, C1, "c1t1"), (3, C2, "c1t2")):
        _, keys = authenticate(old, sim, port, mac, host)
        _, _, out = old.crsap_message(report(keys, f"{host}@crs.example", 1, T0 + 1, CLEAN),
                                      T0 + 1)
        sim.apply(m for _, m in out)
    _, out = old.api.act("quarantine", "c1t2", {}, T0 + 2)
    sim.apply(m for _, m in out)
    assert not sim.process(C1_TO_WEB, 2).dropped and sim.process(C2_TO_C1, 3).dropped
    if pending:     # it commits c1t1's Logoff and dies before sending the flows
        old.admission.port_down(1, 2, T0 + 3)
        assert not sim.process(C1_TO_WEB, 2).dropped

    # the new leader reads the switch's table and rebuilds it on top
    new, _ = boot_core(tmp_path, crs=True, now=T0 + 4)
    msgs = [m for _, m in new.switch_up(1, {1, 2, 3, 4}, T0 + 4, installed=installed(sim))
            if isinstance(m, (FlowMod, MeterMod))]
    assert not any(isinstance(m, MeterMod) and m.command == "delete" for m in msgs)
    for i, m in enumerate(msgs):
        sim.apply([m])
        # at every step the quarantined terminal stays out, the admitted one stays in
        assert sim.process(C2_TO_C1, 3).dropped, f"c1t2 got through after message {i}: {m}"
        assert pending or not sim.process(C1_TO_WEB, 2).dropped, \
            f"c1t1 cut off by message {i}: {m}"
    assert sim.process(C1_TO_WEB, 2).dropped == pending     # a committed Logoff holds now

    # and the table is the one a cold rebuild of the same store makes
    _, cold = boot_core(tmp_path, crs=True, now=T0 + 4)
    assert flow_set(sim) == flow_set(cold)


OWNER = 0x05 << 56


def wipe(table_id: int) -> FlowMod:
    """A cold rebuild's delete of everything owner 5 has in the table."""
    return FlowMod(table_id=table_id, command="delete", cookie=OWNER, cookie_mask=0xFF << 56)


def test_a_restriction_committed_but_never_sent_holds_after_the_takeover(tmp_path):
    """The old leader committed c1t2's isolation (it was VULNERABLE: its group reachable)
    and died before sending the flows; the new leader's rebuild must not leave the group
    allow above the isolation."""
    from corekit import INFECTED
    old, sim = boot_core(tmp_path, crs=True)
    keys = {}
    for port, mac, host in ((2, C1, "c1t1"), (3, C2, "c1t2")):
        _, keys[host] = authenticate(old, sim, port, mac, host)
    vulnerable = {**CLEAN, "firewall": False}
    _, _, out = old.crsap_message(report(keys["c1t2"], "c1t2@crs.example", 1, T0 + 1,
                                         vulnerable), T0 + 1)
    sim.apply(m for _, m in out)
    assert not sim.process(C2_TO_C1, 3).dropped            # its group (cell1) reachable
    old.crsap_message(report(keys["c1t2"], "c1t2@crs.example", 2, T0 + 2, INFECTED), T0 + 2)
    new, _ = boot_core(tmp_path, crs=True, now=T0 + 4)      # (those flows never left)
    for m in [m for _, m in new.switch_up(1, {1, 2, 3, 4}, T0 + 4, installed=installed(sim))]:
        sim.apply([m])
    assert sim.process(C2_TO_C1, 3).dropped                 # isolated, as committed
    _, cold = boot_core(tmp_path, crs=True, now=T0 + 4)
    assert cold.process(C2_TO_C1, 3).dropped


def test_a_match_spelled_differently_is_added_back_after_its_delete():
    """If the switch spells a wanted flow's match in a way our comparison misses, the flow
    is deleted as stale and then added once more: it ends on the switch."""
    want = FlowMod(table_id=1, priority=100, match={"eth_src": "02:00:00:00:00:01"},
                   cookie=OWNER | 7)
    seen = Installed(1, 100, {"eth_src": "02:00:00:00:00:01", "in_port": 2}, OWNER | 7)
    out = make_before_break([wipe(1), want], [seen])
    assert out[0] == want and out[-1] == want and len(out) == 3
    assert out[1].command == "delete_strict" and out[1].match == seen.match
    assert out[1].cookie == OWNER | 7


def test_flows_of_unwanted_cookies_go_by_cookie_once_and_others_flows_stay():
    want = FlowMod(table_id=0, priority=10, match={"in_port": 1}, cookie=OWNER | 1)
    stale = [Installed(0, 10, {"in_port": 2}, OWNER | 2), Installed(0, 11, {"in_port": 2},
                                                                    OWNER | 2)]
    foreign = [Installed(0, 5, {}, 0),                       # nobody's (cookie 0)
               Installed(1, 10, {"in_port": 2}, OWNER | 2)]  # a table not wiped
    out = make_before_break([wipe(0), want], stale + foreign)
    assert out == [want, FlowMod(table_id=0, command="delete", cookie=OWNER | 2,
                                 cookie_mask=(1 << 64) - 1)]


def test_a_full_mask_and_letter_case_do_not_make_a_flow_different():
    assert match_id(1, 5, {"ipv4_src": ("10.0.0.1", "255.255.255.255"),
                           "eth_dst": "02:AA:00:00:00:01"}) == \
        match_id(1, 5, {"eth_dst": "02:aa:00:00:00:01", "ipv4_src": "10.0.0.1"})
