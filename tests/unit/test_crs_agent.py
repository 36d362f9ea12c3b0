"""The SCA agent against the real SCS core behind a tiny loopback HTTP server."""
from __future__ import annotations

import copy
import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from controller.crs import agent as ag
from controller.crs import messages as m
from controller.crs.decision import Level
from controller.crs.policy import parse_policy
from controller.crs.scs import SCS, Reply

KEY = bytes(range(32))
DOC = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" /
                      "crs_policy.yaml").read_text())

POSTURE = {"os": {"name": "MobileOS", "patch_level": 12},
           "antivirus": {"engine": "1.0", "signature_version": 2041},
           "agent_version": "1.0.0", "firewall": True,
           "threats": [{"name": "Worm.Demo", "count": 1, "cleaned": False,
                        "detected_at": 1764300000.5}],
           "attackers": [{"source": "10.0.1.3", "threat": "Worm.Demo", "count": 2,
                          "last_seen": 1764300000.5}],
           "infection": {"worm": "Worm.Demo", "infected_at": 1764300000.1, "by": "10.0.1.3"},
           "future_key": "ignored"}


class Servers:
    """The SCS (real core) and an update server, both on 127.0.0.1."""

    def __init__(self):
        self.lock = threading.Lock()
        self.update_gets: list[str] = []
        self.received: list[str] = []
        outer = self

        class Upd(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.update_gets.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.upd = ThreadingHTTPServer(("127.0.0.1", 0), Upd)
        doc = copy.deepcopy(DOC)
        doc["updates"]["server_url"] = f"http://127.0.0.1:{self.upd.server_address[1]}/updates"
        self.scs = SCS(parse_policy(doc), lambda tid: KEY if tid == "h1" else None)
        self.scs.connect("h1", "staff", "10.0.1.1", "00:00:00:00:01:01", 1, 1, time.time())

        class Scs(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    # recorded once handled: a test that sees a message in `received` may
                    # read what the SCS made of it (it raced with the handling before)
                    try:
                        effects = outer.scs.handle(None, raw, time.time())
                    finally:
                        outer.received.append(json.loads(raw)["type"])
                replies = [e.payload for e in effects if isinstance(e, Reply)]
                body = replies[0] if replies else b""
                self.send_response(200 if body else 204)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Scs)
        for srv in (self.upd, self.http):
            threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                             daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"

    def close(self):
        for srv in (self.upd, self.http):
            srv.shutdown()
            srv.server_close()

    def level(self):
        with self.lock:
            d = self.scs.terminals["h1"].decision
            return d.level if d else None


def wait_for(cond, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def env(tmp_path):
    servers = Servers()
    posture, keys = tmp_path / "posture.json", tmp_path / "keys.json"
    posture.write_text(json.dumps(POSTURE))
    keys.write_text(json.dumps({"identity": "h1", "isr_id": "isr-7", "crs_report_key": KEY.hex(),
                                "expires": time.time() + 3600}))
    agent = ag.Agent(posture, keys, servers.url, "h1", interval_s=30, listen_port=0,
                     state_dir=tmp_path / "state")
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    yield servers, agent, posture
    agent.stop()
    thread.join(5)
    servers.close()


def test_agent_reports_is_cleaned_and_becomes_compliant(env):
    servers, agent, posture = env
    assert wait_for(lambda: servers.update_gets == ["/updates/clean"])
    assert wait_for(lambda: servers.level() is Level.COMPLIANT)
    p = json.loads(posture.read_text())
    assert p["threats"][0]["cleaned"] is True and p["attackers"] == []
    assert p["infection"]["by"] == "10.0.1.3"          # unknown keys survive the rewrite
    assert servers.received[:2] == ["MSConnectReport", "SCIReport"]
    sci = servers.scs.terminals["h1"].last_sci
    assert "infection" not in sci and "future_key" not in sci
    assert wait_for(lambda: agent.last_level == "COMPLIANT")


def test_posture_change_is_reported_quickly_and_leave_on_stop(env):
    servers, agent, posture = env
    assert wait_for(lambda: servers.level() is Level.COMPLIANT)
    n = len(servers.received)
    p = json.loads(posture.read_text())
    p["antivirus"]["signature_version"] = 1          # older signatures: VULNERABLE
    ag.write_json_atomic(posture, p)
    assert wait_for(lambda: len(servers.received) > n, timeout=2.0)
    # the SCS orders the baseline update, the agent fetches it and recovers
    assert wait_for(lambda: "/updates/baseline" in servers.update_gets)
    assert wait_for(lambda: servers.level() is Level.COMPLIANT)
    agent.stop()
    assert wait_for(lambda: servers.received[-1] == "Leave")
    # a Leave ends the agent, not the terminal's access: it stays connected, UNKNOWN
    t = servers.scs.terminals["h1"]
    assert t.online and t.own_level is Level.UNKNOWN and "agent left" in t.own_reason


def _post(port, raw):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{m.HTTP_PATH}", data=raw,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_probe_and_pushed_update(env):
    servers, agent, posture = env
    assert wait_for(lambda: servers.level() is Level.COMPLIANT)
    now = time.time()
    probe = m.encode("SCAProbeRequest", "scs", m.next_seq(None, now) + 10**6, now,
                     {"nonce": "n123"}, KEY)
    status, body = _post(agent.listen_port, probe)
    assert status == 200
    resp = m.decode(body)
    m.verify(resp, KEY, m.ReplayState(), time.time())
    assert resp.type == "SCAProbeResponse" and resp.body["nonce"] == "n123"
    # replayed probe and forged command are refused
    assert _post(agent.listen_port, probe)[0] == 403
    forged = m.encode("UpdateCommand", "scs", m.next_seq(None, now) + 2 * 10**6, now,
                      {"ms_id": "h1", "update": {"id": "x1", "item": "clean",
                                                 "url": "http://127.0.0.1:1/x",
                                                 "install": {"patch_level": 99}}}, b"k" * 32)
    assert _post(agent.listen_port, forged)[0] == 403
    upd = {"id": "push-1", "item": "p13", "install": {"patch_level": 13},
           "url": servers.scs.policy.update_url("p13")}
    cmd = m.encode("UpdateCommand", "scs", m.next_seq(None, now) + 3 * 10**6, now,
                   {"ms_id": "h1", "update": upd}, KEY)
    assert _post(agent.listen_port, cmd)[0] == 202
    assert wait_for(lambda: json.loads(posture.read_text())["os"]["patch_level"] == 13)
    assert "/updates/p13" in servers.update_gets


def test_sci_from_posture_tolerates_garbage():
    sci = ag.sci_from_posture({"os": "x", "antivirus": {"signature_version": "new"},
                               "agent_version": 3, "firewall": "yes",
                               "threats": [1, {"name": "W", "count": -4}],
                               "attackers": [{"source": "nope"}, {"source": "10.0.0.9"}]})
    m.check(sci, m.SCI)  # always schema-valid
    assert sci["os"] == {"name": "unknown", "patch_level": 0} and sci["firewall"] is False
    assert sci["threats"] == [{"name": "W", "count": 0, "cleaned": False}]
    assert sci["attackers"] == [{"source": "10.0.0.9"}]


def test_install_update_never_lowers():
    p = ag.install_update({"os": {"patch_level": 20}}, {"patch_level": 12,
                                                        "signature_version": 5}, 1.0)
    assert p["os"]["patch_level"] == 20 and p["antivirus"]["signature_version"] == 5


def test_main_bad_arguments():
    assert ag.main(["--posture", "x"]) == 2
    assert ag.main(["--posture", "p", "--keys", "k", "--scs", "http://x", "--name", "bad name",
                    "--listen", "0"]) == 2
