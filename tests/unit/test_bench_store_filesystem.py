"""`crs bench auth|reaction --workdir DIR`: the controller's store goes where the user says
(on tmpfs its disk sync costs nothing, which is how README separates the sync from the rest
of a latency), and the benchmark's JSON names the file system it measured on."""
from __future__ import annotations

from pathlib import Path

import pytest

from controller import cli
from controller.bench import common


def mounts() -> dict[str, str]:
    out = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        f = line.split()
        out[f[1]] = f[2]
    return out


def test_the_file_system_of_a_path_and_of_one_not_made_yet():
    m = mounts()
    assert common.filesystem("/proc/self") == "proc"
    assert common.filesystem("/") == m["/"]
    if m.get("/dev/shm") != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm here")
    assert common.filesystem("/dev/shm") == "tmpfs"
    # the benchmark makes its directory later: the nearest existing parent decides
    assert common.filesystem("/dev/shm/not-made-yet/store") == "tmpfs"


def test_a_mount_point_is_not_a_prefix_of_its_namesakes():
    # /procfoo is not under /proc: a path's own parents decide, not string prefixes
    assert common.filesystem("/proc") == "proc"
    assert common.filesystem("/procfoo/x") == mounts()["/"]


@pytest.mark.parametrize("name,key", [("auth", "workdir"), ("reaction", "keep_dir")])
def test_workdir_reaches_the_benchmark(name, key):
    args = cli.build_parser().parse_args(["bench", name, "--workdir", "/dev/shm/b"])
    module, params = cli.BENCHES[name]
    assert params(args)[key] == "/dev/shm/b"
    default = cli.build_parser().parse_args(["bench", name])
    assert params(default)[key] is None         # a temporary directory, as before
