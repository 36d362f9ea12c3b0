"""What leaves the controller waits until the decisions before it are on disk (pipelined
sync), while the event loop goes on handling frames and reports.

The rule stays "a decision is on disk before its flows". The store commits without a disk
sync (SQLite synchronous=NORMAL, `storedb.WalSync`); everything the controller sends after
a commit -- flows, frames, posts to agents, RADIUS datagrams, HTTP answers -- waits here for
a sync of the WAL that began after that commit, run in a native thread. Before, the one
event loop stood still in every commit's sync, and no other terminal's frame was read
meanwhile; now the next frames are handled during the sync, and one sync covers every
commit made before it began. Outputs leave in the order they were produced. When no input
waits for the loop (no socket readable: a lone report or frame) and syncs are short (under
`INLINE_MAX_S` on average), the sync runs on the loop itself: the loop would only wait for
it, and the hand-offs to and from a thread (0.2-0.3 ms with their wake-ups on this kind of
VM, far more when the loop's own work holds the GIL the thread needs to return) are saved.
The price: a sync that stalls (the disk's rare spikes of tens of milliseconds) stalls the
loop with it, once, before the average sends the next ones to the thread.

What is sent before its commit on purpose (an EAP Success, `admission.early`) does not come
through here. With a store that syncs in its commit (PostgreSQL, a read-only copy) nothing
waits. A sync that fails keeps everything after it held for good (fail closed), and the
controller stops: restarted, it syncs the store before it says anything (`Store`).
"""
from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Callable

import eventlet.hubs
from eventlet import tpool

from controller.ryu_shell.framework import hub
from controller.storedb import WalSync

log = logging.getLogger("crs.durable")
RETRY_S = 1.0       # after a bug in releasing, the loop goes on after this
WAIT_S = 10.0       # an answer waits this long for the disk, then says it could not
# a held output's sync runs on an idle loop only while syncs take less than this (a moving
# average): in the disk's slow phases (syncs of milliseconds, spikes of tens) the loop must
# not stand still in them, and the thread's hand-offs are small beside them anyway
INLINE_MAX_S = 0.001


