"""Fixtures for tests on real Open vSwitch, Mininet and ryu-manager processes.

Every test starts its own controller process (free ports, its own database) and its own
network, and removes exactly those afterwards: by PID, and by the network's record. The helpers
(ping, tcp_ok, web_server, CrsNet...) are in nethelpers.py; tests never import a conftest.
"""
from __future__ import annotations

import os
import subprocess

import pytest
from nethelpers import ROOT, framework_args

from controller.emulation.processes import ControllerProcess


@pytest.fixture(scope="session", autouse=True)
def _needs_root_and_ovs():
    if os.geteuid() != 0:
        pytest.exit("integration tests need root (run 'sudo make test')", returncode=1)
    if subprocess.run(["ovs-vsctl", "--timeout=5", "show"], capture_output=True).returncode:
        pytest.exit("Open vSwitch is not running (run 'sudo make setup')", returncode=1)


@pytest.fixture
def controller(tmp_path):
    procs = []

    def make(*extra: str) -> ControllerProcess:
        # CRS_TEST_FRAMEWORK=os-ken: the same tests against the app running on os-ken
        c = ControllerProcess(tmp_path, [*extra, *framework_args()]).start()
        procs.append(c)
        return c
    yield make
    for c in procs:
        c.stop()


@pytest.fixture
def network():
    from controller import topology
    from controller.emulation.net import start_network
    emus = []

    def make(topo_file: str, ctl: ControllerProcess, shaping: bool = False,
             patch_links: bool = False, **kw):
        emu = start_network(topology.load(ROOT / topo_file, **kw), ctl, shaping=shaping,
                            patch_links=patch_links)
        emus.append(emu)
        return emu
    yield make
    for emu in emus:
        emu.stop()


@pytest.fixture
def crs(controller, network, tmp_path):
    """An emulated network with the reacting system: `crs(topo=..., policy_edit=...)`."""
    from nethelpers import CrsNet
    return lambda **kw: CrsNet(controller, network, tmp_path, **kw)
