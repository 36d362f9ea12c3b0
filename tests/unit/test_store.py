"""The store on both backends (SQLite file, PostgreSQL database of a private cluster): every
record kind written, read back by a second connection, transactions (one event's writes
commit together, nested batches join, a savepoint undoes only its own writes), schema
versions."""
from __future__ import annotations

import sqlite3
import time

import pytest

from controller.records import SpRecord, SsRecord
from controller.store import Store
from controller.storedb import NOW, SCHEMA_VERSION


def test_a_nested_batch_joins_the_outer_transaction_which_commits_once(store_target):
    store = Store(store_target)
    with store.batch():
        store.put_replay("a", 1)
        with store.batch():
            store.put_replay("b", 2)
        assert store.db.in_transaction          # the inner end did not commit
        assert Store(store_target).replay() == {}   # nobody else sees it yet
    assert not store.db.in_transaction
    assert Store(store_target).replay() == {"a": 1, "b": 2}


def test_an_error_rolls_the_whole_batch_back(store_target):
    store = Store(store_target)
    store.put_replay("a", 1)
    with pytest.raises(RuntimeError):
        with store.batch():
            store.put_replay("a", 5)
            with store.batch():
                store.put_replay("b", 2)
                raise RuntimeError("bug")
    assert not store.db.in_transaction
    assert store.replay() == {"a": 1}
    with store.batch():                         # and the store is usable afterwards
        store.put_replay("c", 3)
    assert store.replay() == {"a": 1, "c": 3}


def test_a_failing_savepoint_undoes_only_its_own_writes(store_target):
    store = Store(store_target)
    with store.batch():
        store.put_replay("a", 1)
        with pytest.raises(RuntimeError):
            with store.savepoint():
                store.put_replay("b", 2)
                raise RuntimeError("one message failed")
        with store.savepoint():
            store.put_replay("c", 3)
        assert store.db.in_transaction
    assert Store(store_target).replay() == {"a": 1, "c": 3}


def test_a_write_the_database_refuses_fails_its_own_savepoint_only(store_target):
    """A value the database cannot hold (a sequence number beyond 64 bits, as a forged
    report could carry): the error belongs to the savepoint that wrote it, even where
    writes wait to be sent together (PostgreSQL), and the rest of the batch commits."""
    store = Store(store_target)
    with store.batch():
        with store.savepoint():
            store.put_replay("a", 1)
        with pytest.raises(Exception):
            with store.savepoint():
                store.put_replay("b", 2)
                store.put_replay("huge", 2 ** 70)
        with store.savepoint():
            store.put_replay("c", 3)
    assert not store.db.in_transaction
    assert Store(store_target).replay() == {"a": 1, "c": 3}


def test_a_failed_commit_leaves_nothing_and_the_store_works_on(store_target):
    store = Store(store_target)
    with pytest.raises(Exception):
        with store.batch():
            store.put_replay("a", 1)
            store.db.write("INSERT INTO replay (sender, seq) VALUES (?, ?)", ("a", 2))
    assert not store.db.in_transaction
    with store.batch():
        store.put_replay("b", 2)
    assert Store(store_target).replay() == {"b": 2}


def test_a_report_key_is_remembered_until_its_binding_changes(store_target):
    store, other = Store(store_target), Store(store_target)
    store.put_binding("t@x", dpid=1, port=1, mac="m", crs_key=b"k1", expires=100.0)
    assert store.crs_key("t@x", 50.0) == b"k1"
    assert store.crs_key("t@x", 150.0) is None          # expired
    store.put_binding("t@x", crs_key=b"k2")             # a new session: read anew
    assert store.crs_key("t@x", 50.0) == b"k2"
    store.drop_binding("t@x")
    assert store.crs_key("t@x", 50.0) is None
    assert store.crs_key("nobody@x", 50.0) is None and "nobody@x" not in store._keys
    # a key read inside a batch that rolls back is forgotten with it
    with pytest.raises(RuntimeError):
        with store.batch():
            store.put_binding("t@x", dpid=1, crs_key=b"k3", expires=100.0)
            assert store.crs_key("t@x", 50.0) == b"k3"
            raise RuntimeError("the admission failed")
    assert store.crs_key("t@x", 50.0) is None
    assert other.crs_key("t@x", 50.0) is None


