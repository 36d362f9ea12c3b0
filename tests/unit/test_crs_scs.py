"""The SCS state machine: reports, rejection, correlation, sealing, staleness, reload pacing."""
from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import yaml

from controller.crs import messages as m
from controller.crs.decision import Level
from controller.crs.policy import parse_policy
from controller.crs.scs import (
    SCS,
    Audit,
    Count,
    Enforce,
    Remove,
    Reply,
    SealGroup,
    SendUpdate,
    effects_of,
)
from controller.effects import Rejected

DOC = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" /
                      "crs_policy.yaml").read_text())
T0 = 1_764_300_000.0


def policy(**edits):
    d = copy.deepcopy(DOC)
    for path, value in edits.items():
        target = d
        keys = path.split("__")
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return parse_policy(d)


def key_of(tid: str) -> bytes:
    return f"key-{tid}".encode().ljust(32, b"0")


def sci(patch=12, sig=2041, threats=(), attackers=()):
    return {"os": {"name": "MobileOS", "patch_level": patch},
            "antivirus": {"engine": "1.0", "signature_version": sig},
            "agent_version": "1.0.0", "firewall": True, "threats": list(threats),
            "attackers": list(attackers)}


WORM = {"name": "Worm.Demo", "count": 1, "cleaned": False}


class Net:
    """An SCS with terminals h1..hn (ip 10.0.1.i, port i) and per-terminal sequence numbers."""

    def __init__(self, n=4, groups=None, pol=None):
        self.scs = SCS(pol or policy(), lambda tid: key_of(tid) if tid != "nokey" else None)
        self.seq = {}
        self.now = T0
        for i in range(1, n + 1):
            g = (groups or {}).get(f"h{i}", "staff")
            self.scs.connect(f"h{i}", g, f"10.0.1.{i}", f"00:00:00:00:01:{i:02x}", 1, i,
                             self.now)

    def msg(self, tid, type_="SCIReport", body=None, key=None, ts=None, seq=None):
        if seq is None:
            self.seq[tid] = self.seq.get(tid, 0) + 1
            seq = self.seq[tid]
        body = body if body is not None else {"ms_id": tid, "sci": sci()}
        return m.encode(type_, tid, seq, self.now if ts is None else ts, body,
                        key or key_of(tid))

    def report(self, tid, **kw):
        return self.scs.handle(tid, self.msg(tid, body={"ms_id": tid, "sci": sci(**kw)}),
                               self.now)

    def level(self, tid):
        return self.scs.terminals[tid].decision.level


def reply_body(effects, tid):
    (r,) = effects_of(effects, Reply)
    msg = m.decode(r.payload)
    m.verify(msg, key_of(tid), m.ReplayState(), T0 + 1000, skew_s=1e6)
    return msg.body


def test_connect_starts_unknown_with_redirect():
    net = Net(1)
    d = net.scs.terminals["h1"].decision
    assert d.level is Level.UNKNOWN and d.redirect_web and d.scope == "none"
    effects = net.scs.connect("h9", "staff", "10.0.1.9", "00:00:00:00:01:09", 1, 9, T0)
    (enf,) = effects_of(effects, Enforce)
    assert enf.location.port == 9 and enf.location.number == 2


def test_compliant_report_and_signed_reply():
    net = Net(1)
    effects = net.report("h1")
    (enf,) = effects_of(effects, Enforce)
    assert enf.decision.level is Level.COMPLIANT and enf.decision.unrestricted
    body = reply_body(effects, "h1")
    assert body["level"] == "COMPLIANT" and "update" not in body and body["policy_version"] == 1
    # same again: no new Enforce
    assert effects_of(net.report("h1"), Enforce) == []


def test_infected_report_isolates_and_grants_update_in_reply():
    net = Net(1)
    effects = net.report("h1", threats=[WORM])
    (enf,) = effects_of(effects, Enforce)
    assert enf.decision.isolate and enf.decision.level is Level.INFECTED
    body = reply_body(effects, "h1")
    assert body["update"]["item"] == "clean"
    assert body["update"]["url"] == "http://10.0.100.20/updates/clean"
    assert body["update"]["install"]["clean"] is True
    # the agent installs and reports clean: restrictions lifted
    effects = net.report("h1", threats=[dict(WORM, cleaned=True)])
    assert effects_of(effects, Enforce)[0].decision.unrestricted
    assert net.scs.terminals["h1"].granted is None


