"""X.1125 11.4 Control/ControlAck: a decision's flows end with a tagged barrier; it counts as
enforced once the switch confirms it; refused or unanswered, it is sent again and alarms."""
from corekit import C1, CLEAN, INFECTED, T0, authenticate, report

from controller.crs.acks import ACK_S, TRIES
from controller.openflow.ofmsg import Barrier, FlowMod
from controller.ryu_shell.confirmations import Confirmations

IDENT = "c1t1@crs.example"


def infected(boot):
    core, sim = boot(crs=True)
    _, keys = authenticate(core, sim, 2, C1, "c1t1")
    outs = []
    for seq, posture in ((1, CLEAN), (2, INFECTED)):
        _, _, out = core.crsap_message(report(keys, IDENT, seq, T0 + seq, posture), T0 + seq)
        sim.apply(m for _, m in out)
        outs.append(out)
    return core, sim, outs[-1]


def barrier_of(out):
    tags = [m.tag for _, m in out if isinstance(m, Barrier) and m.tag]
    assert len(tags) == 1, out
    return tags[0]


def control(core):
    return core.api.row(IDENT, T0 + 3)["control"]


def test_a_decision_is_enforced_once_the_switch_confirms_its_barrier(boot):
    core, sim, out = infected(boot)
    assert isinstance(out[-1][1], Barrier)            # after every flow of the decision
    tag = barrier_of(out)
    assert tag[0][0] == IDENT and not control(core)["confirmed"]
    assert core.switch_reply(1, tag, None, T0 + 3) == []
    c = control(core)
    assert c["confirmed"] and c["policy_version_acknowledged"] == \
        core.security.scs.policy.version
    assert core.counters["crs_control_acked"] >= 1
    # an answer to an older generation confirms nothing
    core.switch_reply(1, ((IDENT, tag[0][1] - 1),), None, T0 + 3)
    assert core.counters["crs_control_ack_stale"] >= 1


def test_a_refused_control_is_sent_again_then_given_up_with_alarms(boot, tmp_path):
    core, sim, out = infected(boot)
    tag = barrier_of(out)
    for i in range(1, TRIES):
        again = core.switch_reply(1, tag, "OpenFlow error type 5 code 6", T0 + 3)
        assert any(isinstance(m, FlowMod) for _, m in again), again
        tag = barrier_of(again)                       # a new generation
        assert tag[0][1] == barrier_of(out)[0][1] + i
    assert core.switch_reply(1, tag, "OpenFlow error type 5 code 6", T0 + 3) == []
    assert core.counters["crs_control_refused"] == TRIES
    assert core.counters["crs_control_gave_up"] == 1 and not control(core)["confirmed"]
    alarms = [line for line in (tmp_path / "audit.jsonl").read_text().splitlines()
              if '"alarm"' in line]
    assert len(alarms) == TRIES and '"gave_up": true' in alarms[-1]


def test_an_unanswered_control_is_sent_again_after_ack_s(boot):
    core, sim, out = infected(boot)
    assert core.tick(T0 + 2 + ACK_S / 2) == [] or not any(
        isinstance(m, Barrier) for _, m in core.tick(T0 + 2 + ACK_S / 2))
    again = core.tick(T0 + 2 + ACK_S + 0.1)
    tag = barrier_of(again)
    assert core.counters["crs_control_unacknowledged"] == 1
    core.switch_reply(1, tag, None, T0 + 5)
    assert control(core)["confirmed"]


def test_confirmations_match_errors_and_replies_to_their_batch():
    c = Confirmations()
    fm = FlowMod(table_id=1)
    c.sent(1, 10, fm, 0.0)
    c.sent(1, 11, fm, 0.0)
    c.sent(1, 12, Barrier(tag=(("a", 1),)), 0.0)
    c.sent(1, 13, fm, 0.0)
    c.sent(1, 14, Barrier(tag=(("b", 1),)), 0.0)
    assert c.error(1, 11, "bad") and not c.error(1, 99, "x") and not c.error(2, 11, "x")
    assert c.reply(1, 12) == ((("a", 1),), "bad")
    assert c.reply(1, 14) == ((("b", 1),), None)
    assert c.reply(1, 14) is None
    c.sent(1, 20, Barrier(tag=(("c", 1),)), 0.0)
    c.prune(100.0)
    assert len(c) == 0


def test_a_control_for_a_switch_that_went_away_waits_for_its_reconnect(boot):
    core, sim, out = infected(boot)
    core.switch_down(1)
    assert core.tick(T0 + 2 + ACK_S + 0.1) == []
    assert core.tick(T0 + 2 + ACK_S + 0.2) == []          # one alarm, not one per tick
    assert core.counters["crs_control_unacknowledged"] == 1
    up = core.switch_up(1, {1, 2, 3, 4}, T0 + 10)         # the rebuild asks again
    core.switch_reply(1, barrier_of(up), None, T0 + 10)
    assert control(core)["confirmed"]
