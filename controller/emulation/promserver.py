"""A private Prometheus server for tests: its own configuration and data directory under
/tmp, a free loopback port, scraping the given targets every second; started as a child
process and ended by its PID. Never touches a system Prometheus."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from controller.emulation.processes import free_port, wait_until


class Prometheus:
    def __init__(self, targets: list[str], metrics_path: str = "/metrics"):
        self.dir = Path(tempfile.mkdtemp(prefix="crs-prom-"))
        self.port = free_port()
        (self.dir / "prometheus.yml").write_text(json.dumps({   # YAML is a superset of JSON
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "crs", "metrics_path": metrics_path,
                                "static_configs": [{"targets": targets}]}]}))
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Prometheus":
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed (run 'sudo make setup')")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=open(self.dir / "log", "wb"), stderr=subprocess.STDOUT)
        wait_until(lambda: self._get("/-/ready").startswith(b"Prometheus"), 30,
                   f"Prometheus ready on port {self.port} (log: {self.dir / 'log'})")
        return self

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query through the HTTP API: the result vector."""
        body = json.loads(self._get("/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql})))
        if body.get("status") != "success":
            raise RuntimeError(f"{promql}: {body}")
        return body["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The single value of a query (None while it has none)."""
        r = self.query(promql)
        return float(r[0]["value"][1]) if len(r) == 1 else None

    def _get(self, path: str) -> bytes:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.read()
        except OSError:
            return b""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
