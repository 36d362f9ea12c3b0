"""The shell's lease loop (ryu_shell.leadership) on both stores, without switches: a failed
takeover gives the lease up, two processes given one node name never both lead, and a
controller acts only while its lease is valid."""
from __future__ import annotations

import warnings

with warnings.catch_warnings():      # eventlet 0.33 still imports distutils' version classes
    warnings.simplefilter("ignore", DeprecationWarning)
    import eventlet

from controller.lease import Lease
from controller.ryu_shell.leadership import Leadership
from controller.store import Store
from controller.storedb import Db


def until(cond, timeout=5.0):
    with eventlet.Timeout(timeout):
        while not cond():
            eventlet.sleep(0.02)


def test_a_failed_takeover_gives_the_lease_up(store_target):
    calls = []

    def take_over(generation):
        calls.append(generation)
        raise RuntimeError("the store failed while loading")
    # a 5 s lease: A asks again only after 1.7 s, B must get it at once (released)
    lead = Leadership(store_target, "A", 6653, 5.0, take_over, lambda: None)
    try:
        # (the release runs in a native thread: wait for it, not only for the call)
        until(lambda: calls and not lead.lease.role.leader)
        assert not lead.leading and not lead.acting
        other = Lease(Db(store_target), "B", 5.0)
        assert other.step().leader and other.role.generation > calls[0]
    finally:
        lead.stop()


def test_one_node_name_in_two_processes_makes_one_leader(store_target):
    took = []
    a = Leadership(store_target, "same", 6653, 0.6, took.append, lambda: None)
    b = Leadership(store_target, "same", 6653, 0.6, took.append, lambda: None)
    try:
        until(lambda: took)
        eventlet.sleep(1.0)                   # several renewals of both
        assert [a.leading, b.leading].count(True) == 1 and len(took) == 1
        assert a.acting != b.acting
    finally:
        a.stop()
        b.stop()


def test_a_lease_lost_to_a_blocked_process_says_so(store_target, caplog):
    """A take-over that blocks the whole process (a non-green call) past the lease: the
    leader steps down, and its log says no renewal was even asked, how late the lease ran
    out, and how long renewals took (what tells a stalled process from a slow store)."""
    import time
    lost = []

    def blocking(generation):
        time.sleep(1.0)         # not eventlet's: nothing else runs, the lease runs out
    lead = Leadership(store_target, "A", 6653, 0.6, blocking, lambda: lost.append(1))
    try:
        with caplog.at_level("WARNING", logger="crs.ha"):
            until(lambda: lost)
        line = next(r.getMessage() for r in caplog.records if "in time" in r.getMessage())
        assert "no renewal in flight" in line and "the lease ran out 0." in line, line
        st = lead.status()
        assert st["role"] == "standby" and 0 < st["renew_ms_last"] <= st["renew_ms_max"]
    finally:
        lead.stop()


def test_a_renewal_that_finds_the_lease_run_out_is_a_new_take_over(store_target):
    """The lease ran out in the store before a renewal reached it (a slow store, a stalled
    loop; here, someone else held it meanwhile) and the renewal took it again under a newer
    generation: what the leader loaded and its store fence belong to the old term, so it
    steps down and takes over anew (before, it went on leading with a fence every commit
    failed)."""
    terms, downs = [], []
    lead = Leadership(store_target, "A", 6653, 0.6, terms.append, lambda: downs.append(1))
    try:
        until(lambda: terms)
        Store(store_target).db.execute(
            "UPDATE leader SET holder = 'B/1', generation = generation + 1, expires = 0")
        until(lambda: len(terms) == 2)
        assert terms[1] == terms[0] + 2 and downs == [1]
        assert lead.leading and lead.term == lead.role.generation == terms[1]
    finally:
        lead.stop()
