"""README "Your own Mininet": the reacting system on a plain `mn --topo tree,2,3`, no topology
file and no 802.1X, exactly as a user runs it: keys from `crs keys issue --mininet`, the
shipped `mininet/crs.mn` start-up script (its paths and port pointed at this test's), a real
`mn` process (the script `source`d at its prompt), a real controller, the agents it starts
in every host. The test drives the hosts the way `mn`'s own CLI does (`mnexec -a` into
each host's namespaces) and plays a quarantined terminal that wants out."""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from nethelpers import ROOT, framework_args

from controller.emulation.net import acquire_lock
from controller.emulation.processes import ControllerProcess, wait_until

HOSTS = [f"h{i}" for i in range(1, 10)]
CRS = [sys.executable, "-m", "controller.cli"]


class PlainMininet:
    """`mn` as a user starts it, its CLI idle on a pipe; commands go into its hosts."""

    def __init__(self, ofp_port: int, log: Path):
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(
            ["mn", "--topo", "tree,2,3", "--mac", "--switch",
             "ovs,protocols=OpenFlow13,datapath=user", "--controller",
             f"remote,ip=127.0.0.1,port={ofp_port}"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT)
        self.pids: dict[str, int] = {}

    def hosts_up(self) -> bool:
        """Each host's shell: a child of mn whose command line names it (mininet:hN)."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"mn exited with {self.proc.returncode}")
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            m = re.search(rb"mininet:(h\d+)\x00?$", cmd)
            if m and ppid == self.proc.pid:
                self.pids[m.group(1).decode()] = int(pid)
        return all(h in self.pids for h in HOSTS)

    def cli(self, line: str) -> None:
        """A line typed at the mininet> prompt."""
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def run(self, host: str, cmd: str, timeout: float = 20) -> str:
        got = subprocess.run(["mnexec", "-a", str(self.pids[host]), "sh", "-c", cmd],
                             cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        return got.stdout + got.stderr

    def ping(self, host: str, ip: str) -> bool:
        return " 1 received" in self.run(host, f"ping -c 1 -W 1 -q {ip}")

    def agents(self) -> list[int]:
        """Our agents' PIDs: processes in the hosts' shells' sessions running `crs agent`."""
        shells = set(self.pids.values())
        found = []
        for pid in os.listdir("/proc"):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                sid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
            except (OSError, IndexError, ValueError):
                continue
            if b"agent" in cmd and b"--name" in cmd and sid in shells:
                found.append(int(pid))
        return found

    def stop(self) -> None:
        agents = self.agents()
        try:
            self.proc.communicate(b"exit\n", timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=30)
        for pid in agents:          # ours, by PID (their namespaces are gone with mn)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.log.close()


@pytest.fixture
def own_net(tmp_path):
    lock = acquire_lock()
    prov, keys = tmp_path / "provisioned", tmp_path / "provisioned" / "keys.yaml"
    issued = subprocess.run([*CRS, "keys", "issue", "--mininet", *HOSTS, "--keys", str(keys),
                             "--out", str(prov)], cwd=ROOT, capture_output=True, text=True)
    assert issued.returncode == 0, issued.stderr
    shipped = yaml.safe_load((ROOT / "config" / "mininet.yaml").read_text())
    shipped["crs"].update(keys=str(keys), policy=str(ROOT / "config" / "crs_policy.yaml"))
    shipped["audit_log"] = str(tmp_path / "audit.jsonl")
    cfg = tmp_path / "mininet.yaml"
    cfg.write_text(yaml.safe_dump(shipped))
    ctl = ControllerProcess(tmp_path / "ctl", ["--config", str(cfg), *framework_args()]).start()
    script = (ROOT / "mininet" / "crs.mn").read_text()
    script = script.replace("var/provisioned", str(prov)).replace(
        "config/mininet.yaml", str(cfg)).replace(":8080", f":{ctl.rest_port}")
    (tmp_path / "crs.mn").write_text(script)
    mn = PlainMininet(ctl.ofp_port, tmp_path / "mn.log")
    try:
        wait_until(mn.hosts_up, 60, "mn's hosts")
        ctl.wait_switches(4, 30)
        mn.cli(f"source {tmp_path / 'crs.mn'}")
        yield mn, ctl, prov
    finally:
        mn.stop()
        ctl.stop()
        os.close(lock)


def level(ctl, name):
    t = next((t for t in ctl.get("/crs/v1/terminals") if t["id"] == name), None)
    return t and t["online"] and t["level"]


def test_isolation_on_a_plain_mn_tree(own_net):
    mn, ctl, prov = own_net
    # every host's agent reports through the service port; each is connected where it is
    for h in HOSTS:
        wait_until(lambda: level(ctl, h) == "COMPLIANT", 60, f"{h} COMPLIANT")
    rows = {t["id"]: t for t in ctl.get("/crs/v1/terminals")}
    assert {(rows[h]["dpid"], rows[h]["port"]) for h in ("h1", "h4", "h7")} == \
        {(2, 1), (3, 1), (4, 1)}       # tree,2,3: s2..s4 are the leaves, hosts from port 1
    st = ctl.status()["standalone"]
    assert st["connected"] == 9 and len(st["inter_switch_ports"]) == 6
    assert mn.ping("h1", "10.0.0.4") and mn.ping("h1", "10.0.0.9")

    # h1 gets infected: its next report isolates it, and only it
    subprocess.run([*CRS, "posture", str(prov / "h1.posture.json"), "--infected"], cwd=ROOT,
                   check=True, capture_output=True)
    wait_until(lambda: level(ctl, "h1") == "INFECTED", 30, "h1 INFECTED")
    wait_until(lambda: not mn.ping("h1", "10.0.0.4"), 10, "h1 cut off")
    assert not mn.ping("h4", "10.0.0.1") and mn.ping("h4", "10.0.0.7")

    # what a quarantined terminal can say with frames does not get it out: a new MAC on
    # its port, then a forged LLDP frame claiming its port is inter-switch
    mn.run("h1", "ip link set h1-eth0 address 02:66:00:00:00:01")
    assert not mn.ping("h1", "10.0.0.4")
    forged = ("import time; from scapy.all import Raw, sendp; from controller.links import "
              "Links; sendp(Raw(Links(b'guessed-secret'.ljust(32)).probe(1, 1, time.time())), "
              "iface='h1-eth0', verbose=False)")
    mn.run("h1", f"{sys.executable} -c \"{forged}\"")
    wait_until(lambda: ctl.status()["counters"].get("lldp_forged", 0) >= 1, 10,
               "the forged LLDP frame refused")
    assert level(ctl, "h1") == "INFECTED" and not mn.ping("h1", "10.0.0.4")
    mn.run("h1", "ip link set h1-eth0 address 00:00:00:00:00:01")

    # cleaned: released by its own clean report
    subprocess.run([*CRS, "posture", str(prov / "h1.posture.json"), "--clean"], cwd=ROOT,
                   check=True, capture_output=True)
    wait_until(lambda: level(ctl, "h1") == "COMPLIANT", 30, "h1 COMPLIANT again")
    wait_until(lambda: mn.ping("h1", "10.0.0.4"), 10, "h1 reaches h4 again")
