"""Leader election by a lease row, on both stores (two connections = two controllers): one
leader at a time, renewal keeps the generation, takeover raises it, a clean stop hands over
at once, and a leader cut off from the store stops leading when its own lease runs out."""
from __future__ import annotations

import time

import pytest

from controller.lease import Lease
from controller.store import Store


def until(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_one_leader_renewal_keeps_the_generation_takeover_raises_it(store_target):
    a = Lease(Store(store_target).db, "A", lease_s=0.4)
    b = Lease(Store(store_target).db, "B", lease_s=0.4)
    ra = a.step()
    assert ra.leader and ra.generation == 1 and a.leading()
    rb = b.step()
    assert not rb.leader and rb.holder == "A" and rb.generation == 1
    for _ in range(3):                       # A renews within its lease: same generation
        assert a.step().generation == 1 and not b.step().leader
    # A stops renewing: once its lease has run out on the store's clock, B takes over
    rb = until(lambda: b.step().leader and b.role)
    assert rb.generation == 2 and rb.holder == "B"
    assert not a.leading()                   # A's own clock said so before B could take it
    ra = a.step()
    assert not ra.leader and ra.holder == "B" and ra.generation == 2
    # a clean stop gives the lease up at once
    b.release()
    assert a.step().leader and a.role.generation == 3


def test_a_leader_cut_off_from_the_store_leads_only_until_its_lease_ends(store_target):
    t = [100.0]
    store = Store(store_target)
    a = Lease(store.db, "A", lease_s=1.0, clock=lambda: t[0])
    assert a.step().leader and a.leading()
    store.db.close()                         # the store is gone (and stays gone)
    store.db.target = "postgresql:///crs?host=/nonexistent&port=1"
    t[0] += 0.5
    with pytest.raises(Exception):
        a.step()
    assert a.leading()                       # still inside the lease it holds
    t[0] += 0.6
    with pytest.raises(Exception):
        a.step()
    assert not a.leading() and not a.role.leader
