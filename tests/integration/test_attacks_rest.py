"""Attacks on the controller's REST server (issue 8, items 7 and 12), on Mininet against a real
controller: a terminal holding idle connections must not stop other terminals' reports, an
error response carries no traceback, and operator POSTs need the token and a JSON type."""
import ast
import json
import os
import stat
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from nethelpers import CLEAN, CREDS, PY, ROOT, CrsNet, ping

from controller import jsonfile
from controller.emulation.processes import wait_until

ATTACK_CONNECTIONS = 1200      # more than eventlet's default pool of 1,024 connections

# Runs on the attacking terminal: keeps up to `n` TCP connections open to the REST port, sends
# nothing on them, and re-opens every one the server closes (connects for 1 s, then 0.2 s of
# noting what the server closed, and again).
ATTACKER = r"""
import json, os, resource, select, socket, sys, time
host, port, n, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 512, n + 512))
poll, socks = select.poll(), {}
st = {"opened": 0, "connect_failures": 0, "closed_by_server": 0, "answered_503": 0,
      "open": 0}
while True:
    end = time.time() + 1
    while len(socks) < n and time.time() < end:
        try:
            s = socket.create_connection((host, port), timeout=1)
        except OSError:
            st["connect_failures"] += 1
            continue
        socks[s.fileno()] = s
        poll.register(s, select.POLLIN)
        st["opened"] += 1
    end = time.time() + 0.2
    while time.time() < end:
        for fd, ev in poll.poll(50):
            s = socks.pop(fd)
            poll.unregister(fd)
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            st["answered_503"] += data.startswith(b"HTTP/1.1 503")
            st["closed_by_server"] += 1
            s.close()
    st["open"] = len(socks)
    with open(out + ".tmp", "w") as f:
        json.dump(st, f)
    os.replace(out + ".tmp", out)
"""

# Runs on a victim terminal: signed SCIReports, each timed from before the connection.
REPORTER = r"""
import json, sys, time, urllib.error, urllib.request
from controller.crs import messages as crsap
from controller.crs.agent import sci_from_posture
url, keys_file, count, gap = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
posture = json.loads(sys.argv[5])
keys = json.load(open(keys_file))
key, me = bytes.fromhex(keys["crs_report_key"]), keys["identity"]
seq, out = None, []
for i in range(count):
    now = time.time()
    seq = crsap.next_seq(seq, now)
    raw = crsap.encode("SCIReport", me, seq, now, {"ms_id": me, "sci": sci_from_posture(posture)},
                       key)
    req = urllib.request.Request(url, data=raw, method="POST",
                                 headers={"Content-Type": "application/json"})
    t0 = time.time()
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        status = repr(exc)
    out.append({"status": status, "s": round(time.time() - t0, 4)})
    time.sleep(gap)
print("RESULT " + json.dumps(out))
"""

# Runs on a terminal: one raw HTTP request, optionally half-closed after sending; prints the
# whole answer.
RAW = r"""
import socket, sys
host, port, data, shut = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
s = socket.create_connection((host, port), timeout=5)
s.sendall(data.encode().decode("unicode_escape").encode("latin-1"))
if shut:
    s.shutdown(socket.SHUT_WR)
out = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
except OSError as exc:
    out += repr(exc).encode()
print("ANSWER " + repr(out))
"""


