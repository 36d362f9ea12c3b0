"""Fixtures for tests on real Open vSwitch, Mininet and ryu-manager processes.

Every test starts its own controller process (free ports, its own database) and its own
network, and removes exactly those afterwards: by PID, and by the network's record.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout: float, what: str, interval: float = 0.1):
    """Poll `cond` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = cond()
        except Exception as exc:  # the condition may raise while things come up
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class ControllerProcess:
    """A real `crs controller` (ryu-manager) process."""

    def __init__(self, workdir: Path, extra: list[str] | None = None):
        self.workdir = workdir
        self.ofp_port = free_port()
        self.rest_port = free_port()
        self.extra = extra or []
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "controller.log"

    def start(self) -> "ControllerProcess":
        cmd = [sys.executable, "-m", "controller.cli", "controller",
               "--ofp-port", str(self.ofp_port), "--rest-port", str(self.rest_port),
               "--db", str(self.workdir / "crs.db"), *self.extra]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)
        wait_until(self.status, 30, f"controller REST on port {self.rest_port}")
        return self

    def status(self) -> dict:
        return self.get("/crs/v1/status")

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.rest_port}{path}",
                                    timeout=5) as r:
            return json.loads(r.read())

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


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
    from controller.emulation.net import Emulation, Options
    emus = []

    def make(topo_file: str, ctl: ControllerProcess, shaping: bool = False, **kw):
        topo = topology.load(ROOT / topo_file, **kw)
        emu = Emulation(topo, Options(controller_port=ctl.ofp_port, shaping=shaping))
        emus.append(emu)
        emu.start()
        emu.wait_connected(60)
        wait_until(lambda: len(ctl.status()["switches"]) == len(topo.switches), 30,
                   "all switches known to the controller")
        return emu
    yield make
    for emu in emus:
        emu.stop()


def ping(host, ip: str, count: int = 1, timeout: int = 2) -> bool:
    out = host.cmd(f"ping -c {count} -W {timeout} -q {ip}")
    return f"{count} received" in out or (f" 0% packet loss" in out and count > 0)