def test_every_record_kind_round_trips_through_a_second_connection(store_target):
    s = Store(store_target)
    key = bytes(range(32))
    s.put_ss(SsRecord("isr1", "c1t1@x", "cell1", key, 2000.0))
    s.put_ss(SsRecord("isr1", "c1t1@x", "cell2", key, 3000.0))     # replaced, not added
    s.put_sp(SpRecord("iac1", "web", key[:16], 2500.0))
    n1 = s.put_binding("c1t1@x", grp="cell1", dpid=2**63 - 5, port=3, mac="02:00:00:00:00:01",
                       isr_id="isr1", crs_key=key, method="psk", start=1.0, expires=5000.0,
                       ip="10.0.1.1")
    n2 = s.put_binding("c1t2@x", grp="cell1", dpid=1, port=4, mac="02:00:00:00:00:02",
                       expires=10.0)
    s.put_terminal("c1t1@x", 1, {"level": "INFECTED", "seq": [1, 2]}, {"actions": ["isolate"]})
    s.put_terminal("c1t1@x", 1, {"level": "COMPLIANT"}, None)
    s.put_seal("cell1", True)
    s.put_seal("cell2", False)
    s.add_sci("c1t1@x", 12.5, {"os": {"patch_level": 3}})
    s.put_replay("c1t1@x", 7)
    s.put_evidence({"accusations": {"a": ["b"]}})
    s.add_policy(4, "crs_policy.yaml")
    s.close()

    r = Store(store_target)
    assert r.get_ss("isr1") == SsRecord("isr1", "c1t1@x", "cell2", key, 3000.0)
    assert r.get_sp("iac1") == SpRecord("iac1", "web", key[:16], 2500.0)
    assert n1 != n2 and r.binding_number("c1t1@x") == n1     # numbers are stable
    b = r.binding("c1t1@x")
    assert (b.dpid, b.port, b.mac, b.crs_key, b.ip) == (2**63 - 5, 3, "02:00:00:00:00:01",
                                                        key, "10.0.1.1")
    assert r.crs_key("c1t1@x", 100.0) == key and r.crs_key("c1t1@x", 6000.0) is None
    assert [x.identity for x in r.bindings(100.0)] == ["c1t1@x"]
    assert [x.identity for x in r.expired_bindings(100.0)] == ["c1t2@x"]
    assert [x.identity for x in r.bindings_at(1, 4, "02:00:00:00:00:02")] == ["c1t2@x"]
    r.drop_binding("c1t2@x")
    assert r.binding("c1t2@x") is None and r.binding_number("c1t2@x") == n2
    t = r.terminals()
    assert [(x.tid, x.number, x.state, x.decision) for x in t] == [
        ("c1t1@x", 1, {"level": "COMPLIANT"}, None)]
    assert r.sealed_groups() == ["cell1"]
    assert r.replay() == {"c1t1@x": 7}
    assert r.evidence() == {"accusations": {"a": ["b"]}}
    assert r.purge(2000.0 + 3601) == 0 and r.purge(3000.0 + 3601) == 2  # ss and sp expired
    assert r.get_ss("isr1") is None and r.get_sp("iac1") is None
    assert r.db.version() == SCHEMA_VERSION


