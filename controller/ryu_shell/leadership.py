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
from typing import Callable

from eventlet import tpool
from ryu.lib import hub

from controller.lease import Lease, Role
from controller.storedb import Db

log = logging.getLogger("crs.ha")


class Leadership:
    def __init__(self, store: str, node_id: str, ofp_port: int, lease_s: float,
                 take_over: Callable[[int], None], step_down: Callable[[], None]):
        self.node = node_id or f"{socket.gethostname()}:{ofp_port}"
        self.lease = Lease(Db(store), self.node, lease_s)
        self.lease_s = lease_s
        self.take_over, self.step_down = take_over, step_down
        self.leading = False
        self.role = Role(False, 0, None)
        self.changes = 0
        hub.spawn(self._loop)

    def status(self) -> dict:
        r = self.role
        return {"node": self.node, "role": "leader" if self.leading else "standby",
                "generation": r.generation, "leader": r.holder, "lease_s": self.lease_s,
                "changes": self.changes}

    def request_role(self, dp) -> None:
        """Tell one switch who we are now: MASTER (leading) or SLAVE, with the generation."""
        ofp, parser = dp.ofproto, dp.ofproto_parser
        role = ofp.OFPCR_ROLE_MASTER if self.leading else ofp.OFPCR_ROLE_SLAVE
        dp.send_msg(parser.OFPRoleRequest(dp, role, self.role.generation))

    def stale(self) -> None:
        """A switch refused our generation: someone newer leads. Stop now."""
        if self.leading:
            log.warning("%s: a switch refused generation %d as stale: stepping down",
                        self.node, self.role.generation)
            self._lose()

    def _loop(self) -> None:
        while True:
            try:
                role = tpool.execute(self.lease.step)
            except Exception as exc:       # the store is unreachable
                log.warning("%s: lease not renewed: %s", self.node, exc)
                if self.leading and not self.lease.leading():
                    self._lose()
                hub.sleep(self.lease_s / 3)
                continue
            self.role = role
            if role.leader and not self.leading:
                self.leading = True
                self.changes += 1
                log.info("%s: leading (generation %d)", self.node, role.generation)
                self.take_over(role.generation)
            elif not role.leader and self.leading:
                self._lose()
            hub.sleep(self.lease_s / 3)

    def _lose(self) -> None:
        self.leading = False
        self.changes += 1
        log.warning("%s: not leading any more (generation %d, leader %s)", self.node,
                    self.role.generation, self.role.holder)
        self.step_down()
