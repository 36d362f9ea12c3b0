"""Where the store's SQL runs: SQLite (the embedded default, a file) or PostgreSQL (shared by
several controllers, `postgresql://...`), behind one small interface.

The store writes one SQL dialect, the common part of both: `?` placeholders (turned into
`%s` for PostgreSQL), `INSERT ... ON CONFLICT (key) DO UPDATE` for upserts, explicit
BEGIN / COMMIT / SAVEPOINT, and column types from `TYPES`. The schema is versioned in the
`meta` table; `migrate` brings any database to the current version, step by step.
"""
from __future__ import annotations

import os
import sqlite3
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 6
# a pipelined store's WAL is given this many bytes of real blocks at open (`WalSync.prefill`):
# twice what SQLite's automatic checkpoint lets it hold (1000 pages of 4 KiB + headers)
WAL_PREFILL_BYTES = 8 << 20
TYPES = {"sqlite": {"BLOB": "BLOB", "REAL": "REAL", "INT": "INTEGER"},
         "postgresql": {"BLOB": "BYTEA", "REAL": "DOUBLE PRECISION", "INT": "BIGINT"}}

# version 1: the first schema; every later version is a list of statements
BASE = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS ss_sessions (
    isr_id TEXT PRIMARY KEY, identity TEXT, grp TEXT, sp_root {BLOB}, expires {REAL});
CREATE TABLE IF NOT EXISTS sp_sessions (
    iac_id TEXT PRIMARY KEY, sp_name TEXT, session_key {BLOB}, expires {REAL});
CREATE TABLE IF NOT EXISTS bindings (
    identity TEXT PRIMARY KEY, number {INT} UNIQUE, grp TEXT, dpid {INT}, port {INT},
    mac TEXT, isr_id TEXT, crs_key {BLOB}, method TEXT, start {REAL}, expires {REAL});
CREATE TABLE IF NOT EXISTS terminals (
    tid TEXT PRIMARY KEY, number {INT} UNIQUE, state TEXT, decision TEXT, updated {REAL});
