"""Roaming between CRS domains on one Mininet (X.1125 13.3, 13.4), against real controllers.

topologies/roaming.yaml: a home domain (core, service network, cell1: c1t1..c1t3) run by one
`crs controller`, a visited domain (bs2, c2t1) run by another, and a switch without any
controller (a network without CRS). A host moves by moving its link between access switches;
it authenticates again in the visited domain (the same subscriber file in both: shared
credentials). The visited SCS asks the home SCS over HTTP (signed with the key both read
from a 0600 file) and holds the terminal at UNKNOWN until it has the answer.

The terminals play the attacker: a quarantined one moves hoping the visited SCS does not
know it, then posts forged and replayed transfers to the visited controller's endpoint."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import yaml
from nethelpers import CREDS, PY, ROOT, framework_args, ping, tcp_ok

from controller import jsonfile, topology
from controller.bench import wpa
from controller.crs import messages as crsap
from controller.crs.agent import sci_from_posture
from controller.emulation.net import start_network
from controller.emulation.processes import (
    ControllerProcess,
    controller_config,
    free_port,
    wait_until,
)

TOPO = ROOT / "topologies" / "roaming.yaml"
MAIL, SERVICE, C2T1, UPDATE = "10.0.100.11", "10.0.100.254", "10.0.2.1", "10.0.100.20"
GAP_S = 6.0              # roaming.max_gap_s: away longer = unmonitored
ANSWER_S = 2.0           # roaming.answer_within_s
SPARE = {"c1t1": 10, "c1t2": 11, "c1t3": 12}   # the visited switch's ports for arrivals
POSTURE = {"os": {"patch_level": 12}, "antivirus": {"signature_version": 2041},
           "agent_version": "1.0.0", "firewall": True, "threats": [], "attackers": []}
WORM = [{"name": "Worm.Demo", "count": 1, "cleaned": False}]


def ident(host: str) -> str:
    return f"{host}@crs.example"


class Domains:
    """Two controllers (home, visited) with roaming configured towards each other, and the
    network with a TCP listener on the mail server and the update server."""

    def __init__(self, tmp):
        self.tmp, self.procs = tmp, []
        key = tmp / "home-visited.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, os.urandom(32).hex().encode())
        os.close(fd)
        self.key = bytes.fromhex(key.read_text())
        policy = yaml.safe_load((ROOT / "config/crs_policy.yaml").read_text())
        policy["report"] = {"interval_s": 2, "stale_after_s": 600}
        (tmp / "policy.yaml").write_text(yaml.safe_dump(policy))
        ports = {d: (free_port(), free_port()) for d in ("home", "visited")}
        self.ctl: dict[str, ControllerProcess] = {}
        self.emu = None
        for d, peer in (("home", "visited"), ("visited", "home")):
            args = controller_config(tmp / d / "controller.yaml", TOPO, crs=True,
                                     policy=tmp / "policy.yaml", extra={
                                         "domain": d, "roaming": {
                                             "peers": [{"name": peer, "key_file": str(key),
                                                        "url": f"http://127.0.0.1:"
                                                               f"{ports[peer][1]}"}],
                                             "answer_within_s": ANSWER_S,
                                             "max_gap_s": GAP_S}})
            self.ctl[d] = ControllerProcess(tmp / d, [*args, *framework_args()],
                                            ofp_port=ports[d][0], rest_port=ports[d][1])
        for c in self.ctl.values():
            c.start()
        self.emu = start_network(topology.load(TOPO), self.ctl["home"], domains=self.ctl)
        for host, ip, port in (("mail", MAIL, 25), ("update", UPDATE, 80)):
            self.emu.popen(host, ["python3", "-m", "http.server", str(port), "--bind", ip],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_until(lambda h=host, p=port: f":{p}" in self.emu.host(h).cmd(
                f"ss -ltn 'sport = :{p}'"), 10, f"{host} listening")

    def stop(self):
        if self.emu is not None:
            self.emu.stop()
        for c in self.ctl.values():
            c.stop()

    def h(self, name):
        return self.emu.host(name)

    def admit(self, host: str, domain: str = "home"):
        """Our supplicant (it writes the terminal's keys): returns (process, keys path)."""
        keys = self.tmp / f"{host}-{domain}-keys.json"
        proc = self.emu.popen(host, [PY, "-m", "controller.admission.supplicant_main",
                                     "--interface", f"{host}-eth0", "--identity", ident(host),
                                     "--psk", CREDS.demo_psk(ident(host)).hex(),
                                     "--keys-out", str(keys)],
                              stdout=open(self.tmp / f"sup-{host}-{domain}.log", "wb"),
                              stderr=subprocess.STDOUT)
        wait_until(keys.exists, 30, f"{host} authenticated in {domain}")
        return proc, keys

    def wpa(self, host: str):
        """Debian's wpa_supplicant (EAP-PSK) on a terminal, as in the visited domain."""
        conf = wpa.write_supplicant_config(self.tmp / f"wpa-{host}.conf", ident(host),
                                           CREDS.demo_psk(ident(host)).hex())
        log = self.tmp / f"wpa-{host}.log"
        proc = wpa.start_supplicant(f"{host}-eth0", conf, log, popen=lambda argv, out:
                                    self.emu.popen(host, argv, stdout=out,
                                                   stderr=subprocess.STDOUT))
        wait_until(lambda: "CTRL-EVENT-EAP-SUCCESS" in log.read_text(), 30,
                   f"{host} authenticated by wpa_supplicant")
        return proc

    def report(self, keys, host: str, domain: str, threats=()) -> int:
        """A signed SCIReport as the terminal's agent sends it (from loopback)."""
        key = bytes.fromhex(jsonfile.read(keys)["crs_report_key"])
        sci = sci_from_posture({**POSTURE, "threats": list(threats)})
        raw = crsap.encode("SCIReport", ident(host), int(time.time() * 1000), time.time(),
                           {"ms_id": ident(host), "sci": sci}, key)
        return post(f"http://127.0.0.1:{self.ctl[domain].rest_port}{crsap.HTTP_PATH}", raw)[0]

    def row(self, domain: str, host: str):
        return next((t for t in self.ctl[domain].get("/crs/v1/terminals")
                     if t["name"] == host), None)

    def wait_row(self, domain: str, host: str, what: str, cond, timeout: float = 20):
        return wait_until(lambda: (r := self.row(domain, host)) and cond(r) and r, timeout,
                          f"{host} in {domain}: {what}")

    def counters(self, domain: str) -> dict:
        return self.ctl[domain].status()["counters"]

    def move(self, host: str, switch: str, sup) -> None:
        """End the host's supplicant, move its link, and wait until the home domain has
        seen it leave (its flows released, its record kept)."""
        sup.send_signal(signal.SIGTERM)
        sup.wait(timeout=10)
        self.emu.move_host(host, switch, SPARE[host])
        if self.ctl["home"].proc.poll() is None:
            self.wait_row("home", host, "offline at home", lambda r: not r["online"])

    def pin(self, host: str) -> None:
        """The terminal's first frames after 802.1X (its address is learnt from them)."""
        self.h(host).cmd(f"ping -c 2 -W 1 -q {SERVICE}")


def post(url: str, raw: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=raw, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


POSTER = """import sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1], data=open(sys.argv[2], 'rb').read(), method='POST')
try:
    print(urllib.request.urlopen(req, timeout=5).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
"""


def post_from(host, tmp, url: str, raw: bytes) -> int:
    """POST from inside a terminal's namespace (the attacker): the HTTP status."""
    (tmp / "poster.py").write_text(POSTER)
    (tmp / "payload.json").write_bytes(raw)
    out = host.cmd(f"python3 {tmp / 'poster.py'} {url} {tmp / 'payload.json'}")
    return int(out.strip().splitlines()[-1])


@pytest.fixture
def domains(tmp_path):
    d = None
    try:
        d = Domains(tmp_path)
        yield d
    finally:
        if d is not None:
            d.stop()


def test_a_quarantine_follows_the_terminal_and_a_clean_one_keeps_access(domains):
    d = domains
    sups, keys = {}, {}
    for host in ("c1t1", "c1t2"):
        sups[host], keys[host] = d.admit(host)
    assert d.report(keys["c1t1"], "c1t1", "home", WORM) == 200
    assert d.report(keys["c1t2"], "c1t2", "home") == 200
    d.wait_row("home", "c1t1", "INFECTED", lambda r: r["level"] == "INFECTED")
    d.wait_row("home", "c1t2", "COMPLIANT", lambda r: r["level"] == "COMPLIANT")
    # the visited domain's own terminal (it asks home about it too: unknown there)
    _, keys["c2t1"] = d.admit("c2t1", "visited")
    d.pin("c2t1")
    d.wait_row("visited", "c2t1", "its arrival answered", lambda r: r["level"] == "UNKNOWN"
               and d.counters("visited").get("crs_roam_transfer_accepted", 0) >= 1)
    assert d.report(keys["c2t1"], "c2t1", "visited") == 200
    d.wait_row("visited", "c2t1", "COMPLIANT", lambda r: r["level"] == "COMPLIANT")
    c1, c2, v = d.h("c1t1"), d.h("c1t2"), d.h("c2t1")
    wait_until(lambda: tcp_ok(v, MAIL, 25), 15, "c2t1 (visited) reaches mail across domains")
    wait_until(lambda: tcp_ok(c2, MAIL, 25), 15, "c1t2 (home, clean) reaches mail")
    assert not tcp_ok(c1, MAIL, 25)                         # isolated at home

    # the quarantined terminal moves to the visited domain, without any new report
    d.move("c1t1", "bs2", sups["c1t1"])
    home = d.row("home", "c1t1")
    assert home["level"] == "INFECTED" and not home["online"]   # record kept, flows gone
    reports_before = d.counters("visited").get("crs_msg_SCIReport", 0)
    d.wpa("c1t1")
    d.pin("c1t1")
    row = d.wait_row("visited", "c1t1", "INFECTED by the home's transfer",
                     lambda r: r["level"] == "INFECTED")
    assert row["decision"]["isolate"] and row["dpid"] == 12 and row["port"] == SPARE["c1t1"]
    assert not row["roaming_held"]                          # the home answered
    assert d.counters("visited").get("crs_msg_SCIReport", 0) == reports_before
    assert d.counters("visited")["crs_roam_infected_kept"] >= 1
    assert d.counters("home")["crs_roam_query_answered"] >= 1
    for _ in range(3):      # contained in the visited domain too
        assert not tcp_ok(c1, MAIL, 25, timeout=1.0)
        assert not ping(c1, C2T1)
    assert tcp_ok(v, MAIL, 25)                              # the network itself works

    # it attacks the visited controller's transfer endpoint from inside the network
    url = f"http://{SERVICE}:{d.ctl['visited'].rest_port}/roam/v1/messages"
    clean = {"receiver": "visited", "ms_id": ident("c1t1"), "nonce": "0" * 32, "known": True,
             "level": "COMPLIANT", "online": True, "last_report": time.time()}
    forged = crsap.encode("RoamTransfer", "home", int(time.time() * 1000), time.time(), clean,
                          b"guessed key, not the pair's one")
    assert post_from(c1, d.tmp, url, forged) == 403
    # a genuine transfer of the home SCS (asked for by someone holding the pair's key) about
    # a clean terminal, replayed to the visited SCS: it answers no query of the visited SCS
    query = crsap.encode("RoamQuery", "visited", int(time.time() * 1000), time.time(),
                         {"receiver": "home", "ms_id": ident("c1t2"), "nonce": "1" * 32},
                         d.key)
    status, genuine = post(f"http://127.0.0.1:{d.ctl['home'].rest_port}/roam/v1/messages",
                           query)
    assert status == 200 and json.loads(genuine)["body"]["level"] == "COMPLIANT"
    assert post_from(c1, d.tmp, url, genuine) == 403
    counters = d.counters("visited")
    assert counters["crs_roam_rejected_unauthenticated"] >= 1
    assert counters["crs_roam_rejected_unsolicited"] >= 1
    assert d.row("visited", "c1t1")["level"] == "INFECTED"
    assert not tcp_ok(c1, MAIL, 25, timeout=1.0)

    # the clean terminal moves and keeps its access after re-authentication (no report)
    d.move("c1t2", "bs2", sups["c1t2"])
    d.wpa("c1t2")
    d.pin("c1t2")
    d.wait_row("visited", "c1t2", "COMPLIANT by the home's transfer",
               lambda r: r["level"] == "COMPLIANT")
    wait_until(lambda: tcp_ok(c2, MAIL, 25), 15, "c1t2 reaches mail from the visited domain")
    wait_until(lambda: ping(c2, C2T1), 15, "c1t2 reaches c2t1 (scope all)")
    assert d.counters("visited").get("crs_msg_SCIReport", 0) == reports_before


def test_through_a_network_without_crs_it_starts_unknown_and_a_silent_home_fails_closed(
        domains):
    d = domains
    sups, keys = {}, {}
    for host in ("c1t2", "c1t3"):
        sups[host], keys[host] = d.admit(host)
        assert d.report(keys[host], host, "home") == 200
        d.wait_row("home", host, "COMPLIANT", lambda r: r["level"] == "COMPLIANT")
    _, keys["c2t1"] = d.admit("c2t1", "visited")
    d.pin("c2t1")
    d.wait_row("visited", "c2t1", "its arrival answered",
               lambda r: d.counters("visited").get("crs_roam_transfer_accepted", 0) >= 1)
    assert d.report(keys["c2t1"], "c2t1", "visited") == 200
    d.wait_row("visited", "c2t1", "COMPLIANT", lambda r: r["level"] == "COMPLIANT")
    v, c3 = d.h("c2t1"), d.h("c1t3")
    wait_until(lambda: ping(c3, C2T1), 15, "c1t3 (home, clean) reaches c2t1 across domains")

    # c1t3 spends longer than a handover on a switch without CRS (no controller at all:
    # nothing is admitted from there into the CRS domains)
    d.move("c1t3", "bs9", sups["c1t3"])
    left = time.time()
    assert not tcp_ok(c3, MAIL, 25, timeout=1.0)
    wait_until(lambda: time.time() - left > GAP_S + 1, GAP_S + 5, "time away")
    d.emu.move_host("c1t3", "bs2", SPARE["c1t3"])
    d.wpa("c1t3")
    d.pin("c1t3")
    row = d.wait_row("visited", "c1t3", "the home's answer adopted", lambda r: d.counters(
        "visited").get("crs_roam_unmonitored_gap", 0) >= 1)
    assert row["level"] == "UNKNOWN", row
    assert not ping(c3, C2T1)                               # UNKNOWN: scope none
    assert tcp_ok(v, MAIL, 25)

    # the home controller goes down; a clean terminal arriving now is not let in on trust
    d.ctl["home"].kill()
    d.move("c1t2", "bs2", sups["c1t2"])
    d.wpa("c1t2")
    d.pin("c1t2")
    row = d.wait_row("visited", "c1t2", "no answer from home, counted",
                     lambda r: d.counters("visited").get("crs_roam_no_answer", 0) >= 1,
                     timeout=ANSWER_S + 15)
    assert row["level"] == "UNKNOWN" and "roaming" in row["decision"]["reason"]
    assert row["roaming_held"]
    c2 = d.h("c1t2")
    for _ in range(3):
        assert not ping(c2, C2T1)
    assert d.row("visited", "c1t2")["level"] == "UNKNOWN"
    log = (d.tmp / "visited" / "controller.log").read_text()
    assert "did not answer about c1t2@crs.example" in log
    assert d.key.hex() not in log
