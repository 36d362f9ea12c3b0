"""The SCS works per event in constant time through indexes (group members, a group's
INFECTED members, granted updates, a staleness heap). Whatever sequence of events it sees,
what it holds must equal what a full pass over every terminal computes."""
from __future__ import annotations

import random

import pytest
from test_crs_scs import WORM, Net, policy

from controller.crs.decision import Level
from controller.crs.scs import Enforce, SealGroup, effects_of

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
