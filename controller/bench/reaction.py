"""X.1125 reaction benchmark: from a signed report leaving the terminal to the attacker's
first packet dropped at its edge port (results/bench/reaction.json).

Set-up: a real controller (authenticate + crs; a copy of config/crs_policy.yaml whose report
staleness outlasts the run) and the `minimal` network (one switch: c1t1, c1t2, update), both
terminals authenticated by our supplicant and reported clean. The attacker c1t1 sends UDP to
the victim c1t2 every millisecond, each datagram carrying its sequence number and send time;
the victim records every arrival (sender and reporter are separate processes on the
attacker, so posting a report never delays a datagram). One trial: the reporter takes t0
just before it posts a signed SCIReport with an uncleaned threat (INFECTED -> isolate); once
the victim has heard nothing for `quiet_ms`, a clean report releases the attacker and the
next trial starts when traffic arrives again. Per trial, after the run:

- reaction_first_lost_ms: send time of the first datagram that never arrived (every later
  one up to the release was lost too) minus t0: when the edge started dropping;
- reaction_last_arrival_ms: last arrival at the victim minus t0: when the victim stopped
  seeing the attacker;
- send_gap_ms: send times of the last datagram that arrived and the first lost one (the
  resolution of the two numbers above: about the sending interval);
- from the audit log (events carry `t`): t0 -> "sci_report" (network, HTTP, verification,
  SCI history commit) and "sci_report" -> "flows" (evaluation, decision commit, flow build:
  the controller's own share; the flows leave right after "flows").

The terminal program (`python -m controller.bench.reaction terminal ...`) runs on the hosts;
it is driven through its stdin/stdout, one JSON line per command.
"""
from __future__ import annotations

import argparse
import bisect
import http.client
import json
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path
from typing import Any

from controller import jsonfile
from controller.emulation.processes import (
    ROOT,
    ControllerProcess,
    Timeout,
    controller_config,
    wait_until,
)

DATAGRAM = struct.Struct("!Qd")     # sequence number, send time (Unix seconds)
UDP_PORT = 5555
ATTACKER, VICTIM = "c1t1", "c1t2"
CLEAN_POSTURE = {"os": {"name": "bench", "patch_level": 12},
                 "antivirus": {"engine": "bench", "signature_version": 2041},
                 "agent_version": "1.0.0", "firewall": True, "threats": [], "attackers": []}
INFECTED_POSTURE = {**CLEAN_POSTURE,
                    "threats": [{"name": "Worm.Bench", "count": 1, "cleaned": False}]}


# --- the terminal program (runs on a Mininet host) -----------------------------------------