CREATE TABLE IF NOT EXISTS seals (grp TEXT PRIMARY KEY, sealed {INT}, updated {REAL});
CREATE TABLE IF NOT EXISTS sci (tid TEXT, at {REAL}, body TEXT);
CREATE TABLE IF NOT EXISTS replay (sender TEXT PRIMARY KEY, seq {INT});
CREATE TABLE IF NOT EXISTS policies (version {INT}, source TEXT, loaded {REAL});
CREATE TABLE IF NOT EXISTS evidence (key TEXT PRIMARY KEY, value TEXT);
"""
MIGRATIONS: dict[int, list[str]] = {
    2: ["ALTER TABLE bindings ADD COLUMN ip TEXT"],   # bindings pin an IPv4 address
    3: ["CREATE TABLE IF NOT EXISTS leader (name TEXT PRIMARY KEY, holder TEXT, "
        "generation {INT}, expires {REAL})"],        # several controllers: who leads
    4: ["ALTER TABLE leader ADD COLUMN url TEXT"],   # where operators reach the leader
    # a steady report's time, beside its sequence number (the terminal row unchanged)
    5: ["CREATE TABLE IF NOT EXISTS replay (sender TEXT PRIMARY KEY, seq {INT})",
        "ALTER TABLE replay ADD COLUMN at {REAL}"],
    # the generation a key column (PostgreSQL): a takeover, which changes it, waits for a
    # leader's commit in flight (`store.FENCE`), the leader's own renewal does not
    6: ["CREATE UNIQUE INDEX IF NOT EXISTS leader_generation ON leader (name, generation)"],
}
MIGRATION_LOCK = 0x637273_5343      # PostgreSQL advisory lock key: "crsSC(hema)"
# the database's clock in seconds since the epoch (leases are timed by it, so controllers
# on hosts whose clocks differ still agree)
NOW = {"sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
       "postgresql": "EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION"}


class _Deadlines:
    """Cuts a PostgreSQL call that has waited longer than its deadline.

    A server that stops answering without resetting the connection (a partition, a frozen
    relay) would block the caller until TCP gives up, and the controller's event loop with
    it: no step-down, no REST. A native thread (never a green one: it must run while the
    event loop is blocked) shuts the connection's socket down past the deadline; the call
    fails with a connection error, like any broken connection, and is retried on a new one."""

    def __init__(self) -> None:
        self.calls: dict[int, tuple[float, int]] = {}     # id(db) -> (deadline, socket fd)
        self._thread: Any = None

    def watch(self, db: "Db", seconds: float) -> None:
        if self._thread is None:
            threading, real_time = _real("threading"), _real("time")
            self._lock = threading.Lock()
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            args=(real_time.sleep,), name="store-deadlines")
            self._thread.start()
        # (eventlet leaves time.monotonic alone; it patches sleep and threads)
        self.calls[id(db)] = (time.monotonic() + seconds, db.conn.fileno())

    def done(self, db: "Db") -> None:
        if self._thread is None:
            return
        with self._lock:        # after this, the call's descriptor is never touched again
            self.calls.pop(id(db), None)

    def _run(self, sleep: Any) -> None:
        import socket
        while True:
            sleep(0.02)
            now = time.monotonic()
            for key, (deadline, fd) in list(self.calls.items()):
                if now < deadline:
                    continue
                with self._lock:    # still that call (its descriptor not closed, reused)
                    if self.calls.get(key) != (deadline, fd):
                        continue
                    self.calls.pop(key, None)
                    try:
                        with socket.socket(fileno=os.dup(fd)) as s:
                            s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass


def _real(module: str) -> Any:
    """A module as it was before eventlet patched it (the controller runs under eventlet).
    Called from the thread that uses the store, never from the deadline thread: importing
    there could race an import of eventlet itself."""
    import importlib
    import sys
    original = getattr(sys.modules.get("eventlet.patcher"), "original", None)
    return original(module) if original is not None else importlib.import_module(module)


DEADLINES = _Deadlines()


class WalSync:
    """Makes an SQLite file's commits durable after the fact (synchronous=NORMAL).

    A commit in WAL mode appends its pages to the -wal file; with NORMAL it returns without
    syncing it. One `fdatasync` of that file that *begins after* a commit has returned makes
    that commit durable: its pages are either still in the WAL (synced now) or were copied
    into the database by a checkpoint, which SQLite syncs before it reuses the WAL. So the
    sync can run in a native thread while the event loop goes on committing; it covers every
    commit made before it began (`mark`), and a later sync covers the later ones.

    A sync that fails is final (`failed`): after an EIO, Linux marks the pages it could not
    write clean, so a retry would succeed without them on disk (PostgreSQL stops for the same
    reason). `mark()` and `synced()` run on the thread that owns the connection, never inside
    a transaction; `sync_file()` on any thread (it touches no SQLite state), one at a time."""

    def __init__(self, conn: sqlite3.Connection, target: str):
        self.conn, self.path = conn, target + "-wal"
        self._fd: int | None = None
        self._seen = conn.total_changes     # SQLite's counter (a C int: it wraps)
        self._total = 0                     # rows changed on this connection, never wraps
        self.done = 0                       # `_total` up to the last sync that ended
        self.failed: OSError | None = None

    def mark(self) -> int:
        """Rows changed so far on this connection (a commit's rows are counted by the time
        it returns; a rolled-back change is counted too, which costs one spare sync)."""
        seen = self.conn.total_changes
        if seen != self._seen:
            self._total += (seen - self._seen) & 0xFFFFFFFF
            self._seen = seen
        return self._total

    def unsynced(self) -> bool:
        """Some commit (or autocommitted write) is not known to be on disk yet."""
        return self.failed is not None or self.mark() != self.done

    def synced(self, mark: int) -> None:
        """A sync that began at `mark` has ended."""
        if mark > self.done and self.failed is None:
            self.done = mark

    def sync_file(self) -> None:
        """fdatasync the WAL (blocking; any thread); OSError if it fails, now or before."""
        if self.failed is not None:
            raise self.failed
        try:
            fd = self._fd
            if fd is None or os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                # (a connection keeps the WAL: a new one means every connection closed it)
                self._fd = None
                if fd is not None:
                    os.close(fd)
                fd = self._fd = os.open(self.path, os.O_RDONLY)
                _sync_dir(self.path)        # the WAL's name must survive a power cut too
            os.fdatasync(fd)
        except OSError as e:
            self.failed = e
            raise

    def sync_all(self) -> None:
        """At open: what any earlier process committed (perhaps never synced: it may have
        died before its sync) on disk before anything is said about it; and the WAL's
        blocks allocated (`prefill`)."""
        fd = os.open(self.path[:-4], os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if os.path.exists(self.path):       # (none yet: nothing was ever committed to it)
            try:        # under SQLite's write lock: no other connection appends a frame
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:    # (held elsewhere too long: only speed lost)
                pass
            else:
                try:
                    self.prefill()
                finally:
                    self.conn.execute("COMMIT")
            self.sync_file()
        self.synced(self.mark())

    def prefill(self, size: int = WAL_PREFILL_BYTES) -> None:
        """Zeros appended past the WAL's end, up to `size`, written and synced once: the
        commits after it then write into blocks the file has, and SQLite rewrites the file
        from its start after each checkpoint (no journal_size_limit), so a commit's
        `fdatasync` flushes data alone. Into new blocks, it also commits the filesystem's
        journal (ext4: the new size and extents), by a kernel thread that on a busy
        2-vCPU machine waited milliseconds for a CPU: 2.6-2.9 ms a sync against 0.16-0.21
        with the blocks in place (docs/benchmarks.md, 2026-12-02). Nothing SQLite wrote
        is touched, and zeros are never a valid frame (its salt and checksum fail), so
        recovery after a crash stops where the real frames end, as it does anyway."""
        fd = os.open(self.path, os.O_WRONLY)
        try:
            end = os.fstat(fd).st_size
            if end >= size:
                return
            zeros = bytes(1 << 20)
            while end < size:
                end += os.pwrite(fd, zeros[:size - end], end)
            os.fsync(fd)
        finally:
            os.close(fd)

    def sync_now(self) -> None:
        """Every commit so far on disk, on this thread."""
        mark = self.mark()
        if mark != self.done:
            self.sync_file()
            self.synced(mark)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _sync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


class Db:
    """One connection, autocommit (the store opens its own transactions).

    Writes inside a transaction (`write`, once `defer(True)`) wait on PostgreSQL until the
    next read, savepoint end or commit, and then go in one round trip (pipeline mode): a
    report's five or six statements cost one exchange with the server instead of one each.
    SQLite, in process, runs them at once."""

    def __init__(self, target: str | Path, read_only: bool = False,
                 deadline_s: float = 10.0, pipelined: bool = False):
        """`read_only`: the engine itself refuses every write on this connection (a
        standby's copy of the shared store must never change it). `deadline_s`: longest
        wait for PostgreSQL's answer to one call (`_Deadlines`). `pipelined` (an SQLite
        file only): a commit returns before it is on disk, and the caller makes it durable
        durable with `wal` (`WalSync`), away from the thread that goes on committing."""
        target = str(target)
        self.target, self.read_only, self.deadline_s = target, read_only, deadline_s
        self._pipe: Any = None          # PostgreSQL pipeline while deferring writes
        self.wal: WalSync | None = None
        self.dialect = "postgresql" if is_postgres(target) else "sqlite"
        if self.dialect == "postgresql":
            self.conn: Any = self._connect()
            self._sql: dict[str, str] = {}
        else:
            if target != ":memory:":
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                if not os.path.exists(target):     # secrets inside: never readable by others
                    os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o600))
            self.conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            if pipelined and target != ":memory:" and not read_only:
                # commits go to the WAL unsynced; what depends on them waits for a
                # `WalSync.sync_file` begun after them (the controller: `ryu_shell.durable`)
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.wal = WalSync(self.conn, target)
            else:
                # a decision is on disk before its flows (PostgreSQL: synchronous_commit=on)
                self.conn.execute("PRAGMA synchronous=FULL")
            if read_only:
                self.conn.execute("PRAGMA query_only=ON")

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        """Run one statement now and return its cursor (results ready: a write waiting
        before it is sent with it, and its error comes out here)."""
        if self.dialect == "postgresql":
            if self._pipe is not None:
                cur = self.conn.execute(self._pg(sql), tuple(params))
                self.flush()
                return cur
            if self.conn.broken or self.conn.closed:
                self._reconnect()       # the server restarted or the link came back
            DEADLINES.watch(self, self.deadline_s)
            try:
                return self.conn.execute(self._pg(sql), tuple(params))
            finally:
                DEADLINES.done(self)
        return self.conn.execute(sql, tuple(params))

    def write(self, sql: str, params: Iterable[Any] = ()) -> None:
        """A statement whose result nobody reads: while deferring (PostgreSQL) it waits for
        the next `flush`, and its error, if any, comes out there. Else it runs now."""
        if self._pipe is not None:
            self._writer.execute(self._pg(sql), tuple(params))
        else:
            self.execute(sql, params)

    def defer(self, on: bool) -> None:
        """Start or stop deferring writes (PostgreSQL's pipeline mode: statements go out
        together, prepared, and one synchronisation waits for all of them)."""
        if self.dialect != "postgresql" or on == (self._pipe is not None):
            return
        if on:
            if self.conn.broken or self.conn.closed:
                self._reconnect()
            self._stack = ExitStack()
            self._pipe = self._stack.enter_context(self.conn.pipeline())
            self._writer = self.conn.cursor()   # one cursor for results nobody reads
        else:
            stack, self._pipe = self._stack, None
            try:
                if not (self.conn.broken or self.conn.closed):
                    DEADLINES.watch(self, self.deadline_s)
                stack.close()           # sends what waits; its error comes out here
            except Exception:
                if not (self.conn.broken or self.conn.closed):
                    raise               # (a lost connection is already being reported)
            finally:
                DEADLINES.done(self)

    def flush(self) -> None:
        """Send the waiting writes and wait for their results (one round trip). On an
        error the statements after the failing one did not run, and the open transaction
        is aborted: the caller rolls back."""
        if self._pipe is None:
            return
        if self.conn.broken or self.conn.closed:
            # the transaction these belong to died with the connection: never replay its
            # tail on a new one (it would commit half of it)
            import psycopg
            raise psycopg.OperationalError("the store's connection was lost in a transaction")
        DEADLINES.watch(self, self.deadline_s)
        try:
            self._pipe.sync()
        finally:
            DEADLINES.done(self)

    def discard(self) -> None:
        """Settle the waiting writes before a rollback: whatever they did is undone by it,
        and an error they meet is the one already being handled."""
        if self._pipe is not None:
            try:
                self._pipe.sync()
            except Exception:
                pass

    def _pg(self, sql: str) -> str:
        pg = self._sql.get(sql)
        if pg is None:
            pg = self._sql[sql] = sql.replace("?", "%s")
        return pg

    def _reconnect(self) -> None:
        """A new connection in place of a broken one (what was open on it is lost: the
        caller's transaction failed with the error that broke it)."""
        try:
            self.conn.close()
        except Exception:
            pass
        self.conn = self._connect()

    def _connect(self) -> Any:
        """A PostgreSQL connection that gives up instead of hanging: the controller waits
        on it (connect 2 s, a statement 5 s, a dead peer found by TCP keepalives)."""
        import psycopg
        ro = " -c default_transaction_read_only=on" if self.read_only else ""
        # a process frozen in a transaction (a paused host) must not hold its row locks
        # against the next leader for long
        idle = f" -c idle_in_transaction_session_timeout={max(1000, int(self.deadline_s * 1e3))}"
        # and the server finds a vanished client (its host down, cut off) in ~9 s instead of
        # the system's 2 h: its session, and the session locks it holds (the migration's
        # advisory lock), end with it
        alive = " -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=2"
        return psycopg.connect(self.target, autocommit=True, connect_timeout=2,
                               options="-c statement_timeout=5000" + ro + idle + alive,
                               keepalives=1, keepalives_idle=5, keepalives_interval=2,
                               keepalives_count=2)

    def close(self) -> None:
        if self.wal is not None:
            try:
                self.wal.sync_now()     # (a process's end keeps them anyway; a close is cheap)
            except OSError:
                pass                    # (already reported where the sync failed)
            self.wal.close()
        self.conn.close()

    @property
    def in_transaction(self) -> bool:
        if self.dialect == "postgresql":
            from psycopg.pq import TransactionStatus
            return self.conn.info.transaction_status != TransactionStatus.IDLE
        return self.conn.in_transaction

    def upsert(self, table: str, cols: tuple[str, ...], key: str) -> str:
        """INSERT of all `cols` that replaces the row with the same `key`."""
        sets = ", ".join(f"{c}=excluded.{c}" for c in cols if c != key)
        marks = ", ".join("?" for _ in cols)
        return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks}) "
                f"ON CONFLICT ({key}) DO UPDATE SET {sets}")

    def version(self) -> int:
        row = self.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def migrate(self) -> int:
        """Create or upgrade the schema to SCHEMA_VERSION, one version per transaction.
        Returns the version found (0: a new database). On PostgreSQL one controller at a
        time (a session advisory lock): several started together on a new store all created
        the tables, and all but one failed to start."""
        if self.dialect != "postgresql":
            return self._migrate()
        self.execute("SELECT pg_advisory_lock(?)", (MIGRATION_LOCK,))
        try:
            return self._migrate()
        finally:
            self.execute("SELECT pg_advisory_unlock(?)", (MIGRATION_LOCK,))

    def _migrate(self) -> int:
        found = 0
        has_meta = self._has_table("meta")
        if has_meta:
            found = self.version()
        if found == 0 and self._has_table("bindings"):
            # written before the version was recorded: version 1, or 2 if it has the column
            found = 2 if "ip" in self._columns("bindings") else 1
        if found > SCHEMA_VERSION:
            raise RuntimeError(f"{self.target}: schema version {found} is newer than this "
                               f"controller's ({SCHEMA_VERSION}); refusing to touch it")
        types = TYPES[self.dialect]
        if found == 0:
            self._transaction([s for s in BASE.format(**types).split(";") if s.strip()] +
                              [s for v in sorted(MIGRATIONS) for s in MIGRATIONS[v]],
                              SCHEMA_VERSION)
            return 0
        for v in sorted(MIGRATIONS):
            if v > found:
                self._transaction(MIGRATIONS[v], v)
        if self.version() != max(found, SCHEMA_VERSION):
            self._transaction([], max(found, SCHEMA_VERSION))
        return found

    def _transaction(self, statements: list[str], version: int) -> None:
        self.execute("BEGIN")
        try:
            for s in statements:
                self.execute(s.format(**TYPES[self.dialect]))
            self.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.execute(self.upsert("meta", ("key", "value"), "key"),
                         ("schema_version", str(version)))
        except BaseException:
            self.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    def _has_table(self, name: str) -> bool:
        if self.dialect == "postgresql":
            return self.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0]
        return self.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                            (name,)).fetchone() is not None

    def _columns(self, table: str) -> set[str]:
        if self.dialect == "postgresql":
            rows = self.execute("SELECT column_name FROM information_schema.columns "
                                "WHERE table_name=?", (table,)).fetchall()
            return {r[0] for r in rows}
        return {r[1] for r in self.execute(f"PRAGMA table_info({table})")}
