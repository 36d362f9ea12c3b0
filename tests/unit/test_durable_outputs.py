"""Pipelined sync (storedb.WalSync, ryu_shell.durable): a commit returns before its disk
sync, and nothing produced after it leaves the controller before a sync that *began after*
it has ended; the event loop runs meanwhile. On a real SQLite file, the sync gated so the
test decides when it ends."""
from __future__ import annotations

import os
import warnings

with warnings.catch_warnings():      # eventlet 0.33 still imports distutils' version classes
    warnings.simplefilter("ignore", DeprecationWarning)
    import eventlet
    from eventlet.green import socket as green_socket
    from eventlet.patcher import original

from collections import Counter

import pytest

from controller.records import SsRecord
from controller.ryu_shell.durable import INLINE_MAX_S, Outputs, loop_idle
from controller.store import Store

threading = original("threading")
MAIN = threading.get_ident()


def until(cond, timeout=5.0):
    with eventlet.Timeout(timeout):
        while not cond():
            eventlet.sleep(0.005)


def commit(store: Store, n: int) -> None:
    with store.batch():
        store.put_ss(SsRecord(f"isr-{n}", f"t{n}", "g", b"k", 1e12))


class Gate:
    """Stands in for the WAL's fdatasync (run in a native thread): records the mark each
    sync began at, and ends a sync only when the test opens it; then syncs for real."""

    def __init__(self, store: Store):
        self.wal = store.db.wal
        self.real = self.wal.sync_file
        self.began: list[int] = []
        self.opened = threading.Semaphore(0)
        self.fail = 0
        self.wal.sync_file = self

    def __call__(self) -> None:
        self.began.append(self.wal.conn.total_changes)   # (read-only peek from the thread)
        self.opened.acquire()
        if self.fail:
            self.fail -= 1
            raise OSError(5, "Input/output error")
        self.real()

    def open(self) -> None:
        self.opened.release()


def held_in_a_sync(store: Store, out: Outputs, label: str) -> Gate:
    """A commit, an output after it (held), and the sync that covers it begun (gated)."""
    gate = Gate(store)
    commit(store, 1)
    out.send(label)
    until(lambda: gate.began)
    return gate


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "crs.db", pipelined=True)
    yield s
    s.db.wal.__dict__.pop("sync_file", None)    # no Gate at the close's own sync
    s.close()


def make_outputs(store: Store, idle: bool) -> tuple[Outputs, list, Counter]:
    sent: list = []
    counters: Counter = Counter()
    failures: list = []         # (the controller stops there: `app._store_failed`)
    out = Outputs(lambda: store.db.wal, sent.append, lambda: counters, failures.append,
                  idle=lambda: idle)
    out.failures = failures
    return out, sent, counters


@pytest.fixture
def outputs(store):
    """Outputs whose loop always has other work: every held output's sync runs in a
    native thread (the Gate decides when it ends)."""
    return make_outputs(store, idle=False)


def test_a_pipelined_store_commits_without_a_sync_and_a_default_one_with_it(tmp_path):
    piped = Store(tmp_path / "a.db", pipelined=True)
    plain = Store(tmp_path / "b.db")
    try:
        assert piped.db.execute("PRAGMA synchronous").fetchone()[0] == 1     # NORMAL
        assert plain.db.execute("PRAGMA synchronous").fetchone()[0] == 2     # FULL
        assert plain.db.wal is None
        assert not piped.db.wal.unsynced()          # opened synced
        commit(piped, 1)
        assert piped.db.wal.unsynced()
        piped.db.wal.sync_now()
        assert not piped.db.wal.unsynced()
    finally:
        piped.close()
        plain.close()
    ro = Store(tmp_path / "a.db", read_only=True, pipelined=True)
    try:
        assert ro.db.wal is None                    # a read-only copy never writes
    finally:
        ro.close()


def test_the_sync_is_of_the_wal_file(store, monkeypatch):
    synced = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(os.fstat(fd).st_ino),
                                                     real(fd)))
    commit(store, 1)
    store.db.wal.sync_now()
    assert synced == [os.stat(store.path + "-wal").st_ino]


def test_nothing_waits_when_everything_is_on_disk(store, outputs):
    out, sent, counters = outputs
    out.send("flows")
    assert sent == ["flows"] and counters["store_outputs_held"] == 0


def test_an_answer_alone_syncs_at_once(store, outputs):
    out, _, counters = outputs
    commit(store, 1)
    out.wait()          # nothing held, no sync running: synced here, before it returns
    assert not store.db.wal.unsynced() and counters["store_syncs_inline"] == 1


