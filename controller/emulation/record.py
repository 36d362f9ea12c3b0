"""What an emulated network created, written down before and while it is created.

`crs net down` removes exactly what a record lists (bridges, root-namespace interfaces,
host processes), also after the launcher was killed. Nothing is removed by name pattern
and nothing machine-wide (no `mn -c`).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from controller import jsonfile

STATE_DIR = Path(os.environ.get("CRS_STATE_DIR", "/var/lib/crs/net"))


@dataclass
class Record:
    name: str
    launcher_pid: int
    bridges: list[str] = field(default_factory=list)
    interfaces: list[str] = field(default_factory=list)   # root-namespace links to delete
    pids: list[int] = field(default_factory=list)         # host shells and programs
    started: float = field(default_factory=time.time)

    @property
    def path(self) -> Path:
        return STATE_DIR / f"{self.name}.json"

    def save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, path: Path) -> "Record":
        data = jsonfile.read(path)
        if data is None:
            raise ValueError(f"{path}: not a network record")
        return cls(**data)


def records() -> list[Record]:
    if not STATE_DIR.is_dir():
        return []
    out = []
    for p in sorted(STATE_DIR.glob("*.json")):
        try:
            out.append(Record.load(p))
        except (OSError, ValueError, TypeError):
            continue
    return out


def alive(pid: int) -> bool:
    if pid <= 1:   # 0 and -1 would address process groups, 1 is init: never ours
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def openvswitch_problem(timeout_s: int = 5) -> str | None:
    """Why Open vSwitch cannot take our bridges now, in a line that says what to do; None
    when both its database and its switch daemon answer. Checked before a network is
    built: Mininet's own check prints a hint and exits the whole process."""
    checks = (("ovsdb-server", ["ovs-vsctl", f"--timeout={timeout_s}", "show"]),
              ("ovs-vswitchd",
               ["ovs-appctl", f"--timeout={timeout_s}", "-t", "ovs-vswitchd", "version"]))
    for daemon, cmd in checks:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                 timeout=timeout_s + 5)
        except FileNotFoundError:
            return f"Open vSwitch is not installed ({cmd[0]} not found): run 'sudo make setup'"
        except subprocess.TimeoutExpired:
            return f"Open vSwitch does not answer ({' '.join(cmd)} timed out): " \
                   "run 'sudo make setup'"
        if out.returncode != 0:
            lines = (out.stderr.strip() or out.stdout.strip()).splitlines()
            # "ovs-vsctl: unix:...: database connection failed (...)", or an OVS log line
            # "time|seq|module|level|text": the text, without the tool's own name
            why = lines[0].split("|")[-1].strip() if lines else \
                f"{cmd[0]} exit status {out.returncode}"
            if why.startswith(cmd[0] + ":"):
                why = why[len(cmd[0]) + 1:].strip()
            return f"Open vSwitch is not running ({daemon}: {why}): start it with " \
                   "'sudo make setup'"
    return None


def existing_bridges() -> set[str]:
    out = subprocess.run(["ovs-vsctl", "--timeout=10", "list-br"], capture_output=True,
                         text=True, check=False)
    return set(out.stdout.split())


def teardown(rec: Record, grace_s: float = 10.0) -> list[str]:
    """Remove what `rec` lists. Returns a line per thing removed (for the user)."""
    done = []
    if rec.launcher_pid != os.getpid() and alive(rec.launcher_pid):
        os.kill(rec.launcher_pid, signal.SIGTERM)   # let it stop its own network
        deadline = time.time() + grace_s
        while alive(rec.launcher_pid) and time.time() < deadline:
            time.sleep(0.1)
        if alive(rec.launcher_pid):
            os.kill(rec.launcher_pid, signal.SIGKILL)
        done.append(f"stopped launcher {rec.launcher_pid}")
    for pid in rec.pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
                done.append(f"killed {pid}")
            except ProcessLookupError:
                pass
    present = existing_bridges()
    for br in rec.bridges:
        if br in present:
            subprocess.run(["ovs-vsctl", "--timeout=10", "--if-exists", "del-br", br],
                           check=False)
            done.append(f"deleted bridge {br}")
    for intf in rec.interfaces:
        if Path(f"/sys/class/net/{intf}").exists():
            subprocess.run(["ip", "link", "del", intf], check=False,
                           stderr=subprocess.DEVNULL)
            done.append(f"deleted link {intf}")
    try:
        rec.path.unlink()
    except FileNotFoundError:
        pass
    return done