class Outputs:
    """Holds outputs (any object `emit` takes) until the commits before them are synced.

    `wal_of()`: the current store's WalSync (None: its commits are durable when they
    return). `emit(bundle)`: sends one bundle. `counters_of()`: the counters to count in.
    `failed(error)`: a sync failed; nothing held leaves any more (the controller stops:
    `app`), and answers waiting get `False` from `wait`. `idle()`: the event loop has nothing
    else ready (`loop_idle`), so a sync may run on it."""

    def __init__(self, wal_of: Callable[[], WalSync | None], emit: Callable[[Any], None],
                 counters_of: Callable[[], Any], failed: Callable[[OSError], None],
                 idle: Callable[[], bool] | None = None):
        self._wal_of, self._emit, self._counters_of = wal_of, emit, counters_of
        self._failed = failed
        self._idle_loop = idle if idle is not None else loop_idle
        self.sync_avg_s = 0.0       # moving average of the disk syncs' own durations
        self._last_disk_s = 0.0
        # (mark at production, when held, bundle)
        self._held: deque[tuple[int, float, Any]] = deque()
        self._waiters: list[tuple[int, Any]] = []        # (mark, hub.Event)
        self._emitting = 0          # bundles taken from `_held` and being sent
        self._wake = hub.Event()
        self._syncing = False
        self._idle = hub.Event()                          # set while no sync runs
        self._idle.set()
        self.error: OSError | None = None
        hub.spawn(self._loop)

    def _clear(self, wal: WalSync | None) -> bool:
        """Nothing committed waits for the disk and nothing held waits to leave."""
        return not self._held and not self._emitting and (wal is None or not wal.unsynced())

    def send(self, bundle: Any) -> None:
        """Send now if nothing committed is unsynced and nothing waits; else hold."""
        wal = self._wal_of()
        if self._clear(wal):
            self._emit(bundle)
            return
        self._held.append((wal.mark() if wal is not None else 0, time.perf_counter(), bundle))
        self._counters_of()["store_outputs_held"] += 1
        self._wake.set()

    def wait(self, timeout_s: float = WAIT_S) -> bool:
        """Until every commit so far is on disk and every output held before this call has
        left (an HTTP answer: it may tell of those decisions). False: not within
        `timeout_s`, or a sync failed (the answer must not tell). Never call it from `emit`."""
        wal = self._wal_of()
        if self._clear(wal):
            return True
        if self.error is not None:
            return False
        if not self._held and not self._emitting and not self._syncing and not self._waiters:
            # nothing else waits for the disk: sync here, without a thread's handoff (a
            # group of reports alone costs what it did when the commit synced)
            return self._sync_here(wal)
        done = hub.Event()
        entry = (wal.mark() if wal is not None else 0, done)
        self._waiters.append(entry)
        self._wake.set()
        done.wait(timeout_s)
        if not done.is_set():
            if entry in self._waiters:
                self._waiters.remove(entry)
            self._counters_of()["store_answers_timed_out"] += 1
            return False
        return self.error is None

    def drain(self, wal: WalSync | None) -> None:
        """Before the store behind `wal` is replaced: sync it here and send what waits
        (the new store's marks do not count the old one's commits)."""
        while self._syncing:
            self._idle.wait()
        if self.error is not None:
            return
        if wal is not None:
            try:
                wal.sync_now()
            except OSError as e:
                self._fail(e)
                return
        self._release(None)

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while (self._held or self._waiters) and self.error is None:
                try:
                    self._step()
                except Exception:   # a bug must not leave outputs held for ever
                    log.exception("releasing held outputs failed")
                    hub.sleep(RETRY_S)

    def _sync_here(self, wal: WalSync) -> bool:
        """Sync on the loop's own thread (it blocks the loop); False if it failed."""
        mark = wal.mark()
        t0 = time.perf_counter()
        try:
            wal.sync_file()
        except OSError as e:
            self._fail(e)
            return False
        wal.synced(mark)
        counters = self._counters_of()
        counters["store_syncs_inline"] += 1
        dt = time.perf_counter() - t0
        counters["time_store_sync_us"] += int(dt * 1e6)
        self._disk(dt)
        return True

    def _disk(self, dt: float) -> None:
        """A sync's duration into the average: on the loop, the disk's own; from the thread,
        capped (`_sync_timed`)."""
        self.sync_avg_s += (dt - self.sync_avg_s) * 0.2

    def _sync_timed(self, wal: WalSync) -> None:
        """The sync, in the native thread, timed there. The time includes waiting for the
        GIL on the way back (up to the 5 ms switch interval while the loop runs Python), so
        it counts for at most 2 x INLINE_MAX_S: a busy loop alone does not keep the next
        idle moments' syncs off the loop, while a slow disk's syncs on the loop count in
        full (no GIL to wait for there)."""
        t0 = time.perf_counter()
        wal.sync_file()
        self._last_disk_s = min(time.perf_counter() - t0, 2 * INLINE_MAX_S)

    def _step(self) -> None:
        wal = self._wal_of()
        if wal is not None and wal.unsynced():
            if self.sync_avg_s < INLINE_MAX_S and self._idle_loop():
                # nothing else to do meanwhile, and syncs are short: no thread's hand-off
                if self._sync_here(wal):
                    self._release(wal)
                return
            mark = wal.mark()
            counters = self._counters_of()
            t0 = time.perf_counter()
            self._syncing = True
            self._idle.clear()
            try:
                tpool.execute(self._sync_timed, wal)
            except OSError as e:
                self._fail(e)
                return
            finally:
                self._syncing = False
                self._idle.set()
            if wal is not self._wal_of():     # replaced meanwhile (drained already)
                return
            wal.synced(mark)
            counters["store_syncs"] += 1
            counters["time_store_sync_us"] += int((time.perf_counter() - t0) * 1e6)
            self._disk(self._last_disk_s)
        self._release(wal)

    def _fail(self, error: OSError) -> None:
        """A failed sync: whether those commits are on disk is unknown, for good. Nothing
        held leaves; answers waiting are told no; the controller is told."""
        if self.error is not None:
            return
        self.error = error
        self._counters_of()["store_sync_failed"] += 1
        log.critical("the store's disk sync failed (%s): %d outputs held will not be sent",
                     error, len(self._held))
        for _, ev in self._waiters:
            ev.set()
        self._waiters = []
        self._failed(error)

    def _release(self, wal: WalSync | None) -> None:
        """Send, in order, what the syncs so far cover; then wake the answers they cover.
        `wal` None: everything."""
        done = wal.done if wal is not None else None
        counters = self._counters_of()
        while self._held and (done is None or self._held[0][0] <= done):
            _, held_at, bundle = self._held.popleft()
            counters["time_store_held_us"] += int((time.perf_counter() - held_at) * 1e6)
            self._emitting += 1
            try:
                self._emit(bundle)
            except Exception:
                log.exception("sending held outputs failed")
            finally:
                self._emitting -= 1
        keep = []
        for mark, ev in self._waiters:
            if done is None or mark <= done:
                ev.set()
            else:
                keep.append((mark, ev))
        self._waiters = keep


def loop_idle() -> bool:
    """(On the hub's thread only: another thread would see a hub of its own, always idle.)
    No input waits for the event loop: no file descriptor it watches (OpenFlow
    connections, EAPOL sockets, report connections) is readable or writable, asked of the
    hub's own poller with a zero timeout (level-triggered: nothing is consumed). Greenlets
    already due are not counted: they are the loop's own work, which would hold the GIL a
    native thread needs to finish its sync anyway, and one of them is often the reader that
    just handed the frame over, yielding before it reads again. Work already read into the
    process (events queued for the app) is not counted either: the hub hands ready input
    over before it runs the greenlet that asks, so under load it is the next input, still
    in the kernel, that sends the sync to the thread. A hub without such a poller
    (not eventlet's poll or epoll hub) counts as busy: the thread is used."""
    poller = getattr(eventlet.hubs.get_hub(), "poll", None)
    if poller is None or not hasattr(poller, "poll"):
        return False
    return not poller.poll(0)
