"""crs bench failover: two controllers on one PostgreSQL store (a private cluster), every switch
connected to both; the leader is SIGKILLed `trials` times, each time restarted as standby.

Per takeover: leader killed -> first packet-in served by the new leader (a terminal asks the
server's address with ARP every 5 ms; ARP requests go through the leader, so the first answer
after the kill is the new leader's work: `takeover_ms`), -> the standby reports itself
leader (`takeover_role_ms`), -> a terminal that starts authenticating at the kill is admitted
(`takeover_auth_ms`; the supplicant repeats EAPOL-Start every second while nobody answers).
Throughout, a quarantined terminal pings its neighbour 100 times a second: `leaked_packets`
counts those that arrive (must be 0); after each takeover the admitted terminal must still
reach its server (`admitted_lost` counts those that did not, must be 0). Last, reports per
second end to end into one controller on SQLite and on PostgreSQL, same population, same run
(`postgres_over_sqlite_reports`).
"""
from __future__ import annotations

import argparse
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from controller.bench import common
from controller.emulation.processes import (
    ROOT,
    ControllerProcess,
    controller_config,
    free_port,
    wait_until,
)

PY = str(ROOT / ".venv/bin/python")
TOPO = "topologies/minimal.yaml"
UPDATE = "10.0.100.20"


# --- the ARP probe (runs inside the terminal's namespace) -----------------------------------

def arp_probe(iface: str, src_mac: str, src_ip: str, dst_ip: str, interval_s: float,
              out: str) -> None:
    """Ask for `dst_ip` every `interval_s`; append the wall-clock time of every answer to
    `out` (one per line, flushed) until killed."""
    mac = bytes.fromhex(src_mac.replace(":", ""))
    req = (b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac
           + socket.inet_aton(src_ip) + b"\x00" * 6 + socket.inet_aton(dst_ip))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind((iface, 0))
    s.settimeout(interval_s)
    with open(out, "a", buffering=1) as f:
        nxt = 0.0
        while True:
            now = time.time()
            if now >= nxt:
                s.send(req)
                nxt = now + interval_s
            try:
                data = s.recv(128)
            except socket.timeout:
                continue
            if data[20:22] == b"\x00\x02" and data[28:32] == socket.inet_aton(dst_ip):
                f.write(f"{time.time():.6f}\n")


# --- the benchmark ---------------------------------------------------------------------------

class Pair:
    """Two controllers sharing a store, started and restarted on the same ports."""

    def __init__(self, work: Path, cfg: Path, dsn: str, via: dict[str, str] | None = None):
        """`via`: a controller's own way to the store (another DSN), by name."""
        self.work, self.cfg, self.dsn, self.via = work, cfg, dsn, via or {}
        self.ctls = {n: self._proc(n) for n in ("a", "b")}

    def _proc(self, name: str, old: ControllerProcess | None = None) -> ControllerProcess:
        w = self.work / name
        return ControllerProcess(w, ["--config", str(self.cfg), "--store",
                                     self.via.get(name, self.dsn),
                                     "--token-file", str(w / "operator.token")],
                                 ofp_port=old.ofp_port if old else None,
                                 rest_port=old.rest_port if old else None)

    def role(self, name: str) -> str | None:
        try:
            return self.ctls[name].status().get("ha", {}).get("role")
        except (OSError, RuntimeError):
            return None

    def leader(self) -> str | None:
        return next((n for n in self.ctls if self.role(n) == "leader"), None)

    def restart(self, name: str) -> None:
        self.ctls[name] = self._proc(name, self.ctls[name]).start()

    def stop(self) -> None:
        for c in self.ctls.values():
            c.stop()