def test_a_steady_reports_time_is_read_back_with_its_terminal(store_target):
    """`put_seen` keeps a report's time and sequence number in the replay row; a terminal
    read back has that time when it was written after its row, the row's own otherwise,
    and none at all when its row says it has none (its agent left after those reports)."""
    s = Store(store_target)
    s.put_terminal("a", 1, {"last_report": 10.0, "seq": 1}, None)
    s.put_terminal("b", 2, {"last_report": 10.0, "seq": 1}, None)
    s.put_seen("a", 3, 30.0)
    s.put_seen("b", 3, 30.0)
    s.put_terminal("b", 2, {"last_report": None, "seq": 1}, None)
    s.put_replay("a", 4)                  # a sequence number alone keeps the time
    r = Store(store_target)
    assert [(t.tid, t.state["last_report"]) for t in r.terminals()] == [("a", 30.0),
                                                                         ("b", None)]
    assert r.replay() == {"a": 4, "b": 3}
    s.put_terminal("a", 1, {"last_report": 40.0, "seq": 5}, None)   # a newer row wins
    assert Store(store_target).terminals()[0].state["last_report"] == 40.0
    # and so does a row written later with an older time (a roaming transfer adopts a
    # peer's report time after a Leave): the steady reports' time does not come back
    s.put_seen("a", 6, 50.0)
    s.put_terminal("a", 1, {"last_report": 45.0, "seq": 5}, None)
    s.put_replay("a", 7)
    assert Store(store_target).terminals()[0].state["last_report"] == 45.0


def test_an_sqlite_file_of_the_first_schema_is_migrated(tmp_path):
    """A database written before bindings had an address and before versions were
    recorded: opened, it gains the column and the version, and keeps its rows."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE bindings (identity TEXT PRIMARY KEY, number INTEGER UNIQUE, grp TEXT,
            dpid INTEGER, port INTEGER, mac TEXT, isr_id TEXT, crs_key BLOB, method TEXT,
            start REAL, expires REAL);
        INSERT INTO bindings (identity, number, dpid, port, mac, expires)
            VALUES ('old@x', 9, 1, 2, '02:00:00:00:00:09', 1e12);""")
    db.commit()
    db.close()
    s = Store(path)
    assert s.db.version() == SCHEMA_VERSION
    assert s.binding("old@x").number == 9 and s.binding("old@x").ip is None
    s.put_binding("old@x", ip="10.0.1.9")
    assert Store(path).binding("old@x").ip == "10.0.1.9"


def test_a_database_newer_than_the_code_is_refused(store_target):
    s = Store(store_target)
    s.db.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                 (str(SCHEMA_VERSION + 1),))
    s.close()
    with pytest.raises(RuntimeError, match="newer than this controller"):
        Store(store_target)


def test_a_postgresql_store_reconnects_after_its_connection_broke(pg_cluster):
    """The server ended our session (a restart, a cut link): the call that meets it fails,
    the next one runs on a new connection."""
    import psycopg
    dsn = pg_cluster.new_database()
    s = Store(dsn)
    s.put_replay("a", 1)
    pid = s.db.execute("SELECT pg_backend_pid()").fetchone()[0]
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        s.replay()
    assert s.replay() == {"a": 1}
    assert s.db.execute("SELECT pg_backend_pid()").fetchone()[0] != pid


def test_a_leaders_commit_needs_its_lease_still_held(pg_cluster):
    """Several controllers: a store fenced by a lease commits only while that lease is held
    under that generation; a deposed leader's late commit leaves nothing behind."""
    from controller.lease import Lease
    from controller.storedb import Db
    dsn = pg_cluster.new_database()
    store = Store(dsn)
    lease = Lease(Db(dsn), "a/1", 30.0)
    role = lease.step()
    store.fence = (lease.me, role.generation)
    with store.batch():
        store.put_replay("a", 1)
    lease.release()                                  # someone else may lead now
    Lease(Db(dsn), "b/1", 30.0).step()
    with pytest.raises(Exception):
        with store.batch():
            store.put_replay("late", 2)
    assert not store.db.in_transaction
    assert Store(dsn).replay() == {"a": 1}


