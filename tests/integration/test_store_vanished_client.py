"""A controller whose host vanishes while it holds the shared store's migration lock (every
controller takes it at start, `storedb.Db.migrate`) must not keep the others from starting
for hours: its PostgreSQL session asks the server to probe it, so the server ends the
session, and the lock with it, within seconds.

Real parts: a private PostgreSQL cluster listening on one end of a veth pair of our own, the
"vanishing" controller's connection made by our `Db` from a network namespace of our own at
the other end; the vanish is that end's link going down (no FIN, no RST: nothing reaches the
server any more, as when a host dies or is cut off)."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import pytest
from nethelpers import ROOT

from controller.emulation.pgcluster import Cluster
from controller.storedb import MIGRATION_LOCK, Db

PG_ROOT = "/dev/shm"

HOLDER = """
import sys, time
from controller.storedb import MIGRATION_LOCK, Db
db = Db(sys.argv[1])
db.execute("SELECT pg_advisory_lock(?)", (MIGRATION_LOCK,))
print("locked", flush=True)
time.sleep(600)
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def link():
    """(namespace, its end, our end's address, its address): a veth pair of our own, one
    end moved into a network namespace of our own."""
    tag = os.urandom(3).hex()
    ns, here, there = f"crspg{tag}", f"pgv{tag}a", f"pgv{tag}b"
    net = f"10.231.{random.randint(1, 250)}"
    ip("netns", "add", ns)
    try:
        ip("link", "add", here, "type", "veth", "peer", "name", there)
        ip("link", "set", there, "netns", ns)
        ip("addr", "add", f"{net}.1/24", "dev", here)
        ip("link", "set", here, "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"{net}.2/24", "dev", there)
        ip("netns", "exec", ns, "ip", "link", "set", there, "up")
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns, there, f"{net}.1", f"{net}.2"
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def lock_free(db: Db) -> bool:
    """Take the migration lock if nobody holds it (and give it back at once)."""
    if not db.execute("SELECT pg_try_advisory_lock(?)", (MIGRATION_LOCK,)).fetchone()[0]:
        return False
    db.execute("SELECT pg_advisory_unlock(?)", (MIGRATION_LOCK,))
    return True


def test_a_vanished_controllers_migration_lock_is_freed_within_seconds(link):
    ns, there, server_ip, _ = link
    pg = Cluster(PG_ROOT, tcp=server_ip).start()
    holder = None
    try:
        dsn = pg.tcp_dsn()
        holder = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", HOLDER,
                                   dsn], cwd=str(ROOT), stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert holder.stdout.readline().strip() == "locked"
        other = Db(pg.dsn())            # another controller, still connected
        assert not lock_free(other)
        # the holder's host vanishes: its link goes down, nothing reaches the server
        ip("netns", "exec", ns, "ip", "link", "set", there, "down")
        cut = time.monotonic()
        assert not lock_free(other)     # held still: the server cannot know yet
        while not lock_free(other):
            # idle 5 s, then 2 probes 2 s apart: ~9 s (the system's default: 2 h)
            assert time.monotonic() - cut < 30, "the vanished session still holds the lock"
            time.sleep(0.2)
        assert time.monotonic() - cut >= 5
        other.close()
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        pg.stop()