def _rejected(effects, kind):
    assert [type(e) for e in effects] == [Rejected], effects
    assert effects[0].counter == f"crs_rejected_{kind}"


def test_rejections_change_nothing():
    net = Net(2)
    net.report("h1")
    before = net.scs.terminals["h1"].decision
    raw = net.msg("h1", body={"ms_id": "h1", "sci": sci(threats=[WORM])})
    _rejected(net.scs.handle("h1", b"{not json", net.now), "malformed")
    _rejected(net.scs.handle("h2", raw, net.now), "sender_mismatch")
    forged = net.msg("h1", body={"ms_id": "h1", "sci": sci(threats=[WORM])}, key=b"x" * 32)
    _rejected(net.scs.handle("h1", forged, net.now), "unauthenticated")
    about_other = net.msg("h1", body={"ms_id": "h2", "sci": sci(threats=[WORM])})
    _rejected(net.scs.handle("h1", about_other, net.now), "other_terminal")
    stale = net.msg("h1", body={"ms_id": "h1", "sci": sci(threats=[WORM])}, ts=net.now - 100)
    _rejected(net.scs.handle("h1", stale, net.now), "unauthenticated")
    _rejected(net.scs.handle(None, net.msg("h7"), net.now), "unknown_terminal")
    wrong_type = net.msg("h1", "UpdateCommand", {"ms_id": "h1", "update": {
        "id": "1", "item": "x", "url": "http://a/b", "install": {}}})
    _rejected(net.scs.handle("h1", wrong_type, net.now), "unexpected_type")
    assert net.scs.terminals["h1"].decision == before
    # the genuine message still works afterwards, then its replay is rejected
    assert net.scs.handle("h1", raw, net.now)
    assert net.level("h1") is Level.INFECTED
    _rejected(net.scs.handle("h1", raw, net.now), "unauthenticated")


def test_key_lookup_failure_is_rejection():
    net = Net(1)
    net.scs.key_lookup = lambda tid: (_ for _ in ()).throw(RuntimeError("db down"))
    _rejected(net.scs.handle("h1", net.msg("h1"), net.now), "no_key")


def test_staleness_downgrades_to_unknown():
    net = Net(1)
    net.report("h1")
    assert effects_of(net.scs.tick(T0 + 40), Enforce) == []
    effects = net.scs.tick(T0 + 46)
    (enf,) = effects_of(effects, Enforce)
    assert enf.decision.level is Level.UNKNOWN and "no report" in enf.decision.reason


def test_accusations_need_k_distinct_eligible_accusers():
    net = Net(4)
    for t in ("h1", "h2", "h3", "h4"):
        net.report(t)
    attack = [{"source": "10.0.1.3", "threat": "Worm.Demo", "count": 5, "last_seen": T0}]
    net.report("h2", attackers=attack)
    net.now += 1
    net.report("h2", attackers=attack)         # repeating accuser
    assert net.level("h3") is Level.COMPLIANT
    net.report("h1", threats=[WORM], attackers=attack)   # infected accuser: not counted
    assert net.level("h3") is Level.COMPLIANT
    effects = net.report("h4", attackers=attack)
    enf = [e for e in effects_of(effects, Enforce) if e.terminal_id == "h3"]
    assert enf and enf[0].decision.level is Level.INFECTED
    assert enf[0].decision.accusers == ("h2", "h4") and enf[0].decision.isolate
    # h3 still says it is clean: accusations win until they leave the window
    net.report("h3")
    assert net.level("h3") is Level.INFECTED
    net.now = T0 + 62
    for t in ("h1", "h2", "h4", "h3"):
        net.report(t)
    assert net.level("h3") is Level.COMPLIANT


def test_scan_evidence_plus_one_accuser():
    net = Net(3)
    for t in ("h1", "h2", "h3"):
        net.report(t)
    out = []
    for i in range(4):
        out += net.scs.observe_first_contact("h3", f"10.0.9.{i}", False, net.now)
    assert effects_of(out, Count)[0].name == "crs_scan_flagged"
    assert net.level("h3") is Level.COMPLIANT
    net.report("h1", attackers=[{"source": "10.0.1.3", "last_seen": net.now}])
    assert net.level("h3") is Level.INFECTED
    assert net.scs.terminals["h3"].decision.accusers == ("h1", "network:scan")


