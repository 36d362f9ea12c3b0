"""`crs net up` / `crs net down` remove exactly what they created, also after a SIGKILL."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from nethelpers import ROOT

from controller.emulation.processes import wait_until
from controller.emulation.record import alive, existing_bridges, records


def net_up(ctl, tmp_path):
    log = open(tmp_path / "netup.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "net", "up",
                             "topologies/minimal.yaml", "--controller",
                             f"127.0.0.1:{ctl.ofp_port}"], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    rec = wait_until(lambda: next((r for r in records() if r.name == "minimal"
                                   and r.pids and r.launcher_pid == proc.pid), None),
                     60, "the network's record")
    wait_until(lambda: "all switches connected" in (tmp_path / "netup.log").read_text(), 60,
               "switches connected")
    return proc, rec


def assert_gone(rec):
    assert not existing_bridges() & set(rec.bridges)
    assert [i for i in rec.interfaces if Path(f"/sys/class/net/{i}").exists()] == []
    assert [p for p in rec.pids if alive(p)] == []
    assert "minimal" not in {r.name for r in records()}


@pytest.mark.parametrize("how", ["down", "sigkill-then-down"])
def test_net_down_leaves_nothing_behind(controller, tmp_path, how):
    ctl = controller()
    proc, rec = net_up(ctl, tmp_path)
    assert set(rec.bridges) <= existing_bridges()
    assert all(alive(p) for p in rec.pids)
    if how == "sigkill-then-down":
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert set(rec.bridges) <= existing_bridges(), "bridges vanished on their own?"
    out = subprocess.run([sys.executable, "-m", "controller.cli", "net", "down"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "minimal: removed" in out.stdout
    proc.wait(timeout=30)
    # host shells die with a delay after their namespace owner is killed
    wait_until(lambda: not [p for p in rec.pids if alive(p)], 10, "host processes gone")
    assert_gone(rec)


def test_net_up_refuses_to_clobber_a_foreign_bridge(tmp_path):
    subprocess.run(["ovs-vsctl", "add-br", "s1", "--", "set", "bridge", "s1",
                    "datapath_type=netdev"], check=True)
    try:
        out = subprocess.run([sys.executable, "-m", "controller.cli", "net", "up",
                              "topologies/minimal.yaml"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 1 and "not ours" in out.stderr
        assert "s1" in existing_bridges()
    finally:
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", "s1"], check=True)


def test_net_up_rejects_bad_topology_with_status_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnetwork: 10.0.0.0/16\nswitches: []\n")
    out = subprocess.run([sys.executable, "-m", "controller.cli", "net", "up", str(bad)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert f"{bad}: controller_service: missing required key" in out.stderr
    assert os.path.exists(bad)