class RestNet(CrsNet):
    """CrsNet plus terminals that authenticate without an agent (the test reports itself)."""

    def script(self, name, text):
        path = self.tmp / name
        path.write_text(text)
        return str(path)

    def authenticate(self, host):
        ident = f"{host}@crs.example"
        keys = self.tmp / f"{host}-keys.json"
        self.emu.popen(host, [PY, "-m", "controller.admission.supplicant_main", "--interface",
                              f"{host}-eth0", "--identity", ident, "--psk",
                              CREDS.demo_psk(ident).hex(), "--keys-out", str(keys)],
                       stdout=open(self.tmp / f"{host}-sup.log", "wb"), stderr=subprocess.STDOUT)
        wait_until(keys.exists, 30, f"{host} authenticated")
        return keys

    @property
    def service(self):
        return self.emu.topo.service_ip

    def reports(self, host, count, gap=0.3):
        url = f"http://{self.service}:{self.ctl.rest_port}/crsap/v1/messages"
        script = self.script("reporter.py", REPORTER)
        out = self.h(host).cmd(f"PYTHONPATH={ROOT} {PY} {script} {url} "
                               f"{self.tmp / f'{host}-keys.json'} {count} {gap} "
                               f"'{json.dumps(CLEAN)}' 2>&1")
        line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
        assert line, out[-2000:]
        return json.loads(line[len("RESULT "):])

    def raw(self, host, data, shut=False):
        script = self.script("raw.py", RAW)
        out = self.h(host).cmd(f"{PY} {script} {self.service} {self.ctl.rest_port} "
                               f"'{data}' {int(shut)} 2>&1")
        line = next((x for x in out.splitlines() if x.startswith("ANSWER ")), None)
        assert line, out[-2000:]
        return ast.literal_eval(line[len("ANSWER "):])   # the bytes' repr printed above


@pytest.fixture
def rest_net(controller, network, tmp_path):
    return lambda **kw: RestNet(controller, network, tmp_path, **kw)


def test_one_terminal_holding_idle_connections_does_not_stall_other_reports(rest_net):
    net = rest_net()
    for h in ("c1t1", "c1t2", "c2t1"):
        net.authenticate(h)
    for v in ("c1t2", "c2t1"):
        assert [r["status"] for r in net.reports(v, 1)] == [200]
    stats = net.tmp / "attacker.json"
    attacker = net.emu.popen("c1t1", [PY, net.script("attacker.py", ATTACKER), net.service,
                                      str(net.ctl.rest_port), str(ATTACK_CONNECTIONS),
                                      str(stats)],
                             stdout=open(net.tmp / "attacker.log", "wb"),
                             stderr=subprocess.STDOUT)
    try:
        # unguarded, eventlet takes 1,024 of them (and its backlog some more), then no one:
        # the attacker's next connects fail
        def attacking():
            st = jsonfile.read(stats)
            return st["opened"] >= 1100 or (st["opened"] >= 1000 and st["connect_failures"] >= 3)
        wait_until(attacking, 60, "the attacker opened its connections")
        time.sleep(2)
        results = {v: net.reports(v, 5) for v in ("c1t2", "c2t1")}
        attack = jsonfile.read(stats)
    finally:
        attacker.kill()
        attacker.wait(timeout=10)
    for v, rs in results.items():
        assert all(r["status"] == 200 for r in rs), (v, rs, attack)
        assert max(r["s"] for r in rs) < 1.0, (v, rs, attack)
    # the attack was real: the attacker kept trying, the cap refused it, and it was counted
    assert attack["opened"] >= 1100 and attack["answered_503"] > 0, attack
    counters = net.ctl.status()["counters"]
    assert counters.get("rest_conn_refused_per_source", 0) > 0, counters
    log = net.ctl.log.read_text()
    assert "REST: 10.0.1.1 holds 32 connections (cap 32)" in log
    assert "10.0.1.2 holds" not in log and "10.0.2.1 holds" not in log


def test_error_answers_to_malformed_requests_carry_no_traceback(rest_net):
    net = rest_net()
    net.authenticate("c1t2")
    path = "/crsap/v1/messages"
    # a body shorter than its Content-Length (the client half-closes)
    short = net.raw("c1t2", f"POST {path} HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 10\\r\\n"
                            f"\\r\\nabc", shut=True)
    # a chunked body whose chunk size is not a number
    chunked = net.raw("c1t2", f"POST {path} HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n"
                              "Transfer-Encoding: chunked\\r\\n\\r\\n"
                              "zz\\r\\nabc\\r\\n0\\r\\n\\r\\n")
    for answer in (short, chunked):
        assert answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.1 5"), answer
        assert b"Traceback" not in answer and b"File \"" not in answer, answer
        assert b"site-packages" not in answer, answer
    assert short.startswith(b"HTTP/1.1 400"), short
    # an operator path that is not UTF-8 (operator endpoints: from loopback)
    status, answer = _post_raw(net.ctl.rest_port, "/crs/v1/terminals/x/%ff",
                               {"Content-Type": "application/json"})
    assert status == 403 and b"Traceback" not in answer, answer
    # and the server still answers
    assert [r["status"] for r in net.reports("c1t2", 1)] == [200]


