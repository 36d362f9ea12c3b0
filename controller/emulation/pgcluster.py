"""A private PostgreSQL cluster for tests and benchmarks: its own temporary directory,
a Unix socket there and no TCP port, started with pg_ctl and stopped by its data directory
(pg_ctl reads the postmaster's PID from it). Never touches a system cluster. As root, the
server runs as the `postgres` user (PostgreSQL refuses root)."""
from __future__ import annotations

import glob
import ipaddress
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (run 'sudo make setup')")
    return found[-1]


class Cluster:
    def __init__(self, root: str | None = None, tcp: str | None = None) -> None:
        """`root`: where its directory goes (default: the system's temporary directory;
        the tests use tmpfs, see tests/corekit.py); `tcp`: an IPv4 address of this host it
        listens on too (same port number), trusting clients of that address's /24, for
        clients that must reach it over TCP (another network namespace)."""
        self.tcp = tcp
        self.dir = tempfile.mkdtemp(prefix="crs-pg-", dir=root)
        self.data = os.path.join(self.dir, "data")
        self._as: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        with socket.socket() as s:       # a number no one uses names the socket file
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._names = itertools.count(1)

    def start(self) -> "Cluster":
        subprocess.run(self._as + [_bin("initdb"), "-D", self.data, "-A", "trust", "-U",
                                   "postgres", "-E", "UTF8"], check=True,
                       capture_output=True)
        if self.tcp:
            net = ipaddress.ip_network(f"{self.tcp}/24", strict=False)
            with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
                f.write(f"host all all {net} trust\n")
        self.resume()
        return self

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql:///{db}?host={self.dir}&port={self.port}&user=postgres"

    def tcp_dsn(self, db: str = "postgres") -> str:
        """The same database over TCP (a cluster started with `tcp`)."""
        return f"postgresql://postgres@{self.tcp}:{self.port}/{db}"

    @property
    def socket_path(self) -> str:
        """The server's Unix socket (e.g. for a TCP relay that a test can cut)."""
        return os.path.join(self.dir, f".s.PGSQL.{self.port}")

    def new_database(self) -> str:
        import psycopg
        name = f"t{next(self._names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def halt(self) -> None:
        """Stop the server at once (clients' connections die), keeping its data."""
        subprocess.run(self._as + [_bin("pg_ctl"), "-D", self.data, "-m", "immediate",
                                   "stop"], check=True, capture_output=True)

    def resume(self) -> None:
        listen = self.tcp or ""
        opts = f"-k {self.dir} -c listen_addresses='{listen}' -p {self.port}"
        subprocess.run(self._as + [_bin("pg_ctl"), "-D", self.data, "-o", opts, "-l",
                                   os.path.join(self.dir, "log"), "-w", "start"],
                       check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run(self._as + [_bin("pg_ctl"), "-D", self.data, "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
