"""Correlation: k distinct accusers, TRW scan detection, new-destination rate, group seal."""
from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.crs.correlation import SCAN_ACCUSER, TRW, Correlator
from controller.crs.policy import CorrelationParams, TRWParams

P = CorrelationParams(accusers_k=2, window_s=60, new_dest_max=20, new_dest_window_s=10,
                      seal_m=3, seal_release_below=2)


def test_single_accuser_never_acts_even_repeating():
    c = Correlator(P)
    for t in range(100):
        c.accuse("h2", "10.0.1.3", 1000.0 + t, 1000.0 + t)
    assert c.acted_on("10.0.1.3", 1100.0) == ()
    c.accuse("h4", "10.0.1.3", 1099.0, 1100.0)
    assert c.acted_on("10.0.1.3", 1100.0) == ("h2", "h4")


def test_ineligible_accuser_does_not_count():
    c = Correlator(P)
    c.accuse("h2", "10.0.1.3", 0.0, 0.0)
    c.accuse("h9", "10.0.1.3", 0.0, 0.0)
    assert c.acted_on("10.0.1.3", 1.0, eligible=lambda a: a != "h9") == ()
    assert c.acted_on("10.0.1.3", 1.0) == ("h2", "h9")


def test_window_uses_last_seen_and_expires():
    c = Correlator(P)
    assert not c.accuse("h2", "s", seen_at=0.0, now=100.0)   # observation too old
    c.accuse("h2", "s", seen_at=50.0, now=100.0)
    c.accuse("h3", "s", seen_at=100.0, now=100.0)
    assert c.acted_on("s", 100.0) and c.acted_on("s", 110.0)
    assert c.acted_on("s", 111.0) == ()                       # h2's sighting left the window
    c.accuse("h2", "s", seen_at=50.0, now=111.0)              # re-sending it does not refresh
    assert c.acted_on("s", 111.0) == ()
    c.expire(161.0)
    assert c.accusations == {}
    c.accuse("h2", "t", seen_at=500.0, now=100.0)              # future clamps to now
    assert c.accusations["t"]["h2"] == 100.0


def test_trw_all_failing_flagged_after_exactly_four():
    c = Correlator(replace(P, new_dest_enabled=False))
    flags = [c.observe_first_contact("10.0.1.3", f"10.0.2.{i}", False, float(i))
             for i in range(1, 8)]
    assert flags == [False, False, False, True, False, False, False]
    assert c.scan_flagged("10.0.1.3", 5.0) and c.scan_reason["10.0.1.3"] == "TRW"


def test_trw_repeat_contacts_are_not_first_contacts():
    c = Correlator(replace(P, new_dest_enabled=False))
    for _ in range(10):
        assert not c.observe_first_contact("a", "b", False, 0.0)


def _probes_to_flag(rng, p):
    trw, n = TRW(TRWParams()), 0
    while True:
        n += 1
        if trw.observe("s", rng.random() < p) == "scanner":
            return n


def test_trw_mean_probes_matches_theory():
    """Mean probes to detection vs Wald's approximation 3.31 / (1 - 2p) (Jung et al. 2004).

    The discrete walk overshoots the threshold, so the true mean is above Wald's
    approximation: exactly 4 at p = 0, within +1 up to p = 0.15, and 1.15 above at p = 0.2
    (5.52 vs 6.67 over 20000 runs): check 5 of docs/experiments.md (within +1) holds only
    for p <= 0.15."""
    rng = random.Random(7)
    for p, slack in ((0.0, 1.0), (0.1, 1.0), (0.15, 1.0), (0.2, 1.4)):
        runs = [_probes_to_flag(rng, p) for _ in range(3000)]
        mean = sum(runs) / len(runs)
        wald = 3.31 / (1 - 2 * p)
        assert wald <= mean <= wald + slack, (p, mean, wald)


def test_trw_benign_false_alarms_per_decision():
    """A benign host (theta0 = 0.8 success) is wrongly flagged in <= 1% of walk decisions."""
    rng = random.Random(3)
    wrong = 0
    for _ in range(5000):
        trw = TRW(TRWParams())
        while (d := trw.observe("h", rng.random() < 0.8)) == "pending":
            pass
        wrong += d == "scanner"
    assert wrong / 5000 <= 0.01


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=40))
def test_trw_never_flags_before_four_failures(outcomes):
    trw = TRW(TRWParams())
    fails = 0
    for ok in outcomes:
        fails += not ok
        if trw.observe("s", ok) == "scanner":
            assert fails >= 4
            fails = 0


def test_new_destination_rate():
    c = Correlator(replace(P, trw=TRWParams(enabled=False), new_dest_max=5,
                           new_dest_window_s=10))
    # slow, successful contacts: never flagged
    assert not any(c.observe_first_contact("a", f"d{i}", True, i * 3.0) for i in range(30))
    flags = [c.observe_first_contact("b", f"d{i}", True, 100 + i * 0.1) for i in range(7)]
    assert flags == [False] * 5 + [True, False]
    assert "new destinations" in c.scan_reason["b"]


def test_scan_flag_counts_as_one_accuser_and_holds():
    c = Correlator(replace(P, new_dest_enabled=False, scan_hold_s=30))
    for i in range(4):
        c.observe_first_contact("s", f"d{i}", False, 0.0)
    assert c.accusers("s", 1.0) == (SCAN_ACCUSER,)
    assert c.acted_on("s", 1.0) == ()                       # network evidence alone: 1 < k
    c.accuse("h2", "s", 1.0, 1.0)
    assert c.acted_on("s", 1.0) == ("h2", SCAN_ACCUSER)
    assert c.acted_on("s", 31.0) == ()                      # flag hold expired
    c2 = Correlator(replace(P, scan_weight=2, new_dest_enabled=False))
    for i in range(4):
        c2.observe_first_contact("s", f"d{i}", False, 0.0)
    assert c2.acted_on("s", 1.0) == (SCAN_ACCUSER,)         # weight k: scans act alone
    c.clear_scan("s")
    assert not c.scan_flagged("s", 2.0)


def test_group_seal_with_hysteresis():
    c = Correlator(P)
    assert [c.seal_update("g", n) for n in (1, 2, 3, 3, 2, 1, 2, 3)] == \
        [None, None, True, None, None, False, None, True]
    c2 = Correlator(replace(P, seal_enabled=False))
    assert c2.seal_update("g", 10) is None
