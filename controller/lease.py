"""Who leads the network when several controllers share a PostgreSQL store: a lease row.

One row per network: holder, generation, expiry, all on the database's clock. A controller
that holds the lease renews it (same generation); when it has expired, the next to ask takes
it and the generation goes up by one. The generation is what the leader sends switches as
OpenFlow 1.3 `generation_id` with its MASTER role request, so a deposed leader that comes
back with an older one is refused by the switches themselves (fencing), whatever it believes.

A leader that cannot renew steps down on its own clock before the lease can have passed to
someone else: it counts its lease from *before* it asked (never from the answer), so a slow
answer only shortens it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from controller.storedb import NOW, Db

NAME = "network"


@dataclass(frozen=True)
class Role:
    leader: bool
    generation: int
    holder: str | None          # who holds the lease (None: nobody, or unknown)
    valid_until: float = 0.0    # this controller's monotonic clock: lead until then
    url: str | None = None      # where operators reach the holder's REST API


class Lease:
    def __init__(self, db: Db, me: str, lease_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, url: str = ""):
        if lease_s <= 0:
            raise ValueError("lease_s must be > 0")
        self.db, self.me, self.lease_s, self.clock, self.url = db, me, lease_s, clock, url
        now = NOW[db.dialect]
        # one statement: atomic on both engines. Ours and valid: renew (same generation);
        # expired or never held: take it (generation + 1); anyone else's and valid: no row.
        self._take = (
            f"UPDATE leader SET generation = CASE WHEN holder = ? AND expires > {now} "
            f"THEN generation ELSE generation + 1 END, holder = ?, expires = {now} + ?, url = ? "
            f"WHERE name = ? AND (holder IS NULL OR holder = ? OR expires <= {now}) "
            f"RETURNING generation")
        self.role = Role(False, 0, None)

    def step(self) -> Role:
        """Ask for (or renew) the lease once; the role this controller has now. A database
        error keeps the lease only while it is still valid on our own clock."""
        asked = self.clock()
        try:
            self.db.execute("INSERT INTO leader (name, holder, generation, expires) "
                            "VALUES (?, NULL, 0, 0) ON CONFLICT DO NOTHING", (NAME,))
            row = self.db.execute(self._take, (self.me, self.me, self.lease_s, self.url,
                                               NAME, self.me)).fetchone()
            if row is not None:
                self.role = Role(True, int(row[0]), self.me, asked + self.lease_s, self.url)
            else:
                holder, gen, url, live = self.db.execute(
                    f"SELECT holder, generation, url, expires > {NOW[self.db.dialect]} "
                    "FROM leader WHERE name = ?", (NAME,)).fetchone()
                # an expired lease names nobody (the last holder may be dead)
                self.role = Role(False, int(gen), holder if live else None,
                                 url=url if live else None)
        except Exception:      # the store is unreachable: lead only while the lease lasts
            r = self.role
            if r.leader and self.clock() >= r.valid_until:
                self.role = Role(False, r.generation, None)
            raise
        return self.role

    def leading(self) -> bool:
        """Whether this controller may act as leader now (its lease has not run out)."""
        return self.role.leader and self.clock() < self.role.valid_until

    def release(self) -> None:
        """Give the lease up at once (a clean stop): the next controller need not wait."""
        if self.role.leader:
            self.db.execute("UPDATE leader SET expires = 0 WHERE name = ? AND holder = ?",
                            (NAME, self.me))
            self.role = Role(False, self.role.generation, None)
