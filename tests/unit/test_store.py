"""The store's transactions: one event's writes commit together, nested batches join."""
from __future__ import annotations

import pytest

from controller.store import Store


def test_a_nested_batch_joins_the_outer_transaction_which_commits_once(tmp_path):
    store = Store(tmp_path / "crs.db")
    with store.batch():
        store.put_replay("a", 1)
        with store.batch():
            store.put_replay("b", 2)
        assert store.db.in_transaction          # the inner end did not commit
    assert not store.db.in_transaction
    assert Store(tmp_path / "crs.db").replay() == {"a": 1, "b": 2}


def test_an_error_rolls_the_whole_batch_back(tmp_path):
    store = Store(tmp_path / "crs.db")
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


def test_a_failing_savepoint_undoes_only_its_own_writes(tmp_path):
    store = Store(tmp_path / "crs.db")
    with store.batch():
        store.put_replay("a", 1)
        with pytest.raises(RuntimeError):
            with store.savepoint():
                store.put_replay("b", 2)
                raise RuntimeError("one message failed")
        with store.savepoint():
            store.put_replay("c", 3)
        assert store.db.in_transaction
    assert Store(tmp_path / "crs.db").replay() == {"a": 1, "c": 3}
