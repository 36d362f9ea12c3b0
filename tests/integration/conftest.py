"""Fixtures for tests on real Open vSwitch, Mininet and ryu-manager processes.

Every test starts its own controller process (free ports, its own database) and its own
network, and removes exactly those afterwards: by PID, and by the network's record.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from controller.emulation.processes import (  # noqa: F401
    ROOT,
    ControllerProcess,
    controller_config,
    wait_until,
)


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


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
        c = ControllerProcess(tmp_path, list(extra)).start()
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

    def make(topo_file: str, ctl: ControllerProcess, shaping: bool = False, **kw):
        emu = start_network(topology.load(ROOT / topo_file, **kw), ctl, shaping=shaping)
        emus.append(emu)
        return emu
    yield make
    for emu in emus:
        emu.stop()


def ping(host, ip: str, count: int = 1, timeout: int = 2) -> bool:
    out = host.cmd(f"ping -c {count} -W {timeout} -q {ip}")
    return f" {count} received" in out


def tcp_ok(host, ip: str, port: int, timeout: float = 2.0) -> bool:
    """Whether `host` completes a TCP handshake with ip:port."""
    out = host.cmd(f"python3 -c \"import socket; socket.create_connection(('{ip}', {port}), "
                   f"{timeout}); print('TCP-OK')\" 2>&1")
    return "TCP-OK" in out


def web_server(emu, host: str, port: int = 80):
    """A static HTTP server on a host (python's http.server), started and recorded."""
    ip = emu.host(host).IP()
    proc = emu.popen(host, ["python3", "-m", "http.server", str(port), "--bind", ip],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: f":{port}" in emu.host(host).cmd(f"ss -ltn 'sport = :{port}'"), 10,
               f"http server on {host}:{port}")
    return proc