def test_an_output_leaves_only_after_a_sync_begun_after_its_commit(store, outputs):
    out, sent, counters = outputs
    gate = held_in_a_sync(store, out, "a")      # sync 1 runs (covers commit 1)
    commit(store, 2)                # during sync 1: the loop goes on committing
    out.send("b")
    eventlet.sleep(0.05)
    assert sent == []               # sync 1 has not ended
    gate.open()
    until(lambda: sent == ["a"])
    eventlet.sleep(0.05)
    assert sent == ["a"]            # b's commit came after sync 1 began
    until(lambda: len(gate.began) == 2)
    assert gate.began[1] > gate.began[0]
    gate.open()
    until(lambda: sent == ["a", "b"])
    assert not store.db.wal.unsynced()
    assert counters["store_syncs"] == 2 and counters["store_outputs_held"] == 2
    out.send("c")                   # all on disk again: at once
    assert sent[-1] == "c"


def test_an_answer_waits_for_every_commit_before_it_and_the_flows_held_before_it(
        store, outputs):
    out, sent, _ = outputs
    gate = Gate(store)
    commit(store, 1)
    out.send("flows")
    answered = []
    eventlet.spawn(lambda: (out.wait(), answered.append(list(sent))))
    until(lambda: gate.began)
    eventlet.sleep(0.05)
    assert answered == []
    gate.open()
    until(lambda: answered)
    assert answered == [["flows"]]      # the flows left before the answer


def test_a_failed_sync_is_final_nothing_held_leaves_and_answers_are_refused(store, outputs):
    out, sent, counters = outputs
    gate = held_in_a_sync(store, out, "restrict")
    gate.fail = 1
    gate.open()                         # this sync fails (EIO): its pages' fate is unknown
    until(lambda: out.failures)
    assert counters["store_sync_failed"] == 1 and isinstance(out.failures[0], OSError)
    eventlet.sleep(0.1)
    assert sent == [] and len(gate.began) == 1      # never released, never retried
    assert store.db.wal.unsynced()
    assert out.wait(timeout_s=0.2) is False         # an answer must not tell of it
    out.send("more")
    assert sent == []


def test_an_answer_that_waits_too_long_is_refused(store, outputs):
    out, sent, counters = outputs
    gate = held_in_a_sync(store, out, "flows")
    assert out.wait(timeout_s=0.1) is False and counters["store_answers_timed_out"] == 1
    gate.open()
    until(lambda: sent == ["flows"])
    assert out.wait() is True


def test_the_mark_survives_sqlite_s_counter_wrapping(store):
    wal = store.db.wal
    wal._seen = 2**31 - 1       # SQLite's total_changes is a C int: as if just before wrap
    wal._total = wal.done = 10**12

    class Conn:                 # the connection's counter, read after it wrapped
        total_changes = -2**31 + 4
    wal.conn = Conn()
    assert wal.unsynced() and wal.mark() == 10**12 + 5
    wal.synced(wal.mark())
    assert not wal.unsynced()


def test_opening_a_pipelined_store_syncs_what_an_earlier_process_left(tmp_path, monkeypatch):
    first = Store(tmp_path / "crs.db", pipelined=True)
    commit(first, 1)            # committed, never synced (the process dies here)
    synced = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(os.fstat(fd).st_ino),
                                                     real(fd)))
    second = Store(tmp_path / "crs.db", pipelined=True)
    try:
        assert os.stat(second.path + "-wal").st_ino in synced
        assert not second.db.wal.unsynced()
    finally:
        second.close()
        first.close()


def test_drain_syncs_and_sends_everything_before_the_store_is_replaced(store, outputs):
    out, sent, _ = outputs
    gate = held_in_a_sync(store, out, "a")
    commit(store, 2)
    out.send("b")
    drained = []
    eventlet.spawn(lambda: (out.drain(store.db.wal), drained.append(list(sent))))
    eventlet.sleep(0.05)
    assert drained == []                # waits for the sync in flight first
    gate.open()                         # the sync in flight ends, then drain's own
    gate.open()
    until(lambda: drained)
    assert len(gate.began) == 2 and gate.began[1] > gate.began[0]
    assert drained == [["a", "b"]] and not store.db.wal.unsynced()


def test_on_an_idle_loop_the_sync_runs_on_the_loop_itself_then_the_output_leaves(store):
    out, sent, counters = make_outputs(store, idle=True)
    threads = []
    real = store.db.wal.sync_file
    store.db.wal.sync_file = lambda: (threads.append(threading.get_ident()), real())
    commit(store, 1)
    out.send("isolate")
    assert sent == []                   # held: its commit is not on disk yet
    until(lambda: sent == ["isolate"])
    assert threads == [threading.get_ident()]      # no native thread's hand-off
    assert counters["store_syncs_inline"] == 1 and counters["store_syncs"] == 0
    assert not store.db.wal.unsynced()
    store.db.wal.__dict__.pop("sync_file")


