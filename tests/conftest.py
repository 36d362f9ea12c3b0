"""What the unit and the integration tests share: the `integration` marker on every test under
tests/integration/, the repository's root, and the fixtures of the pure-core tests.

Helpers that tests import live in modules that are neither tests nor conftests: tests/corekit.py
and tests/integration/nethelpers.py. With pytest's default import mode ("prepend") tests/ is on
sys.path because this file lives there, and tests/integration/ because its test modules and its
conftest.py live there; tests never import `conftest` (two files share that module name)."""
from __future__ import annotations

import pytest

# the helpers' asserts report like the tests' own (rewritten before their first import)
pytest.register_assert_rewrite("corekit", "nethelpers")

from corekit import PG_ROOT, ROOT, T0, boot_core  # noqa: E402

INTEGRATION = ROOT / "tests" / "integration"


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.resolve().is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def pg_cluster():
    """One private PostgreSQL cluster for the test session (emulation/pgcluster.py)."""
    from controller.emulation.pgcluster import Cluster
    c = Cluster(PG_ROOT).start()
    yield c
    c.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request, tmp_path):
    """Where a store lives, once per backend: an SQLite file, a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "crs.db")
    return request.getfixturevalue("pg_cluster").new_database()


@pytest.fixture
def boot_on(tmp_path, store_target):
    """`boot`, once per store backend (SQLite, PostgreSQL)."""
    def make(crs=False, now=T0):
        return boot_core(tmp_path, crs, now, db=store_target)
    return make


@pytest.fixture
def boot(tmp_path):
    """Boots the pure core on a simulated switch, its database in the test's tmp_path:
    `core, sim = boot(crs=True)`; called again (with a later `now`), a restart of the
    controller on the same database."""
    def make(crs=False, now=T0):
        return boot_core(tmp_path, crs, now)
    return make
