"""Controller processes started by tests, benchmarks, the demo and experiments.

A `ControllerProcess` is a real `crs controller` (ryu-manager) child process on free ports,
stopped by its own PID. `controller_config` writes the configuration of one that
authenticates terminals (X.1124, optionally with the reacting system). `wait_until` is the one
way this project waits: poll a condition until a deadline, then fail naming what did not
happen.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import yaml

from controller.restguard import auth_header, read_token

ROOT = Path(__file__).resolve().parents[2]
CREDENTIALS = ROOT / "config" / "credentials.yaml"      # the shipped (public) demo secrets
AUTHORIZATION = ROOT / "config" / "authorization.yaml"
CRS_POLICY = ROOT / "config" / "crs_policy.yaml"


class Timeout(Exception):
    pass


def wait_until(cond: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.1) -> Any:
    """Poll `cond` until it returns something truthy; raise Timeout naming `what`."""
    deadline = time.time() + timeout
    last: Any = None
    while time.time() < deadline:
        try:
            last = cond()
        except Exception as exc:  # the condition may raise while things come up
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise Timeout(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def auth_document(topology: str | Path, *, crs: bool = False,
                  policy: str | Path | None = None, audit_log: str | Path | None = None,
                  session_s: int | None = None, credentials: str | Path | None = None,
                  authorization: str | Path | None = None, demo: bool = True,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The configuration (config/controller.yaml schema) of a controller that authenticates
    terminals: the shipped credentials and authorization unless others are given, `demo:
    true` (the shipped secrets are public: the controller refuses them without it), the
    reacting system with `policy` (default: the shipped one) when `crs`, EAPOL read on the
    edge ports' own interfaces (Open vSwitch runs on this host). `extra` adds keys; a mapping in
    it is merged into the section of the same name."""
    admission: dict[str, Any] = {"mode": "authenticate", "eapol_transport": "port",
                                 "credentials": str(credentials or CREDENTIALS),
                                 "authorization": str(authorization or AUTHORIZATION)}
    if session_s is not None:
        admission["session_s"] = session_s
    doc: dict[str, Any] = {"admission": admission}
    if crs:
        doc["crs"] = {"enabled": True, "policy": str(policy or CRS_POLICY)}
    doc["topology"] = str(topology)
    if audit_log is not None:
        doc["audit_log"] = str(audit_log)
    doc["demo"] = demo
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return doc


def controller_config(path: str | Path, topology: str | Path, *, crs: bool = False,
                      policy: str | Path | None = None, audit_log: str | Path | None = None,
                      session_s: int | None = None, credentials: str | Path | None = None,
                      authorization: str | Path | None = None, demo: bool = True,
                      extra: dict[str, Any] | None = None) -> list[str]:
    """Write `auth_document(...)` to `path` (the audit log goes next to it unless given) and
    return the arguments that start a controller with it: ["--config", path]."""
    path = Path(path)
    doc = auth_document(topology, crs=crs, policy=policy,
                        audit_log=audit_log or path.parent / "audit.jsonl", session_s=session_s,
                        credentials=credentials, authorization=authorization, demo=demo,
                        extra=extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return ["--config", str(path)]


class ControllerProcess:
    """A real controller process: ours (`crs controller`) or a Ryu reference app."""

    def __init__(self, workdir: Path, extra: list[str] | None = None,
                 ryu_app: str | None = None, ofp_port: int | None = None,
                 rest_port: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ofp_port = ofp_port or free_port()
        self.rest_port = rest_port or free_port()
        self.extra = extra or []
        self.ryu_app = ryu_app
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / "controller.log"
        # `crs controller` writes its operator token next to --db (workdir/crs.db)
        self.token_file = self.workdir / "operator.token"

    def start(self, timeout: float = 30) -> "ControllerProcess":
        if self.ryu_app:
            cmd = [sys.executable, "-m", "controller.launcher", self.ryu_app,
                   str(self.ofp_port), str(self.rest_port)]
        else:
            cmd = [sys.executable, "-m", "controller.cli", "controller",
                   "--ofp-port", str(self.ofp_port), "--rest-port", str(self.rest_port),
                   "--db", str(self.workdir / "crs.db"), *self.extra]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if self.ryu_app:
            wait_until(self._listening, timeout, f"{self.ryu_app} on port {self.ofp_port}")
        else:
            wait_until(self.status, timeout, f"controller REST on port {self.rest_port}")
        return self

    def _listening(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"controller exited: see {self.log}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.ofp_port)) == 0

    def status(self) -> dict:
        return self.request("GET", "/crs/v1/status")

    def wait_switches(self, count: int, timeout: float = 30,
                      what: str = "all switches known to the controller") -> None:
        """Wait until the controller reports `count` connected switches (GET status)."""
        wait_until(lambda: len(self.status()["switches"]) == count, timeout, what)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """A JSON REST call, as the operator (POSTs carry the controller's operator token);
        HTTP errors come back as {'http_status': N, ...body}."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"controller exited with {self.proc.returncode}: see {self.log}")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if method == "POST" and self.token_file.exists():
            headers.update(auth_header(read_token(str(self.token_file))))
        req = urllib.request.Request(f"http://127.0.0.1:{self.rest_port}{path}", data=data,
                                     method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as exc:
            payload = json.loads(exc.read() or b"{}")
            return {"http_status": exc.code, **(payload if isinstance(payload, dict) else {})}

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def __enter__(self) -> "ControllerProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
