"""A benchmark's JSON says which malloc the switch ran with (its speed depends on it)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.bench.common import allocator, ovs_allocator

JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")


def _process(tmp_path, env):
    """A live process whose pid is in a pidfile, as ovs-ctl leaves one."""
    p = subprocess.Popen([sys.executable, "-c", "print('up', flush=True); input()"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         env={**os.environ, **env})
    assert p.stdout.readline() == b"up\n"      # loaded (its maps complete) and running
    pidfile = tmp_path / "ovs-vswitchd.pid"
    pidfile.write_text(f"{p.pid}\n")
    return p, pidfile


def test_maps_name_the_allocator():
    glibc = "7f0 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
    assert allocator(glibc) == "glibc"
    assert allocator(glibc + "7f1 r-xp 0 08:01 2 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n"
                     ) == "jemalloc"


def test_a_process_without_a_preload_runs_glibc_malloc(tmp_path):
    p, pidfile = _process(tmp_path, {})
    try:
        assert ovs_allocator(str(pidfile)) == "glibc"
    finally:
        p.communicate(b"\n")


@pytest.mark.skipif(not JEMALLOC.exists(), reason="libjemalloc2 is installed by make setup")
def test_a_process_with_jemalloc_preloaded_is_seen_as_such(tmp_path):
    p, pidfile = _process(tmp_path, {"LD_PRELOAD": str(JEMALLOC)})
    try:
        assert ovs_allocator(str(pidfile)) == "jemalloc"
    finally:
        p.communicate(b"\n")


def test_no_switch_running_is_unknown_not_an_error(tmp_path):
    assert ovs_allocator(str(tmp_path / "missing.pid")) == "unknown"
    (tmp_path / "garbage.pid").write_text("not a pid\n")
    assert ovs_allocator(str(tmp_path / "garbage.pid")) == "unknown"