def _post_raw(port, path, headers, body=b""):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post(port, path, headers, body=b""):
    status, answer = _post_raw(port, path, headers, body)
    return status, json.loads(answer or b"null")


def test_operator_posts_need_the_token_and_json_and_the_cli_sends_them(rest_net):
    net = rest_net()
    net.terminal("c1t1")
    net.terminal("c1t2")
    for h in ("c1t1", "c1t2"):
        net.wait_level(h, "COMPLIANT")
    wait_until(lambda: ping(net.h("c1t1"), "10.0.1.2"), 15, "c1t1 reaches c1t2")
    token_file = net.tmp / "operator.token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = token_file.read_text().strip()
    port, path = net.ctl.rest_port, "/crs/v1/terminals/c1t1/quarantine"
    before = net.ctl.status()["counters"]
    json_ct = {"Content-Type": "application/json"}
    form = {"Content-Type": "text/plain"}          # what a cross-site <form> can send
    cases = [
        (json_ct, b"{}", 403),                                           # no token
        ({**json_ct, "Authorization": "Bearer wrong"}, b"{}", 403),
        ({**json_ct, "Authorization": token}, b"{}", 403),               # not a Bearer
        (form, b"x=1", 403),                                             # a browser form
        ({**form, "Authorization": f"Bearer {token}"}, b"{}", 415),
        ({"Content-Type": "application/x-www-form-urlencoded",
          "Authorization": f"Bearer {token}"}, b"a=b", 415),
    ]
    for headers, body, status in cases:
        got, answer = _post(port, path, headers, body)
        assert got == status, (headers, got, answer)
        assert "error" in answer and ("token" in answer["error"] if status == 403
                                      else "application/json" in answer["error"]), answer
    assert _post(port, "/crs/v1/policy/reload", json_ct, b"{}")[0] == 403
    # nothing changed: still admitted, still reaching its peer; reads need no token
    row = net.row("c1t1")
    assert not (row.get("decision") or {}).get("isolate"), row
    assert ping(net.h("c1t1"), "10.0.1.2")
    after = net.ctl.status()["counters"]
    assert after.get("operator_refused_token", 0) - before.get("operator_refused_token", 0) == 5
    assert after.get("operator_refused_content_type", 0) - \
        before.get("operator_refused_content_type", 0) == 2

    def crs(*args):
        return subprocess.run([PY, "-m", "controller.cli", *args, "--api",
                               f"http://127.0.0.1:{port}"], cwd=ROOT, capture_output=True,
                              text=True, timeout=30)
    # the CLI with the controller's token (found next to its --db) quarantines
    r = crs("quarantine", "c1t1", "--db", str(net.tmp / "crs.db"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["decision"]["isolate"] is True
    wait_until(lambda: not ping(net.h("c1t1"), "10.0.1.2", timeout=1), 5, "quarantine")
    # without a readable token it cannot release; with --token-file it can
    r = crs("release", "c1t1", "--token-file", str(net.tmp / "missing.token"))
    assert r.returncode == 1 and "operator token" in r.stderr
    assert net.row("c1t1")["decision"]["isolate"] is True
    r = crs("release", "c1t1", "--token-file", str(token_file))
    assert r.returncode == 0, r.stderr
    wait_until(lambda: ping(net.h("c1t1"), "10.0.1.2"), 15, "released")