def test_group_seal_and_release():
    groups = {"h1": "cell-a", "h2": "cell-a", "h3": "cell-a", "h4": "cell-a", "h5": "cell-b"}
    net = Net(5, groups)
    for t in groups:
        net.report(t)
    net.report("h1", threats=[WORM])
    out = net.report("h2", threats=[WORM])
    assert effects_of(out, SealGroup) == []
    out = net.report("h3", threats=[WORM])
    assert effects_of(out, SealGroup) == [SealGroup("cell-a", True)]
    d4 = net.scs.terminals["h4"].decision
    assert d4.level is Level.COMPLIANT and d4.group_sealed and d4.scope == "group"
    assert not net.scs.terminals["h5"].decision.group_sealed
    net.report("h3")                                   # 2 infected: hysteresis keeps it
    assert "cell-a" in net.scs.corr.sealed
    out = net.report("h2")                             # 1 infected < release_below 2
    assert effects_of(out, SealGroup) == [SealGroup("cell-a", False)]
    assert net.scs.terminals["h4"].decision.unrestricted


def test_reload_reevaluates_and_paces_updates():
    net = Net(6)
    for i in range(1, 7):
        net.report(f"h{i}")
    newer = policy(version=2, evaluation__rules=[
        {"name": "old-signatures", "level": "VULNERABLE",
         "when": {"signature_version_below": 2050}}],
        updates__max_concurrent=3, updates__per_second=2.0, report__stale_after_s=1000,
        updates__items={"baseline": {"signature_version": 2050},
                        "clean": {"signature_version": 2050, "clean": True}})
    out = net.scs.reload(newer, net.now)
    assert len(effects_of(out, Enforce)) == 6
    assert all(e.decision.level is Level.VULNERABLE and e.decision.policy_version == 2
               for e in effects_of(out, Enforce))
    sent = effects_of(out, SendUpdate)
    assert len(sent) == 2                              # bucket of 2 per second
    cmd = m.decode(sent[0].payload)
    m.verify(cmd, key_of(sent[0].terminal_id), m.ReplayState(), net.now)
    assert cmd.type == "UpdateCommand" and cmd.body["update"]["install"] == \
        {"signature_version": 2050, "clean": False}
    assert len(effects_of(net.scs.tick(net.now + 0.5), SendUpdate)) == 1   # 3 concurrent
    assert effects_of(net.scs.tick(net.now + 2), SendUpdate) == []
    # one terminal installs and reports: a slot frees up
    net.now += 2
    out = net.report(sent[0].terminal_id, sig=2050)
    assert net.level(sent[0].terminal_id) is Level.COMPLIANT
    assert len(effects_of(out, SendUpdate)) == 1     # handed to a waiting terminal at once
    assert effects_of(net.scs.tick(net.now + 0.1), SendUpdate) == []
    # timeouts free the others
    assert len(effects_of(net.scs.tick(net.now + 61), SendUpdate)) == 2


def test_operator_actions():
    net = Net(2)
    net.report("h1")
    (enf,) = effects_of(net.scs.quarantine("h1", net.now), Enforce)
    assert enf.decision.isolate and enf.decision.operator == "quarantine"
    net.report("h1")                                   # a clean report does not lift it
    assert net.scs.terminals["h1"].decision.isolate
    (enf,) = effects_of(net.scs.release("h1", net.now), Enforce)
    assert enf.decision.unrestricted
    (enf,) = effects_of(net.scs.rate_limit("h1", 512, net.now), Enforce)
    assert enf.decision.meter_kbps == 512
    assert effects_of(net.scs.rate_limit("h1", 0, net.now), Count)[0].name == \
        "crs_operator_rejected"
    assert effects_of(net.scs.quarantine("nobody", net.now), Count)[0].name == \
        "crs_operator_rejected"


def test_leave_message_keeps_the_terminal_connected_at_unknown():
    net = Net(1)
    net.report("h1")
    out = net.scs.handle("h1", net.msg("h1", "Leave", {"ms_id": "h1", "reason": "SIGTERM"}),
                         net.now)
    assert effects_of(out, Remove) == []        # its access (the binding) is the NAC's
    t = net.scs.terminals["h1"]
    assert t.online and t.own_level is Level.UNKNOWN
    assert net.level("h1") is Level.UNKNOWN
    assert any(a.record.get("event") == "agent_leave" for a in effects_of(out, Audit))
    net.now += 1
    net.report("h1")                           # a later report is evaluated again
    assert net.level("h1") is Level.COMPLIANT