def ha_config(work: Path, lease_s: float) -> Path:
    """The controllers' configuration: authentication, the reacting system (reports stay
    fresh for the run), several controllers with a `lease_s` lease and a service port
    that moves with leadership (`ha_service_port` reads it back)."""
    import yaml
    policy = yaml.safe_load((ROOT / "config/crs_policy.yaml").read_text())
    policy["report"] = {"interval_s": 2, "stale_after_s": 3600}
    (work / "policy.yaml").write_text(yaml.safe_dump(policy))
    return Path(controller_config(work / "controller.yaml", ROOT / TOPO, crs=True,
                                  policy=work / "policy.yaml",
                                  extra={"ha": {"enabled": True, "lease_s": lease_s,
                                                "service_port": free_port()}})[1])


def ha_service_port(cfg: Path) -> int:
    import yaml
    return int(yaml.safe_load(cfg.read_text())["ha"]["service_port"])


def supplicant(emu: Any, work: Path, host: str, keys: Path, creds: Any) -> subprocess.Popen:
    """Our supplicant on `host`, writing its keys to `keys` (removed first)."""
    ident = f"{host}@crs.example"
    keys.unlink(missing_ok=True)
    return emu.popen(host, [PY, "-m", "controller.admission.supplicant_main", "--interface",
                            f"{host}-eth0", "--identity", ident, "--psk",
                            creds.demo_psk(ident).hex(), "--keys-out", str(keys)],
                     stdout=open(work / f"sup-{host}.log", "ab"), stderr=subprocess.STDOUT)


