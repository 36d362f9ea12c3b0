"""Helpers for the tests on Mininet (not a test module, not a conftest): reachability checks,
a web server on a host, and `CrsNet`, a controller with authentication and CRS and the
mobile_core network whose terminals run our supplicant and the real agent.

pytest's default import mode puts tests/integration/ on sys.path (its test modules live there),
and tests/ too (tests/conftest.py), so this imports as `nethelpers` from any directory."""
from __future__ import annotations

import json
import os
import subprocess

import yaml
from corekit import ROOT

from controller import jsonfile
from controller.admission.credentials import load_credentials
from controller.emulation.processes import controller_config, wait_until

CREDS = load_credentials(ROOT / "config/credentials.yaml")
PY = str(ROOT / ".venv/bin/python")
CLEAN = {"os": {"name": "MobileOS", "patch_level": 12},
         "antivirus": {"engine": "1.0", "signature_version": 2041},
         "agent_version": "1.0.0", "firewall": True, "threats": [], "attackers": []}
INFECTED = [{"name": "Worm.Demo", "count": 1, "cleaned": False}]    # a posture's "threats"


def framework_args() -> list[str]:
    """`--framework` for a controller a test starts itself (CRS_TEST_FRAMEWORK=os-ken runs
    the tests against the app on os-ken; the `controller` fixture does the same)."""
    fw = os.environ.get("CRS_TEST_FRAMEWORK")
    return ["--framework", fw] if fw else []


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


class CrsNet:
    """Controller (authentication + CRS) and mobile_core with agents on chosen terminals."""

    def __init__(self, controller, network, tmp_path, policy_edit=None,
                 topo="topologies/mobile_core.yaml", admission=None, crs=None):
        self.tmp = tmp_path
        policy = yaml.safe_load((ROOT / "config/crs_policy.yaml").read_text())
        policy["report"] = {"interval_s": 2, "stale_after_s": 600}
        if policy_edit:
            policy_edit(policy)
        (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
        self.cfg = controller_config(tmp_path / "controller.yaml", ROOT / topo, crs=True,
                                     policy=tmp_path / "policy.yaml",
                                     extra={"admission": admission or {},
                                            "crs": crs or {}})
        self.ctl = controller(*self.cfg)
        self.emu = network(topo, self.ctl)
        self._update_server()
        self.servers = {}

    def _update_server(self):
        root = self.tmp / "www"
        (root / "updates").mkdir(parents=True)
        for item in ("baseline", "clean"):
            (root / "updates" / item).write_text(f"update {item}\n")
        self.update_log = self.tmp / "update-http.log"
        self.emu.popen("update", ["python3", "-m", "http.server", "80", "--bind", "10.0.100.20",
                                  "--directory", str(root)],
                       stdout=open(self.update_log, "wb"), stderr=subprocess.STDOUT)
        wait_until(lambda: ":80" in self.emu.host("update").cmd("ss -ltn 'sport = :80'"), 10,
                   "update server")

    def listen(self, host, port):
        """A TCP listener on a host (stands for an application service)."""
        ip = self.emu.host(host).IP()
        self.emu.popen(host, ["python3", "-m", "http.server", str(port), "--bind", ip],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: f":{port}" in self.emu.host(host).cmd(f"ss -ltn 'sport = :{port}'"),
                   10, f"listener {host}:{port}")

    def terminal(self, host, posture=None):
        ident = f"{host}@crs.example"
        keys = self.tmp / f"{host}-keys.json"
        post = self.tmp / f"{host}-posture.json"
        post.write_text(json.dumps(posture or CLEAN))
        self.emu.popen(host, [PY, "-m", "controller.admission.supplicant_main", "--interface",
                              f"{host}-eth0", "--identity", ident, "--psk",
                              CREDS.demo_psk(ident).hex(), "--keys-out", str(keys)],
                       stdout=open(self.tmp / f"{host}-sup.log", "wb"), stderr=subprocess.STDOUT)
        wait_until(keys.exists, 30, f"{host} authenticated")
        self.emu.popen(host, [PY, "-m", "controller.crs.agent", "--posture", str(post),
                              "--keys", str(keys), "--name", ident, "--interval", "2",
                              "--scs", f"http://10.0.100.254:{self.ctl.rest_port}"],
                       stdout=open(self.tmp / f"{host}-agent.log", "wb"),
                       stderr=subprocess.STDOUT)
        return post

    def row(self, host):
        return next((t for t in self.ctl.get("/crs/v1/terminals") if t["name"] == host), None)

    def level(self, host):
        row = self.row(host)
        return row and row.get("level")

    def wait_level(self, host, level, timeout=20):
        wait_until(lambda: self.level(host) == level, timeout, f"{host} at {level}")

    def set_posture(self, path, **changes):
        data = jsonfile.read(path)
        data.update(changes)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)

    def h(self, name):
        return self.emu.host(name)


def summary_rows(out_dir, name):
    """The summary's rows read from a benchmark's file in `out_dir` (as results/bench/)."""
    from controller.bench import targets
    root = out_dir / "results"
    (root / "bench").mkdir(parents=True)
    (root / "bench" / name).symlink_to(out_dir / name)
    return {r["target"]: r for r in targets.evaluate(root) if r["source"] == f"bench/{name}"}
