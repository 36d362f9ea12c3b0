"""The shell's side of several controllers (`ha.enabled`): the lease loop and OpenFlow roles.

Every `lease_s / 3` the controller asks the shared store for the lease (`controller.lease`,
in a native thread: the PostgreSQL driver is not green). The leader is MASTER on every
switch, with the lease's generation as `generation_id`; the others are SLAVE: they hold the
switches' connections, see no packet-ins and may not change flows (the switch refuses it).
On taking over, the new leader loads a fresh core from the store and rebuilds every switch's
tables; on losing the lease (or a switch refusing its generation as stale) it stops at once.
"""
from __future__ import annotations

import logging
import socket
import time
import uuid
from typing import Callable

from eventlet import tpool

from controller.lease import Lease, Role
from controller.ryu_shell.framework import hub
from controller.storedb import Db

log = logging.getLogger("crs.ha")


class Leadership:
    def __init__(self, store: str, node_id: str, ofp_port: int, lease_s: float,
                 take_over: Callable[[int], None], step_down: Callable[[], None],
                 refresh: Callable[[], None] | None = None, refresh_s: float = 1.0,
                 url: str = ""):
        """`refresh`: called every `refresh_s` while standing by (the standby's copy of the
        store); `url`: where operators reach this controller (a standby redirects there)."""
        self.node = node_id or f"{socket.gethostname()}:{ofp_port}"
        # the lease holder is this process, not the name: two processes given one name (a
        # cloned host, a copied configuration) must never both renew one lease
        db = Db(store, deadline_s=lease_s)     # a hung renewal is cut after one lease
        db.migrate()          # the lease table, whoever opens the store first
        self.lease = Lease(db, f"{self.node}/{uuid.uuid4().hex[:12]}", lease_s, url=url)
        self.lease_s, self.url = lease_s, url
        self.take_over, self.step_down = take_over, step_down
        self.refresh, self.refresh_s, self._refreshed = refresh, refresh_s, 0.0
        self.leading = False
        self.role = Role(False, 0, None)
        self.term = 0           # the generation this controller took over under (leading)
        self.changes = 0
        # renewals' timing, on this controller's clock: when the one in flight (if any) was
        # asked, how long the last took, the longest so far (a lease lost to a slow store
        # or a stalled process says which)
        self._asking: float | None = None
        self.renew_ms_last = self.renew_ms_max = 0.0
        self._thread = hub.spawn(self._loop)
        self._watch_thread = hub.spawn(self._watch)

    def stop(self) -> None:
        """End the lease loop (the lease then runs out by itself)."""
        hub.kill(self._thread)
        hub.kill(self._watch_thread)

    def status(self) -> dict:
        r = self.role
        return {"node": self.node, "holder": self.lease.me,
                "role": "leader" if self.leading else "standby",
                "generation": r.generation, "leader": r.holder, "leader_url": r.url,
                "url": self.url, "lease_s": self.lease_s, "changes": self.changes,
                "renew_ms_last": round(self.renew_ms_last, 2),
                "renew_ms_max": round(self.renew_ms_max, 2)}

    def request_role(self, dp) -> None:
        """Tell one switch who we are now: MASTER (leading) or SLAVE, with the generation."""
        ofp, parser = dp.ofproto, dp.ofproto_parser
        role = ofp.OFPCR_ROLE_MASTER if self.leading else ofp.OFPCR_ROLE_SLAVE
        dp.send_msg(parser.OFPRoleRequest(dp, role, self.role.generation))

    @property
    def acting(self) -> bool:
        """Leading, and the lease still valid on our own clock (a renewal may be late)."""
        return self.leading and self.lease.leading()

    def stale(self) -> None:
        """A switch refused our generation: someone newer leads. Stop now, and give the
        lease up (renewing it would take over again and again)."""
        if self.leading:
            log.warning("%s: a switch refused generation %d as stale: stepping down",
                        self.node, self.role.generation)
            self._give_up()

    def _loop(self) -> None:
        while True:
            self._asking = time.monotonic()
            try:
                role = tpool.execute(self._step)
            except Exception as exc:       # the store is unreachable
                self._asking = None
                log.warning("%s: lease not renewed: %s", self.node, exc)
                if self.leading and not self.lease.leading():
                    self._lose()
                hub.sleep(self.lease_s / 3)
                continue
            self._asking = None
            self.role = role
            if role.leader and self.leading and role.generation != self.term:
                # the lease ran out in the store before this renewal reached it, which took
                # it anew (perhaps after someone else held it): what was loaded and the
                # store's fence belong to the old term (every commit would be refused), so
                # this is a new take-over
                log.warning("%s: the lease ran out in the store before its renewal (generation "
                            "%d, now %d): taking over again", self.node, self.term,
                            role.generation)
                self._lose()
            if role.leader and not self.leading:
                self.leading = True
                self.term = role.generation
                self.changes += 1
                log.info("%s: leading (generation %d)", self.node, role.generation)
                try:
                    self.take_over(role.generation)
                except Exception:   # e.g. the store failed while loading: lead nothing
                    log.exception("%s: taking over failed; giving the lease up", self.node)
                    self._give_up()
            elif not role.leader and self.leading:
                self._lose()
            if not self.leading and self.refresh is not None and \
                    time.monotonic() >= self._refreshed + self.refresh_s:
                self._refreshed = time.monotonic()
                try:
                    self.refresh()
                except Exception as exc:    # the store went away: keep the last copy
                    log.warning("%s: standby copy not refreshed: %s", self.node, exc)
            hub.sleep(self.lease_s / 3)

    def _step(self) -> Role:
        """One renewal (in the native thread), timed there: what the store took, answered
        or failed, without this process's own scheduling."""
        t0 = time.monotonic()
        try:
            return self.lease.step()
        finally:
            took = (time.monotonic() - t0) * 1e3
            self.renew_ms_last, self.renew_ms_max = took, max(self.renew_ms_max, took)

    def _watch(self) -> None:
        """Step down the moment the lease runs out on our own clock, even while a renewal
        hangs (a store cut off without a reset answers nothing: the lease loop may wait
        for TCP keepalives for seconds). Before the lease can pass to anyone else."""
        while True:
            hub.sleep(min(0.05, self.lease_s / 10))
            role, now = self.lease.role, time.monotonic()   # (one snapshot: the thread
            if self.leading and not (role.leader and now < role.valid_until):  # renews it)
                log.warning("%s: lease not renewed in time (generation %d): %s", self.node,
                            self.role.generation, self._late(role, now))
                self._lose()

    def _late(self, role: Role, now: float) -> str:
        """Why a lease ran out: the renewal in flight and how long it has waited, or none
        asked (this process did not run its lease loop: a stall, a long blocking call)."""
        asking = self._asking
        head = f"a renewal asked {now - asking:.3f} s ago is unanswered" \
            if asking is not None else \
            "no renewal in flight (the lease loop did not run: a stalled process or a call " \
            "that blocked it)"
        ran_out = f"the lease ran out {now - role.valid_until:.3f} s ago" if role.leader \
            else "the store's last answer: not the leader"
        return (f"{head}; {ran_out}; renewals took {self.renew_ms_last:.1f} ms last, "
                f"{self.renew_ms_max:.1f} ms at most")

    def _give_up(self) -> None:
        """Stop leading and release the lease: the next to ask takes it under a new
        generation (renewing ours would only repeat what just failed)."""
        self._lose()
        try:
            tpool.execute(self.lease.release)
        except Exception:     # the store is gone too: the lease runs out by itself
            pass

    def _lose(self) -> None:
        if not self.leading:
            return
        self.leading = False
        self.changes += 1
        log.warning("%s: not leading any more (generation %d, leader %s)", self.node,
                    self.role.generation, self.role.holder)
        self.step_down()
