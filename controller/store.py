"""The store (SQLite or PostgreSQL, `controller.storedb`): sessions, terminals, decisions,
seals, SCI history, replay state.

The controller commits a decision here before it sends the decision's flows, and rebuilds
every switch's admission and security flows from here on (re)connect and after a restart,
so containment survives a killed controller. It also implements the EAC's `SessionStore`.
Secrets (session keys) are stored because the EAC must answer key inquiries after a
restart; the database file is created with mode 0600.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from controller import metrics
from controller.records import Binding, SpRecord, SsRecord, TerminalRecord
from controller.storedb import NOW, Db


class Store:
    def __init__(self, path: str | Path, read_only: bool = False, deadline_s: float = 10.0,
                 pipelined: bool = False):
        """`path`: an SQLite file (created 0600), or a `postgresql://` URL (a database
        several controllers share; see controller.storedb). `read_only`: a standby's copy,
        on a schema someone else brought up to date; the engine refuses its writes.
        `deadline_s`: longest wait for PostgreSQL to answer one call. `pipelined` (SQLite):
        commits return before their disk sync, which the caller runs (`db.wal`) and waits
        for before anything that depends on them leaves the process."""
        self.path, self.read_only = str(path), read_only
        self.db = Db(self.path, read_only, deadline_s, pipelined)
        self._depth = 0          # open batches (nested ones join the outermost)
        self._keys: dict[str, tuple[bytes, float]] = {}   # identity -> (report key, expires)
        # writes undone so far (a rolled-back batch or savepoint): what a caller remembers
        # of the rows it wrote is stale once this moves
        self.undone = 0
        # several controllers: (holder, generation) of the lease this store writes under
        self.fence: tuple[str, int] | None = None
        if not read_only:
            self.db.migrate()
            if self.db.wal is not None:
                self.db.wal.sync_all()
        up = self.db.upsert
        self._sql = {
            "ss": up("ss_sessions", ("isr_id", "identity", "grp", "sp_root", "expires"),
                     "isr_id"),
            "sp": up("sp_sessions", ("iac_id", "sp_name", "session_key", "expires"), "iac_id"),
            "terminal": up("terminals", ("tid", "number", "state", "decision", "updated"),
                           "tid"),
            "seal": up("seals", ("grp", "sealed", "updated"), "grp"),
            "replay": up("replay", ("sender", "seq"), "sender"),
            "seen": up("replay", ("sender", "seq", "at"), "sender"),
            "evidence": up("evidence", ("key", "value"), "key"),
        }

    def close(self) -> None:
        self.db.close()

    def _write(self, sql: str, params: Any = ()) -> None:
        """A write. Outside a batch, with several controllers (`fence` set), it becomes a
        fenced transaction of its own: a deposed leader's late write lands nowhere."""
        if self.fence is not None and self._depth == 0:
            with self.batch():
                self.db.write(sql, params)
        else:
            self.db.write(sql, params)

    # --- EAC SessionStore protocol ----------------------------------------------------

    def put_ss(self, rec: SsRecord) -> None:
        self._write(self._sql["ss"],
                        (rec.isr_id, rec.identity, rec.group, rec.sp_root, rec.expires))

    def get_ss(self, isr_id: str) -> SsRecord | None:
        row = self.db.execute("SELECT * FROM ss_sessions WHERE isr_id=?", (isr_id,)).fetchone()
        return SsRecord(*row) if row else None

    def drop_ss(self, isr_id: str) -> None:
        self._write("DELETE FROM ss_sessions WHERE isr_id=?", (isr_id,))

    def put_sp(self, rec: SpRecord) -> None:
        self._write(self._sql["sp"],
                        (rec.iac_id, rec.sp_name, rec.session_key, rec.expires))

    def get_sp(self, iac_id: str) -> SpRecord | None:
        row = self.db.execute("SELECT * FROM sp_sessions WHERE iac_id=?", (iac_id,)).fetchone()
        return SpRecord(*row) if row else None

    def purge(self, now: float) -> int:
        """Forget records expired for an hour (kept so refusals can say 'expired')."""
        n = self.db.execute("DELETE FROM ss_sessions WHERE expires + 3600 < ?", (now,)).rowcount
        n += self.db.execute("DELETE FROM sp_sessions WHERE expires + 3600 < ?", (now,)).rowcount
        return n

    # --- admission bindings -------------------------------------------------------------

    def binding_number(self, identity: str) -> int:
        """A stable small number per identity: the cookie value of its table-0 flows."""
        row = self.db.execute("SELECT number FROM bindings WHERE identity=?",
                              (identity,)).fetchone()
        if row:
            return row[0]
        row = self.db.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM bindings").fetchone()
        self.db.execute("INSERT INTO bindings (identity, number) VALUES (?, ?)",
                        (identity, row[0]))
        return row[0]

    def put_binding(self, identity: str, **fields: Any) -> int:
        self._keys.pop(identity, None)
        number = self.binding_number(identity)
        cols = ", ".join(f"{k}=?" for k in fields)
        self._write(f"UPDATE bindings SET {cols} WHERE identity=?",
                        (*fields.values(), identity))
        return number

    def crs_key(self, identity: str, now: float) -> bytes | None:
        """The report key of an identity's current session (None: none, or expired). Kept
        in memory once read: only this process changes bindings while it acts (one
        controller, or the leader of several), and every change goes through `put_binding`
        or `drop_binding`, which forget it. Unknown identities are not remembered (a
        terminal could fill memory with invented ones)."""
        hit = self._keys.get(identity)
        if hit is None:
            row = self.db.execute("SELECT crs_key, expires FROM bindings WHERE identity=? "
                                  "AND dpid IS NOT NULL AND crs_key IS NOT NULL",
                                  (identity,)).fetchone()
            if row is None:
                return None
            hit = self._keys[identity] = (bytes(row[0]), row[1] or 0.0)
        return hit[0] if hit[1] > now else None

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A part of the open batch that a failure undoes alone (the exception goes on).
        Its writes reach the server at its end, so their failure is this part's."""
        name = f"s{self._depth}"
        self.db.write(f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield
            self.db.write(f"RELEASE {name}")
            self.db.flush()
        except BaseException:
            self.undone += 1
            self.db.discard()
            self._keys.clear()      # it may hold a key read inside what is undone
            self.db.execute(f"ROLLBACK TO {name}")
            self.db.execute(f"RELEASE {name}")
            raise
        finally:
            self._depth -= 1

    def batch(self) -> "Batch":
        """One transaction (one disk sync) for the writes of one event. Batches nest: an
        inner one joins the outer transaction, which commits once at its end."""
        return Batch(self)

    def drop_binding(self, identity: str) -> None:
        """The session ended: keep the number (stable cookies), forget the rest."""
        self._keys.pop(identity, None)
        self._write("UPDATE bindings SET dpid=NULL, port=NULL, mac=NULL, isr_id=NULL, "
                        "crs_key=NULL, expires=NULL, ip=NULL WHERE identity=?", (identity,))

    _SELECT = ("SELECT identity, number, grp, dpid, port, mac, isr_id, crs_key, method, start, "
               "expires, ip FROM bindings WHERE dpid IS NOT NULL")

    def bindings(self, now: float | None = None) -> Iterator[Binding]:
        """Active bindings (unexpired sessions) with their location."""
        now = time.time() if now is None else now
        for row in self.db.execute(self._SELECT + " AND expires > ?", (now,)).fetchall():
            yield Binding(*row)

    def expired_bindings(self, now: float) -> list[Binding]:
        """Bindings whose session has expired but that were never revoked (e.g. restored
        after a controller restart, when no authenticator state knew them)."""
        rows = self.db.execute(self._SELECT + " AND expires <= ?", (now,)).fetchall()
        return [Binding(*r) for r in rows]

    def binding(self, identity: str) -> Binding | None:
        """One identity's binding, expired or not (None when it has none)."""
        row = self.db.execute(self._SELECT + " AND identity=?", (identity,)).fetchone()
        return Binding(*row) if row else None

    def bindings_at(self, dpid: int, port: int, mac: str) -> list[Binding]:
        """Bindings of a (switch, port, MAC), expired or not: what a revocation removes."""
        rows = self.db.execute(self._SELECT + " AND dpid=? AND port=? AND mac=?",
                               (dpid, port, mac)).fetchall()
        return [Binding(*r) for r in rows]

    # --- SCS terminals and decisions -----------------------------------------------------

    def put_terminal(self, tid: str, number: int, state: dict[str, Any] | str,
                     decision: dict[str, Any] | str | None) -> None:
        """Commit a terminal's SCS state and current decision (before its flows are sent);
        either may come as JSON text already. A steady report's time kept beside the
        replay counter (`put_seen`) is older than this row from now on: it is cleared, so
        that a time read back with the row was always written after it."""
        self._write(self._sql["terminal"],
                    (tid, number, state if isinstance(state, str) else json.dumps(state),
                     decision if isinstance(decision, str) else json.dumps(decision),
                     time.time()))
        self._write("UPDATE replay SET at = NULL WHERE sender = ? AND at IS NOT NULL", (tid,))

    def put_seen(self, tid: str, seq: int, at: float) -> None:
        """A report that changed nothing of the terminal's row but its time and sequence
        number: only those, in the narrow replay row (`terminals()` reads them back)."""
        self._write(self._sql["seen"], (tid, seq, at))

    def terminals(self) -> list[TerminalRecord]:
        """Each terminal's row, its last report's time taken from the replay row when a
        steady report (`put_seen`) came after the row was written: `put_terminal` clears
        it, and only a row with a last report is followed by steady ones."""
        rows = self.db.execute("SELECT t.tid, t.number, t.state, t.decision, r.at "
                               "FROM terminals t LEFT JOIN replay r ON r.sender = t.tid "
                               "ORDER BY t.number").fetchall()
        out = []
        for tid, number, state, decision, at in rows:
            st = json.loads(state)
            if at is not None:
                st["last_report"] = at
            out.append(TerminalRecord(tid, number, st, json.loads(decision)))
        return out

    def put_seal(self, group: str, sealed: bool) -> None:
        self._write(self._sql["seal"], (group, int(sealed), time.time()))

    def sealed_groups(self) -> list[str]:
        return [g for (g,) in self.db.execute("SELECT grp FROM seals WHERE sealed=1")]

    def add_sci(self, tid: str, at: float, body: dict[str, Any] | str) -> None:
        """One reported SCI (`body` as a dict or as JSON text already)."""
        self._write("INSERT INTO sci VALUES (?,?,?)",
                    (tid, at, body if isinstance(body, str) else json.dumps(body)))

    def put_replay(self, sender: str, seq: int) -> None:
        self._write(self._sql["replay"], (sender, seq))

    def replay(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT sender, seq FROM replay").fetchall())

    def put_evidence(self, state: dict[str, Any]) -> None:
        """Correlation evidence (accusations, scan flags, with their times): an isolation
        based on it must survive a restart like any other decision."""
        self._write(self._sql["evidence"], ("correlation", json.dumps(state)))

    def evidence(self) -> dict[str, Any]:
        row = self.db.execute("SELECT value FROM evidence WHERE key='correlation'").fetchone()
        return json.loads(row[0]) if row else {}

    def add_policy(self, version: int, source: str) -> None:
        self._write("INSERT INTO policies VALUES (?,?,?)", (version, source, time.time()))


# A leader's transaction commits only while it still holds an unexpired lease under its
# generation: the row lock holds off a takeover until the commit is done, and a deposed
# leader whose commit arrives late (a partition that heals) divides by zero and rolls back
# instead of writing over its successor's decisions. The lock is FOR KEY SHARE and the
# generation is in a unique index (storedb migration 6): a takeover changes a key column
# and waits for it; the leader's renewal changes none and does not (with FOR SHARE, a
# renewal queued behind every commit in flight, then flushed the WAL itself; it still needs
# its own flush, which PostgreSQL may now group with theirs).
FENCE = ("SELECT 1 / (SELECT COUNT(*) FROM (SELECT 1 FROM leader WHERE name = 'network' "
         "AND holder = ? AND generation = ? AND expires > " + NOW["postgresql"] +
         " FOR KEY SHARE) AS held)::INT")


class Batch:
    def __init__(self, store: Store):
        self.store = store

    def __enter__(self) -> None:
        db = self.store.db
        if self.store._depth == 0:
            db.defer(True)          # the writes of the batch go together (PostgreSQL)
            db.write("BEGIN")
        self.store._depth += 1

    def __exit__(self, exc_type, *_: Any) -> None:
        self.store._depth -= 1
        if self.store._depth:
            return
        db = self.store.db
        try:
            if exc_type:
                self.store.undone += 1
                db.discard()
                self.store._keys.clear()
                db.execute("ROLLBACK")
            else:
                t0 = time.perf_counter()
                if self.store.fence is not None:
                    db.write(FENCE, self.store.fence)
                db.write("COMMIT")
                db.flush()
                metrics.observe("store_commit", time.perf_counter() - t0)
        except BaseException:
            self.store.undone += 1
            if db.in_transaction:   # a write failed at the commit: nothing of it stays
                db.discard()
                self.store._keys.clear()
                db.execute("ROLLBACK")
            raise
        finally:
            db.defer(False)