class Terminal:
    """Sends datagrams every `interval_s` to a target and/or records arrivals on a port, and
    posts signed reports on command. Records live in memory and are dumped on `quit`."""

    def __init__(self, keys_file: Path, scs_url: str, target: tuple[str, int] | None,
                 listen: int | None, interval_s: float, dump: Path):
        keys = jsonfile.read(keys_file)
        if keys is None:
            raise ValueError(f"{keys_file}: no keys (not a JSON object, or missing)")
        self.identity: str = keys["identity"]
        self.key = bytes.fromhex(keys["crs_report_key"])
        self.scs_url = scs_url
        self.poster = None
        self.target, self.listen, self.interval_s, self.dump = target, listen, interval_s, dump
        self.sent = array("d")                          # send time per sequence number
        self.rx_seq, self.rx_sent, self.rx_at = array("Q"), array("d"), array("d")
        self.seq: int | None = None
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        if self.listen is not None:
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rx.bind(("0.0.0.0", self.listen))
            rx.settimeout(0.2)
            self.threads.append(threading.Thread(target=self._receive, args=(rx,), daemon=True))
        if self.target is not None:
            self.threads.append(threading.Thread(target=self._send, daemon=True))
        for t in self.threads:
            t.start()

    def _send(self) -> None:
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        nxt = time.time()
        while not self.stop.is_set():
            now = time.time()
            if now < nxt:
                time.sleep(nxt - now)
                continue
            seq = len(self.sent)
            t = time.time()
            self.sent.append(t)
            try:
                tx.sendto(DATAGRAM.pack(seq, t), self.target)
            except OSError:      # no ARP answer yet, a full queue: the datagram is lost
                pass
            nxt = max(nxt + self.interval_s, t)   # keep the spacing, never burst to catch up

    def _receive(self, rx: socket.socket) -> None:
        while not self.stop.is_set():
            try:
                data = rx.recv(64)
            except socket.timeout:
                continue
            at = time.time()
            if len(data) == DATAGRAM.size:
                seq, sent = DATAGRAM.unpack(data)
                self.rx_seq.append(seq)
                self.rx_sent.append(sent)
                self.rx_at.append(at)

    def report(self, infected: bool) -> dict[str, Any]:
        """Post one signed SCIReport; t0 is taken just before the request leaves."""
        from controller.crs import messages as crsap
        from controller.crs.agent import sci_from_posture
        posture = INFECTED_POSTURE if infected else CLEAN_POSTURE
        body = {"ms_id": self.identity, "sci": sci_from_posture(posture)}
        now = time.time()
        self.seq = crsap.next_seq(self.seq, now)
        raw = crsap.encode("SCIReport", self.identity, self.seq, now, body, self.key)
        if self.poster is None:     # as the agent sends: one kept-alive connection
            from controller.httpclient import Poster
            self.poster = Poster(self.scs_url + crsap.HTTP_PATH, 10)
        t0 = time.time()
        try:
            status, payload = self.poster.post(raw, crsap.MAX_SIZE)
        except (OSError, http.client.HTTPException) as exc:
            return {"t0": t0, "status": None, "error": str(exc)}
        t1 = time.time()
        level = None
        if status == 200:
            try:
                level = crsap.decode(payload).body.get("level")
            except crsap.BadMessage:
                level = None
        return {"t0": t0, "status": status, "http_ms": (t1 - t0) * 1e3, "level": level,
                "sent_seq": len(self.sent)}

    def last(self) -> dict[str, Any]:
        n = len(self.rx_at)
        if not n:
            return {"n": 0, "seq": None, "sent": None, "at": None, "now": time.time()}
        return {"n": n, "seq": self.rx_seq[n - 1], "sent": self.rx_sent[n - 1],
                "at": self.rx_at[n - 1], "now": time.time()}

    def quit(self) -> dict[str, Any]:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=2)
        with open(self.dump, "wb") as fh:
            for arr in (array("Q", [len(self.sent), len(self.rx_at)]), self.sent,
                        self.rx_seq, self.rx_sent, self.rx_at):
                arr.tofile(fh)
        return {"sent": len(self.sent), "received": len(self.rx_at), "dump": str(self.dump)}


def load_dump(path: Path) -> dict[str, array]:
    """The arrays a terminal program wrote on `quit`."""
    with open(path, "rb") as fh:
        head = array("Q")
        head.fromfile(fh, 2)
        n_sent, n_rx = head
        out: dict[str, array] = {}
        for name, code, n in (("sent", "d", n_sent), ("rx_seq", "Q", n_rx),
                              ("rx_sent", "d", n_rx), ("rx_at", "d", n_rx)):
            a = array(code)
            a.fromfile(fh, n)
            out[name] = a
    return out