def test_while_the_disk_is_slow_the_loop_never_stands_in_a_sync(store):
    out, sent, counters = make_outputs(store, idle=True)
    where = []
    slow = [0.01]       # one sync of 10 ms or more (the disk's slow phase), then instant

    def sync():
        where.append(threading.get_ident() == MAIN)
        if slow:
            original("time").sleep(slow.pop())
    store.db.wal.sync_file = sync
    for n in range(1, 31):
        commit(store, n)
        out.send(n)
        until(lambda: len(sent) == n)
    # the slow one ran on the idle loop (nothing told it yet), pushing the average over
    # INLINE_MAX_S; the next ones went to the thread while fast ones brought it down, and
    # then the loop took them again
    assert where[0] is True and where[1] is False and where[-1] is True
    back = where.index(True, 1)
    assert all(w is False for w in where[1:back]) and all(where[back:])
    assert counters["store_syncs"] == back - 1 >= 1
    assert out.sync_avg_s < INLINE_MAX_S
    store.db.wal.__dict__.pop("sync_file")


def test_a_failed_sync_on_the_loop_is_final_too(store):
    out, sent, counters = make_outputs(store, idle=True)
    where = []

    def eio():
        where.append(threading.get_ident())
        raise OSError(5, "Input/output error")
    store.db.wal.sync_file = eio
    commit(store, 1)
    out.send("restrict")
    until(lambda: out.failures)
    eventlet.sleep(0.05)
    assert where == [MAIN]              # it failed on the loop, once, and was not retried
    assert sent == [] and counters["store_sync_failed"] == 1
    assert out.wait(timeout_s=0.1) is False
    commit(store, 2)
    out.send("release")                 # nothing after a failed sync ever leaves
    eventlet.sleep(0.05)
    assert sent == [] and where == [MAIN]
    store.db.wal.__dict__.pop("sync_file")


def test_loop_idle_is_false_while_input_waits_for_the_loop():
    a, b = green_socket.socketpair()
    got = []
    reader = eventlet.spawn(lambda: got.append(a.recv(16)))
    eventlet.sleep(0)                   # the reader waits on its socket
    assert loop_idle()
    sleeper = eventlet.spawn(eventlet.sleep, 0)
    assert loop_idle()                  # a greenlet due is the loop's own work, not input
    b.sendall(b"frame")
    assert not loop_idle()              # readable: a frame waits to be handed over
    reader.wait()
    sleeper.wait()
    assert got == [b"frame"] and loop_idle()
    a.close()
    b.close()


def test_with_the_real_check_a_lone_output_syncs_on_the_loop(store):
    sent: list = []
    counters: Counter = Counter()
    out = Outputs(lambda: store.db.wal, sent.append, lambda: counters, lambda e: None)
    commit(store, 1)
    out.send("lone")
    assert sent == []
    until(lambda: sent == ["lone"])
    assert counters["store_syncs_inline"] == 1 and counters["store_syncs"] == 0
    assert not store.db.wal.unsynced()


def test_a_pipelined_store_s_wal_has_its_blocks_from_the_open_and_keeps_to_them(tmp_path):
    """`WalSync.prefill`: the WAL is given real blocks at open, past what SQLite wrote and
    never over it; commits then write inside the file (it does not grow, also across
    automatic checkpoints, after which SQLite rewrites it from the start), and what was
    committed is read back, from a live copy too (a crash: recovery stops at the zeros)."""
    import shutil
    import sqlite3

    from controller.storedb import WAL_PREFILL_BYTES

    store = Store(tmp_path / "crs.db", pipelined=True)
    wal = tmp_path / "crs.db-wal"
    assert wal.stat().st_size == WAL_PREFILL_BYTES
    for n in range(1500):                # ~3,000 pages: past several automatic checkpoints
        commit(store, n)
    store.db.wal.sync_now()
    assert wal.stat().st_size == WAL_PREFILL_BYTES
    crash = tmp_path / "crash"
    crash.mkdir()
    for name in ("crs.db", "crs.db-wal"):     # (no -shm: the index is rebuilt from the WAL)
        shutil.copy(tmp_path / name, crash / name)
    for db in (tmp_path / "crs.db", crash / "crs.db"):
        conn = sqlite3.connect(db)
        assert conn.execute("SELECT COUNT(*) FROM ss_sessions").fetchone()[0] == 1500
        conn.close()
    # frames SQLite wrote are never overwritten: prefill only appends past the end
    before = wal.read_bytes()
    store.db.wal.prefill(WAL_PREFILL_BYTES + 4096)
    after = wal.read_bytes()
    assert after[:len(before)] == before and after[len(before):] == bytes(4096)
    store.db.wal.prefill(1024)                # already larger: nothing written
    assert wal.read_bytes() == after
    store.close()