def test_leave_never_lifts_a_restriction():
    net = Net(1)
    net.report("h1", threats=[WORM])
    assert net.level("h1") is Level.INFECTED
    before = net.scs.terminals["h1"].decision
    out = net.scs.handle("h1", net.msg("h1", "Leave", {"ms_id": "h1"}), net.now)
    assert effects_of(out, Remove) == [] and effects_of(out, Enforce) == []
    assert net.scs.terminals["h1"].decision == before and net.level("h1") is Level.INFECTED
    net.now += 10_000                          # silence never lifts it either
    net.scs.tick(net.now)
    assert net.level("h1") is Level.INFECTED
    # operator actions still take effect after a Leave
    out = net.scs.quarantine("h1", net.now)
    assert net.scs.terminals["h1"].decision.isolate


def test_nac_leave_removes_flows_and_reconnect_keeps_infected():
    net = Net(1)
    net.report("h1", threats=[WORM])
    out = net.scs.leave("h1", net.now, "logoff")
    (rem,) = effects_of(out, Remove)
    assert rem.location.number == 1 and not net.scs.terminals["h1"].online
    _rejected(net.scs.handle("h1", net.msg("h1"), net.now), "unknown_terminal")
    net.now += 10_000
    out = net.scs.connect("h1", "staff", "10.0.1.1", "00:00:00:00:01:01", 2, 7, net.now)
    (enf,) = effects_of(out, Enforce)
    assert enf.decision.level is Level.INFECTED and enf.location.dpid == 2


def test_accusation_of_an_unbound_address_is_ignored():
    net = Net(3)
    for t in ("h1", "h2", "h3"):
        net.report(t)
    for i in range(1000):
        net.report("h1", attackers=[{"source": f"10.9.{i // 250}.{i % 250}",
                                     "last_seen": net.now}])
    assert net.scs.corr.accusations == {}      # bounded: nobody holds those addresses
    net.report("h1", attackers=[{"source": "10.0.1.1", "last_seen": net.now}])  # itself
    assert net.scs.corr.accusations == {}


def test_roaming_with_fresh_report_keeps_level():
    net = Net(1)
    net.report("h1", sig=1)
    out = net.scs.connect("h1", "staff", "10.0.1.1", "00:00:00:00:01:01", 2, 3, net.now + 5)
    (enf,) = effects_of(out, Enforce)
    assert enf.decision.level is Level.VULNERABLE and enf.location.port == 3


def test_status_lists_terminals():
    net = Net(2)
    net.report("h1")
    st = net.scs.status()
    assert [s["id"] for s in st] == ["h1", "h2"]
    assert st[0]["level"] == "COMPLIANT" and st[1]["level"] == "UNKNOWN"


# --- constant work per event: the indexes against a full pass ---------------------------

GROUPS = ("cell-a", "cell-b", "staff")


def check_against_full_pass(scs, now):
    online = [t for t in scs.terminals.values() if t.online]
    members = {}
    for t in online:
        if t.group:
            members.setdefault(t.group, set()).add(t.tid)
    assert scs.members == members
    assert set(scs._granted) == {t.tid for t in online if t.granted}
    decisions = {t.tid: t.decision for t in online}
    sealed = set(scs.corr.sealed)
    effects = scs._recompute(now)         # the full pass a policy reload makes
    assert effects_of(effects, Enforce) == [], "a decision differed from the full pass"
    assert effects_of(effects, SealGroup) == []
    assert {t.tid: t.decision for t in online} == decisions
    assert scs.corr.sealed == sealed
    infected = {}
    for t in online:
        if t.group and scs._levels[t.tid][0] is Level.INFECTED:
            infected.setdefault(t.group, set()).add(t.tid)
    assert scs._infected == infected
    seal = scs.policy.correlation
    for g in GROUPS:      # the seal rule itself, counted from scratch
        count = len(infected.get(g, ()))
        if count >= seal.seal_m:
            assert g in scs.corr.sealed, (g, count)
        if count < seal.seal_release_below:
            assert g not in scs.corr.sealed, (g, count)