def terminal_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m controller.bench.reaction terminal")
    ap.add_argument("--keys", type=Path, required=True)
    ap.add_argument("--scs", required=True, help="http://10.0.100.254:PORT")
    ap.add_argument("--send-to", help="IP:PORT to send datagrams to")
    ap.add_argument("--listen", type=int, help="UDP port to record arrivals on")
    ap.add_argument("--interval-ms", type=float, default=1.0)
    ap.add_argument("--dump", type=Path, required=True)
    a = ap.parse_args(argv)
    target = None
    if a.send_to:
        ip, port = a.send_to.rsplit(":", 1)
        target = (ip, int(port))
    term = Terminal(a.keys, a.scs, target, a.listen, a.interval_ms / 1e3, a.dump)
    term.start()
    print(json.dumps({"ready": True, "identity": term.identity}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "report":
            out = term.report(infected=cmd[1:2] == ["infected"])
        elif cmd[0] == "last":
            out = term.last()
        elif cmd[0] == "quit":
            print(json.dumps(term.quit()), flush=True)
            return 0
        else:
            out = {"error": f"unknown command {cmd[0]!r}"}
        print(json.dumps(out), flush=True)
    term.quit()
    return 0


# --- analysis (pure) -----------------------------------------------------------------------

def arrivals(rx_seq: array, rx_at: array) -> dict[int, float]:
    """First arrival time per sequence number."""
    out: dict[int, float] = {}
    for seq, at in zip(rx_seq, rx_at):
        out.setdefault(seq, at)
    return out


def analyse_trial(t0: float, t_release: float, sent: array,
                  arrived: dict[int, float]) -> dict[str, Any]:
    """One trial from the raw records (`sent`: send time per sequence number, rising).

    The first lost datagram is the one after the last datagram sent before the release that
    arrived: every datagram from it up to the release was lost. A trial in which that
    datagram was sent before t0 (traffic already blocked) or nothing was lost is invalid."""
    start = bisect.bisect_left(sent, t0)
    seq = bisect.bisect_left(sent, t_release) - 1
    while seq >= 0 and seq not in arrived:
        seq -= 1
    first_lost = seq + 1
    if first_lost >= len(sent) or sent[first_lost] >= t_release:
        return {"valid": False, "why": "no datagram lost before the release"}
    if first_lost < start:
        return {"valid": False, "why": "traffic was already blocked before the report"}
    last_at = arrived[seq] if seq >= 0 else None
    before = sum(1 for s in range(start, first_lost) if s not in arrived)
    return {"valid": True,
            "reaction_first_lost_ms": (sent[first_lost] - t0) * 1e3,
            "reaction_last_arrival_ms": (last_at - t0) * 1e3 if last_at is not None else None,
            "lost_before_block": before,
            "send_gap_ms": (sent[first_lost] - sent[seq]) * 1e3 if seq >= 0 else None}


def audit_times(audit_file: Path, identity: str, t0s: list[float]) -> list[dict[str, Any]]:
    """Per trial: t0 -> "sci_report" and "sci_report" -> "flows" (INFECTED) in ms."""
    events = [rec for rec in jsonfile.read_lines(audit_file)
              if rec.get("terminal") == identity and rec.get("level") == "INFECTED"
              and rec.get("event") in ("sci_report", "flows")]
    out = []
    for i, t0 in enumerate(t0s):
        nxt = t0s[i + 1] if i + 1 < len(t0s) else float("inf")
        rep = next((e for e in events if e["event"] == "sci_report" and t0 <= e["t"] < nxt),
                   None)
        flo = next((e for e in events if e["event"] == "flows" and rep is not None
                    and rep["t"] <= e["t"] < nxt), None)
        out.append({"report_to_controller_ms": (rep["t"] - t0) * 1e3 if rep else None,
                    "controller_report_to_flows_ms":
                        (flo["t"] - rep["t"]) * 1e3 if rep and flo else None})
    return out


def histogram_totals(exposition: str) -> dict[str, tuple[float, float]]:
    """(sum of seconds, count) of each histogram in a GET /metrics answer, by name
    (`crs_store_commit_seconds`, `crs_reaction_seconds`, ...)."""
    from prometheus_client.parser import text_string_to_metric_families
    out: dict[str, tuple[float, float]] = {}
    for fam in text_string_to_metric_families(exposition):
        if fam.type == "histogram":
            got = {s.name: s.value for s in fam.samples}
            out[fam.name] = (got.get(f"{fam.name}_sum", 0.0), got.get(f"{fam.name}_count", 0.0))
    return out


def controller_means(before: dict[str, tuple[float, float]],
                     after: dict[str, tuple[float, float]]) -> dict[str, float | None]:
    """Mean ms per observation between two scrapes: the store's commit (its disk sync) and
    a report's arrival -> its decision's flows written to the switch (the commit included),
    the parts of the reaction the audit log cannot time (its lines precede the commit)."""
    def mean(name: str) -> float | None:
        s0, n0 = before.get(name, (0.0, 0.0))
        s1, n1 = after.get(name, (0.0, 0.0))
        return (s1 - s0) / (n1 - n0) * 1e3 if n1 > n0 else None
    return {"store_commit_mean_ms": mean("crs_store_commit_seconds"),
            "arrival_to_flows_sent_mean_ms": mean("crs_reaction_seconds")}


def counter_means(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float | None]:
    """Means over the trials from the controller's counters (GET status): a disk sync of the
    store (in a native thread or inline), how long outputs waited for one (the decision's
    flows, held until the sync that covers its commit), and the core's CPU per CRSAP group
    (one report each here): the parts of "arrival -> flows sent"."""
    def d(key: str) -> int:
        return int(after.get(key, 0)) - int(before.get(key, 0))

    def per(total: str, *counts: str, scale: float = 1e-3) -> float | None:
        n = sum(d(c) for c in counts)
        return d(total) / n * scale if n > 0 else None
    return {"store_sync_mean_ms": per("time_store_sync_us", "store_syncs", "store_syncs_inline"),
            "outputs_held_mean_ms": per("time_store_held_us", "store_outputs_held"),
            "crsap_core_per_group_ms": per("time_crsap_core_us", "crsap_group_commits"),
            # how many of those syncs ran on the event loop itself (no thread's hand-offs)
            "store_syncs_inline_share": per("store_syncs_inline", "store_syncs",
                                            "store_syncs_inline", scale=1.0)}


# --- the benchmark -------------------------------------------------------------------------

def write_configs(run_dir: Path, topo_file: str) -> Path:
    """Controller config + a policy copy whose reports stay fresh for the whole run."""
    import yaml

    from controller.config import load_yaml
    from controller.crs.policy import load_policy
    policy = load_yaml(ROOT / "config/crs_policy.yaml")
    policy["report"]["stale_after_s"] = 3600.0
    pfile = run_dir / "crs_policy.yaml"
    pfile.write_text(yaml.safe_dump(policy, sort_keys=False))
    load_policy(pfile)          # the copy must still pass the policy checks
    cfg = run_dir / "controller.yaml"
    controller_config(cfg, ROOT / topo_file, crs=True, policy=pfile,
                      audit_log=run_dir / "audit.jsonl", session_s=3600)
    return cfg


class _Prog:
    """A terminal program on a host, driven one JSON line at a time."""

    def __init__(self, proc: subprocess.Popen, name: str):
        self.proc, self.name = proc, name
        ready = self._read(30)
        if not ready.get("ready"):
            raise RuntimeError(f"terminal program on {name} did not start: {ready}")

    def _read(self, timeout: float) -> dict[str, Any]:
        import select
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"terminal program on {self.name}: no answer in {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"terminal program on {self.name} exited "
                               f"({self.proc.poll()})")
        return json.loads(line)

    def ask(self, cmd: str, timeout: float = 15) -> dict[str, Any]:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)