def test_a_leaders_write_outside_a_batch_is_fenced_too(pg_cluster):
    from controller.lease import Lease
    from controller.storedb import Db
    dsn = pg_cluster.new_database()
    store = Store(dsn)
    lease = Lease(Db(dsn), "a/1", 30.0)
    store.fence = (lease.me, lease.step().generation)
    store.put_seal("cell1", True)                    # autocommit, fenced: lands
    lease.release()
    Lease(Db(dsn), "b/1", 30.0).step()
    with pytest.raises(Exception):
        store.put_seal("cell2", True)                # deposed: refused
    assert Store(dsn).sealed_groups() == ["cell1"]


def test_a_commit_in_flight_holds_off_a_takeover_but_not_its_leaders_renewal(pg_cluster):
    """The fence's row lock: while a leader's fenced commit is in flight (its disk sync,
    say), another controller cannot take the lease over, and the leader itself can still
    renew it (a renewal that waited for its own commits lost the lease to a slow disk)."""
    import psycopg

    from controller.lease import Lease
    from controller.store import FENCE
    from controller.storedb import Db
    dsn = pg_cluster.new_database()
    Store(dsn)                                       # the schema
    # (a 2 s lease: the fence and the renewal below are well within it on a loaded machine)
    a, b = Lease(Db(dsn), "a/1", 2.0), Lease(Db(dsn), "b/1", 2.0)
    for lease in (a, b):                             # a lock wait fails instead of hanging
        lease.db.execute("SET lock_timeout = '300ms'")
    with psycopg.connect(dsn) as commit:             # a transaction, open until `commit`
        gen = a.step().generation
        commit.execute(FENCE.replace("?", "%s"), ("a/1", gen))
        role = a.step()                              # the leader renews meanwhile
        assert role.leader and role.generation == gen
        deadline = time.monotonic() + 10
        while not b.db.execute("SELECT expires <= " + NOW["postgresql"] +
                               " FROM leader").fetchone()[0]:
            assert time.monotonic() < deadline, "the lease did not run out"
            time.sleep(0.02)
        with pytest.raises(psycopg.errors.LockNotAvailable):
            b.step()                                 # expired, but the commit is in flight
        commit.commit()
    role = b.step()
    assert role.leader and role.generation == gen + 1


def test_controllers_started_together_on_a_new_store_all_start(pg_cluster):
    """Several controllers sharing a new PostgreSQL store migrate it at the same moment (as
    systemd or an orchestrator starts them): one creates the schema, the others find it;
    none fails to start (all but one did, on the catalog's unique keys)."""
    import threading

    from controller.storedb import Db
    for _ in range(3):
        dsn = pg_cluster.new_database()
        dbs = [Db(dsn) for _ in range(3)]
        start, errors = threading.Barrier(len(dbs)), []

        def migrate(db):
            start.wait()
            try:
                db.migrate()
            except Exception as exc:         # (collected, asserted below)
                errors.append(exc)
        threads = [threading.Thread(target=migrate, args=(db,)) for db in dbs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == [] and all(db.version() == SCHEMA_VERSION for db in dbs)


def test_the_server_finds_a_vanished_controller_within_seconds():
    """A controller's PostgreSQL session asks the server to probe its TCP peer (5 s idle,
    then every 2 s, 2 probes), so a session whose client vanished (its host down, cut off)
    ends in ~9 s and the session locks it held with it (the migration's advisory lock);
    the system's default is 2 h. Checked on a TCP session as the server sees it."""
    from corekit import PG_ROOT

    from controller.emulation.pgcluster import Cluster
    pg = Cluster(PG_ROOT, tcp="127.0.0.1").start()     # (its own: the session's has no TCP)
    try:
        s = Store(pg.tcp_dsn())
        assert s.db.execute("SELECT client_addr IS NOT NULL FROM pg_stat_activity "
                            "WHERE pid = pg_backend_pid()").fetchone()[0] is True
        got = {k: s.db.execute(f"SHOW tcp_keepalives_{k}").fetchone()[0]
               for k in ("idle", "interval", "count")}
        assert got == {"idle": "5", "interval": "2", "count": "2"}
        s.close()
    finally:
        pg.stop()