@pytest.mark.parametrize("seed", range(12))
def test_random_events_leave_the_same_state_as_a_full_pass(seed):
    rng = random.Random(seed)
    pol = policy(correlation__group_seal__infected_m=2,
                 correlation__group_seal__release_below=1)
    n = 12
    net = Net(n, groups={f"h{i}": rng.choice(GROUPS) for i in range(1, n + 1)}, pol=pol)
    scs = net.scs
    for _ in range(300):
        net.now += rng.choice((0.01, 0.5, 3.0, 40.0))
        tid = f"h{rng.randint(1, n)}"
        t = scs.terminals[tid]
        op = rng.random()
        if not t.online:
            if op < 0.5:
                scs.connect(tid, rng.choice(GROUPS), t.ip, t.mac, 1, int(tid[1:]), net.now)
        elif op < 0.35:
            net.report(tid, threats=[WORM] if rng.random() < 0.3 else [],
                       patch=rng.choice((3, 12)))
        elif op < 0.55:
            victim = f"10.0.1.{rng.randint(1, n)}"
            net.report(tid, attackers=[{"source": victim, "last_seen": net.now}])
        elif op < 0.62:
            scs.leave(tid, net.now)
        elif op < 0.67:
            scs.connect(tid, rng.choice(GROUPS), t.ip, t.mac, 1, int(tid[1:]), net.now)
        elif op < 0.72:
            scs.quarantine(tid, net.now)
        elif op < 0.77:
            scs.release(tid, net.now)
        else:
            net.now += 1.0
            scs.tick(net.now)
            check_against_full_pass(scs, net.now)


def test_a_report_that_goes_stale_lowers_the_level_once_and_a_fresh_one_does_not():
    net = Net(2)
    pol = net.scs.policy
    net.report("h1")
    net.report("h2")
    assert net.level("h1") is Level.COMPLIANT
    for step in range(1, 4):                       # h2 keeps reporting, h1 falls silent
        net.now += pol.stale_after_s / 2
        net.report("h2")
        net.scs.tick(net.now)
    assert net.level("h1") is Level.UNKNOWN
    assert net.level("h2") is Level.COMPLIANT
    assert len(net.scs._stale_heap) <= 2           # one entry per terminal at most


def test_a_restored_terminal_that_falls_silent_goes_stale():
    """After a restart the staleness watch is rebuilt: a terminal that stops reporting
    (its agent killed) is not COMPLIANT forever."""
    from controller.crs.scs import SCS
    net = Net(2)
    net.report("h1")
    assert net.level("h1") is Level.COMPLIANT
    again = SCS(net.scs.policy, key_of)
    again.restore(list(net.scs.terminals.values()), {}, [], {}, net.now)
    again.tick(net.now + net.scs.policy.stale_after_s + 2)
    assert again.terminals["h1"].decision.level is Level.UNKNOWN


def test_remembered_results_follow_the_policy_and_the_answer_its_decision():
    """Evaluation and decision are remembered by their inputs, and a steady terminal's
    answer body is reused: a changed policy (reload or a new object) or a changed decision
    gives new results and a new answer, never the remembered ones."""
    net = Net(2)
    assert reply_body(net.report("h1"), "h1")["level"] == "COMPLIANT"
    first = net.scs.terminals["h1"].answer
    body = reply_body(net.report("h1"), "h1")       # same SCI, same decision: reused
    assert body["level"] == "COMPLIANT" and net.scs.terminals["h1"].answer is first
    stricter = policy(version=2, evaluation__rules=[
        {"name": "old-signatures", "level": "VULNERABLE",
         "when": {"signature_version_below": 2050}}])
    net.scs.reload(stricter, net.now)
    body = reply_body(net.report("h1"), "h1")
    assert body["level"] == "VULNERABLE" and body["policy_version"] == 2
    net.scs.policy = policy(version=3)               # set directly: no reload, still seen
    body = reply_body(net.report("h1"), "h1")
    assert body["level"] == "COMPLIANT" and body["policy_version"] == 3
    # an infection and a clean report again: each answer says what the decision is
    assert reply_body(net.report("h1", threats=[WORM]), "h1")["level"] == "INFECTED"
    assert reply_body(net.report("h2"), "h2")["level"] == "COMPLIANT"


def test_an_sci_equal_in_python_but_not_in_json_is_evaluated_again():
    """1 == True in Python: the memo is keyed by canonical JSON, which tells them apart."""
    from controller.crs.evaluation import evaluate
    net = Net(1)
    a, b = sci(), sci()
    b["firewall"] = 1
    assert a == b
    assert net.scs._evaluate(a, m.body_json(a)) == evaluate(a, net.scs.policy)
    assert net.scs._evaluate(b, m.body_json(b)) == evaluate(b, net.scs.policy)
    assert m.body_json(a) in net.scs._evaluated and m.body_json(b) in net.scs._evaluated