def clean_report(keys: Path, host: str, rest_port: int, base: str | None = None) -> int:
    """A signed clean SCIReport as the terminal's agent would send it, to the controller's
    `rest_port` on loopback or to `base` (e.g. the service address): the HTTP status."""
    import urllib.error
    import urllib.request

    from controller import jsonfile
    from controller.crs import messages as crsap
    from controller.crs.agent import sci_from_posture
    ident = f"{host}@crs.example"
    key = bytes.fromhex(jsonfile.read(keys)["crs_report_key"])
    posture = {"os": {"patch_level": 12}, "antivirus": {"signature_version": 2041},
               "agent_version": "1.0.0", "firewall": True, "threats": [], "attackers": []}
    raw = crsap.encode("SCIReport", ident, int(time.time() * 1000), time.time(),
                       {"ms_id": ident, "sci": sci_from_posture(posture)}, key)
    base = base or f"http://127.0.0.1:{rest_port}"
    req = urllib.request.Request(f"{base}{crsap.HTTP_PATH}", data=raw, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _tcp_ok(host: Any, ip: str, port: int) -> bool:
    out = host.cmd(f"timeout 2 bash -c 'exec 3<>/dev/tcp/{ip}/{port}' && echo OPEN")
    return "OPEN" in out


def takeovers(work: Path, trials: int, lease_s: float) -> dict[str, Any]:
    from controller import topology
    from controller.admission.credentials import load_credentials
    from controller.emulation.net import start_network
    from controller.emulation.pgcluster import Cluster
    creds = load_credentials(ROOT / "config/credentials.yaml")
    cfg = ha_config(work, lease_s)
    pg = Cluster().start()
    pair = emu = None
    procs: list[subprocess.Popen] = []
    try:
        pair = Pair(work, cfg, pg.new_database())
        pair.ctls["a"].start()
        wait_until(lambda: pair.role("a") == "leader", 10, "A leads")
        pair.ctls["b"].start()
        topo = topology.load(ROOT / TOPO)
        emu = start_network(topo, pair.ctls["a"], more=(pair.ctls["b"],))
        procs.append(emu.popen("update", ["python3", "-m", "http.server", "80", "--bind",
                                          UPDATE], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL))
        keys = {h: work / f"keys-{h}.json" for h in ("c1t1", "c1t2")}
        sups = {}
        for h in keys:
            sups[h] = supplicant(emu, work, h, keys[h], creds)
            procs.append(sups[h])
            wait_until(keys[h].exists, 30, f"{h} authenticated")
            clean_report(keys[h], h, pair.ctls["a"].rest_port)
        c1, c2 = emu.host("c1t1"), emu.host("c1t2")
        wait_until(lambda: _tcp_ok(c1, UPDATE, 80), 20, "c1t1 reaches the server")
        wait_until(lambda: "1 received" in c2.cmd("ping -c1 -W1 10.0.1.1"), 15,
                   "c1t2 reaches c1t1")
        row = pair.ctls["a"].request("POST", "/crs/v1/terminals/c1t2/quarantine", {})
        if row.get("http_status"):
            raise RuntimeError(f"quarantine refused: {row}")
        wait_until(lambda: "0 received" in c2.cmd("ping -c1 -W1 10.0.1.1"), 10, "quarantine")
        cap = c1.popen(["tcpdump", "-n", "-l", "-i", "c1t1-eth0", "icmp and src 10.0.1.2"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(c2.popen(["ping", "-i", "0.01", "10.0.1.1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL))
        answers = work / "arp-answers.txt"
        procs.append(emu.popen("c1t1", [PY, "-m", "controller.bench.failover", "arp-probe",
                                        "c1t1-eth0", topo.host("c1t1").mac,
                                        topo.host("c1t1").ip, UPDATE, "0.005", str(answers)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_until(lambda: answers.exists() and answers.read_text().strip(), 10,
                   "ARP answers through the leader")
        first_pi, role_ms, auth_ms, lost = [], [], [], 0
        for i in range(trials):
            leader = pair.leader()
            other = "b" if leader == "a" else "a"
            new_keys = work / f"keys-trial{i}.json"
            sups["c1t1"].kill()      # (SIGKILL: no Logoff) its successor starts at the kill
            t_kill = time.time()
            pair.ctls[leader].kill()
            sups["c1t1"] = supplicant(emu, work, "c1t1", new_keys, creds)
            procs.append(sups["c1t1"])
            wait_until(lambda: pair.role(other) == "leader", 30, "the standby leads")
            role_ms.append((time.time() - t_kill) * 1e3)
            wait_until(new_keys.exists, 30, "an authentication through the new leader",
                       interval=0.01)
            # when the supplicant wrote its keys (it may be done before the role is seen)
            auth_ms.append((new_keys.stat().st_mtime - t_kill) * 1e3)
            later = wait_until(lambda: [float(x) for x in answers.read_text().split()
                                        if float(x) > t_kill + 0.01], 10, "an ARP answer")
            first_pi.append((min(later) - t_kill) * 1e3)
            if not _tcp_ok(c1, UPDATE, 80):
                lost += 1
            pair.restart(leader)
            wait_until(lambda: pair.role(leader) == "standby", 20, "the old leader stands by")
            print(f"trial {i + 1}/{trials}: first packet-in {first_pi[-1]:.0f} ms, role "
                  f"{role_ms[-1]:.0f} ms, authentication {auth_ms[-1]:.0f} ms", flush=True)
        time.sleep(0.5)     # the last pings of the quarantined terminal have arrived or not
        cap.terminate()
        seen, _ = cap.communicate(timeout=10)
        leaked = sum(1 for line in seen.splitlines() if "10.0.1.2" in line)
        return {"takeover_ms": common.summary(first_pi),
                "takeover_role_ms": common.summary(role_ms),
                "takeover_auth_ms": common.summary(auth_ms),
                "leaked_packets": leaked, "admitted_lost": lost}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        if emu is not None:
            emu.stop()
        if pair is not None:
            pair.stop()
        pg.stop()


def reports_both(work: Path, terminals: int, duration_s: float,
                 rounds: int = 3) -> dict[str, Any]:
    """Reports/s end to end into one controller on SQLite and one on PostgreSQL, both
    running, loaded in turn `rounds` times (this machine's speed drifts by tens of percent
    over a minute: alternating keeps both sides under the same drift). Each side's figure
    is the median of its rounds; the ratio is the median of the rounds' ratios."""
    from contextlib import ExitStack
    from statistics import median

    from controller.bench import reports
    from controller.bench.reaction import write_configs
    from controller.crs.policy import load_policy
    from controller.emulation.pgcluster import Cluster
    cfg = write_configs(work, reports.TOPOLOGY)
    policy = load_policy(work / "crs_policy.yaml")
    terms = reports.population(terminals, 10)
    kinds = ("sqlite", "postgresql")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    pg = Cluster().start()
    try:
        with ExitStack() as stack:
            ctls = {}
            for kind in kinds:
                target = str(work / "reports.db") if kind == "sqlite" else pg.new_database()
                reports.populate_store(target, terms, policy, time.time())
                d = work / f"ctl-{kind}"
                ctls[kind] = stack.enter_context(ControllerProcess(
                    d, ["--config", str(cfg), "--store", target, "--token-file",
                        str(d / "operator.token"), "--rest-host", "127.0.0.1"]))
            for r in range(rounds):
                for kind in kinds:
                    # one load process, 4 kept-alive connections (as 4 agents post)
                    runs[kind].append(reports.load(ctls[kind].rest_port, terms, 1, 4,
                                                   2.0 if r == 0 else 0.5, duration_s))
    finally:
        pg.stop()
    out: dict[str, Any] = {}
    for kind in kinds:
        rates = [e["accepted_per_s"] for e in runs[kind]]
        statuses: dict[str, int] = {}
        for e in runs[kind]:
            for k, v in e["statuses"].items():
                statuses[k] = statuses.get(k, 0) + v
        out[kind] = {"accepted_per_s": median(rates), "rounds_per_s": rates,
                     "latency_ms": common.summary([x for e in runs[kind] for x in e["lat_ms"]]),
                     "statuses": statuses}
    ratios = [p / s_ for s_, p in zip(out["sqlite"]["rounds_per_s"],
                                       out["postgresql"]["rounds_per_s"]) if s_]
    out["ratio_rounds"] = ratios
    out["ratio"] = median(ratios) if ratios else None
    return out


def run(out_dir: str = "results/bench", trials: int = 10, lease_s: float = 1.0,
        report_terminals: int = 1000, report_duration_s: float = 5.0,
        keep_dir: str | None = None) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="crs-failover-") if keep_dir is None else None
    work = Path(keep_dir or tmp)
    work.mkdir(parents=True, exist_ok=True)
    try:
        t = time.monotonic()
        (work / "ha").mkdir(exist_ok=True)
        result = takeovers(work / "ha", trials, lease_s)
        rep = reports_both(work, report_terminals, report_duration_s)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    result["reports"] = rep
    sq, pgr = rep["sqlite"]["accepted_per_s"], rep["postgresql"]["accepted_per_s"]
    result["postgres_over_sqlite_reports"] = rep["ratio"]
    result["parameters"] = {"trials": trials, "lease_s": lease_s, "topology": TOPO,
                            "probe": "ARP request for the server every 5 ms from c1t1",
                            "report_terminals": report_terminals,
                            "report_duration_s": report_duration_s}
    result["duration_s"] = time.monotonic() - t
    path = common.write(out_dir, "failover", result)
    rows = [[k, result[k]["p50"], result[k]["p99"], result[k]["n"]]
            for k in ("takeover_ms", "takeover_role_ms", "takeover_auth_ms")]
    print(common.table(rows, ["leader killed ->", "p50 ms", "p99 ms", "n"]))
    print(common.table([["leaked packets (quarantined terminal)", result["leaked_packets"]],
                        ["admitted terminals that lost access", result["admitted_lost"]],
                        ["reports/s SQLite", sq], ["reports/s PostgreSQL", pgr],
                        ["PostgreSQL / SQLite", result["postgres_over_sqlite_reports"]]],
                       ["measurement", "value"]))
    print(f"written: {path}")
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["arp-probe"]:
        iface, mac, ip, dst, interval, out = argv[1:7]
        arp_probe(iface, mac, ip, dst, float(interval), out)
        return 0
    ap = argparse.ArgumentParser(prog="crs bench failover", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "results" / "bench"))
    ap.add_argument("--trials", type=int, default=10)
    a = ap.parse_args(argv)
    run(a.out, a.trials)
    return 0


if __name__ == "__main__":
    sys.exit(main())