def run(out_dir: str = "results/bench", trials: int = 100, interval_ms: float = 1.0,
        quiet_ms: float = 150.0, topology_file: str = "topologies/minimal.yaml",
        keep_dir: str | None = None, profile: bool = False) -> dict[str, Any]:
    """Measure `trials` isolate reactions; write reaction.json and print a table.
    `keep_dir` keeps the run directory (audit log, raw records, logs) for inspection;
    `profile` writes the controller process's cProfile next to it (reaction.prof)."""
    if trials < 1 or not 0.1 <= interval_ms <= 1000 or quiet_ms < 10 * interval_ms:
        raise ValueError("need trials >= 1, interval_ms in 0.1..1000 and quiet_ms >= "
                         "10 sending intervals")
    from controller import topology
    from controller.admission.credentials import load_credentials
    from controller.bench import common, floors
    from controller.emulation.net import start_network

    topo = topology.load(ROOT / topology_file)
    creds = load_credentials(ROOT / "config/credentials.yaml")
    tmp = tempfile.TemporaryDirectory(prefix="crs-reaction-") if keep_dir is None else None
    run_dir = Path(keep_dir or tmp.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    store_fs = common.filesystem(run_dir)      # the controller's store is in run_dir
    machine_floors = floors.measure_or_error(run_dir)   # (before anything else runs)
    py = sys.executable
    records: list[dict[str, Any]] = []
    failures: list[str] = []
    try:
        cfg = write_configs(run_dir, topology_file)
        prof = Path(out_dir).resolve() / "reaction.prof" if profile else None
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        with ControllerProcess(run_dir / "controller", ["--config", str(cfg)] +
                               (["--profile", str(prof)] if prof else [])) as ctl:
            emu = start_network(topo, ctl)      # stopped in finally
            try:
                scs = f"http://{topo.service_ip}:{ctl.rest_port}"
                keys = {}
                for host in (ATTACKER, VICTIM):
                    ident = f"{host}@crs.example"
                    keys[host] = run_dir / f"keys-{host}.json"
                    emu.popen(host, [py, "-m", "controller.admission.supplicant_main",
                                     "--interface", f"{host}-eth0", "--identity", ident,
                                     "--psk", creds.demo_psk(ident).hex(),
                                     "--keys-out", str(keys[host])],
                              cwd=str(ROOT), stdout=open(run_dir / f"sup-{host}.log", "wb"),
                              stderr=subprocess.STDOUT)
                wait_until(lambda: all(k.exists() for k in keys.values()), 30,
                           "both terminals authenticated")

                def start(host: str, role: str, extra: list[str]) -> _Prog:
                    proc = emu.popen(host, [py, "-m", "controller.bench.reaction", "terminal",
                                            "--keys", str(keys[host]), "--scs", scs,
                                            "--interval-ms", str(interval_ms),
                                            "--dump", str(run_dir / f"dump-{role}.bin"),
                                            *extra],
                                     cwd=str(ROOT), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=open(run_dir / f"prog-{role}.log", "wb"),
                                     text=True, bufsize=1)
                    return _Prog(proc, f"{host} ({role})")
                victim = start(VICTIM, "victim", ["--listen", str(UDP_PORT)])
                # sender and reporter are separate processes on the attacker, so that
                # building and posting a report never delays a datagram (one GIL each)
                sender = start(ATTACKER, "sender", ["--send-to",
                                                    f"{topo.host(VICTIM).ip}:{UDP_PORT}"])
                attacker = start(ATTACKER, "reporter", [])
                for prog in (victim, attacker):
                    r = prog.ask("report clean")
                    if r.get("level") != "COMPLIANT":
                        raise RuntimeError(f"{prog.name}: first clean report answered {r}")

                def flowing(after: float) -> bool:
                    r = victim.ask("last")
                    return r["sent"] is not None and r["sent"] > after

                wait_until(lambda: flowing(time.time() - 0.05), 20, "attacker traffic flowing")
                quiet = quiet_ms / 1e3
                metrics_before = histogram_totals(_metrics(ctl.rest_port))
                counters_before = ctl.status().get("counters", {})
                for i in range(trials):
                    rep = attacker.ask("report infected")
                    if rep.get("level") != "INFECTED":
                        failures.append(f"trial {i}: infected report answered {rep}")
                        break

                    def silent() -> bool:
                        r = victim.ask("last")
                        return r["at"] is not None and r["now"] - r["at"] > quiet
                    try:
                        wait_until(silent, 5, "victim hears nothing more", interval=0.02)
                    except Timeout as exc:
                        failures.append(f"trial {i}: {exc}")
                    rel = attacker.ask("report clean")
                    if rel.get("level") != "COMPLIANT":
                        failures.append(f"trial {i}: clean report answered {rel}")
                        break
                    records.append({"t0": rep["t0"], "t_release": rel["t0"],
                                    "http_ms": rep["http_ms"]})
                    wait_until(lambda: flowing(rel["t0"]), 10, "traffic after release",
                               interval=0.01)
                    if (i + 1) % 20 == 0:
                        print(f"trial {i + 1}/{trials}", flush=True)
                means = controller_means(metrics_before,
                                         histogram_totals(_metrics(ctl.rest_port)))
                means.update(counter_means(counters_before,
                                           ctl.status().get("counters", {})))
                for prog in (sender, attacker, victim):
                    prog.ask("quit")
            finally:
                emu.stop()
            sent = load_dump(run_dir / "dump-sender.bin")["sent"]
            rx = load_dump(run_dir / "dump-victim.bin")
        result = summarise(records, sent, rx, run_dir / "audit.jsonl",
                           f"{ATTACKER}@crs.example")
    finally:
        if tmp is not None:
            tmp.cleanup()
    result["parameters"] = {"topology": topo.name, "trials": trials, "interval_ms": interval_ms,
                            "quiet_ms": quiet_ms, "attacker": ATTACKER, "victim": VICTIM,
                            "store_filesystem": store_fs,
                            "policy": "config/crs_policy.yaml (stale_after_s 3600)",
                            "report": "SCIReport with an uncleaned threat -> INFECTED -> isolate",
                            "release": "clean SCIReport -> COMPLIANT"}
    result["failures"] = failures
    result["controller_means"] = means
    result["machine_floors"] = machine_floors
    path = common.write(out_dir, "reaction", result)
    rows = [[k, *(result[k][c] for c in ("p50", "p99", "min", "max", "n"))]
            for k in ("reaction_first_lost_ms", "reaction_last_arrival_ms", "send_gap_ms",
                      "report_http_ms",
                      "report_to_controller_ms", "controller_report_to_flows_ms")]
    print(common.table(rows, ["ms", "p50", "p99", "min", "max", "n"]))
    print(common.table([[k, "-" if v is None else f"{v:.3g}"] for k, v in means.items()],
                       ["controller, over the trials (/metrics, counters)", "mean"]))
    print(common.table(floors.rows(machine_floors),
                       ["this machine (before its controllers)", "median"]))
    if failures:
        print(f"{len(failures)} failures, first: {failures[0]}")
    print(f"written: {path}")
    return result


def _metrics(rest_port: int) -> str:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/metrics", timeout=10) as r:
        return r.read().decode()


def summarise(records: list[dict[str, Any]], sent: array, rx: dict[str, array],
              audit_file: Path, identity: str) -> dict[str, Any]:
    from controller.bench import common
    per = []
    audit = audit_times(audit_file, identity, [r["t0"] for r in records])
    arrived = arrivals(rx["rx_seq"], rx["rx_at"])
    for rec, aud in zip(records, audit):
        a = analyse_trial(rec["t0"], rec["t_release"], sent, arrived)
        per.append({**rec, **a, **aud})
    valid = [p for p in per if p["valid"]]

    def col(key: str, rows: list[dict[str, Any]]) -> list[float]:
        return [r[key] for r in rows if r.get(key) is not None]
    return {
        "reaction_first_lost_ms": common.summary(col("reaction_first_lost_ms", valid)),
        "reaction_last_arrival_ms": common.summary(col("reaction_last_arrival_ms", valid)),
        "report_http_ms": common.summary(col("http_ms", per)),
        "report_to_controller_ms": common.summary(col("report_to_controller_ms", per)),
        "controller_report_to_flows_ms": common.summary(col("controller_report_to_flows_ms",
                                                            per)),
        "send_gap_ms": common.summary(col("send_gap_ms", valid)),
        "trials_valid": len(valid), "trials_invalid": len(per) - len(valid),
        "lost_before_block_total": sum(p.get("lost_before_block", 0) for p in valid),
        "datagrams_sent": len(sent), "datagrams_received": len(rx["rx_at"]),
        "trials": per,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["terminal"]:
        return terminal_main(argv[1:])
    from controller.bench import common
    ap = argparse.ArgumentParser(prog="crs bench reaction", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--interval-ms", type=common.interval_ms, default=1.0,
                    help="the attacker's sending interval: the first lost datagram is late by "
                         "up to this (0.1..1000)")
    ap.add_argument("--workdir", "--keep-dir", dest="keep_dir", metavar="DIR",
                    help="the controller's store, logs and the run's records here, kept "
                         "(tmpfs: no sync cost)")
    ap.add_argument("--profile", action="store_true",
                    help="write the controller's cProfile next to the JSON")
    a = ap.parse_args(argv)
    run(a.out, trials=a.trials, interval_ms=a.interval_ms, keep_dir=a.keep_dir,
        profile=a.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
