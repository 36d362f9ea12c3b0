"""X.1124 end to end on loopback: demo SP server and SS client against the EAC's REST handlers,
and the terminal's side before that: `crs supplicant` (supplicant_main) as a real process on a
veth pair in network namespaces of our own, answered by the pure Authenticator.

The EAC runs as a loopback HTTP server routing to eac_rest.handle; the SP is the demo server
on loopback. The namespace tests need root and `ip`; they are skipped otherwise.
"""
import ctypes
import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controller.admission import eac_rest, sp_demo, supplicant_main
from controller.admission.authenticator import Admit, Authenticator, Revoke, SendFrame, Session
from controller.admission.authorization import Allowed, Authorization
from controller.admission.credentials import (
    Credentials,
    ServiceProvider,
    Subscriber,
    sp_key_from_psk,
)
from controller.admission.eac import Eac, MemoryStore
from controller.admission.eap_psk import key_setup
from controller.admission.eapol import ETH_P_EAPOL, EapolType, parse_frame
from controller.admission.keys import isr_id, purpose_key, sp_service_key
from controller.admission.supplicant import PeerKeys
from controller.emulation.processes import ROOT, wait_until

SP_PSK = {"web": "388038f6266c50f119bc88aacc67242c", "mail": "f98d4b6c5f02162f5e6dd54f41fba85a"}
PSK = bytes.fromhex("00112233445566778899aabbccddeeff")
IDENT = "c1t1@crs.example"


def make_eac(session_s=3600.0):
    subs = {IDENT: Subscriber(IDENT, "cell1", "psk", False, *key_setup(PSK)),
            "c3t1@crs.example": Subscriber("c3t1@crs.example", "cell3", "psk", False,
                                           *key_setup(PSK))}
    creds = Credentials(subscribers=subs, service_providers={
        n: ServiceProvider(n, (svc,), bytes.fromhex(sp_key_from_psk(SP_PSK[n])))
        for n, svc in (("web", "http"), ("mail", "smtp"))})
    authz = Authorization(
        services={("web", "http"): Allowed("web", "http", "tcp", 80),
                  ("mail", "smtp"): Allowed("mail", "smtp", "tcp", 25)},
        groups={"cell1": frozenset({("web", "http"), ("mail", "smtp")}),
                "cell3": frozenset({("web", "http")})})
    return Eac(MemoryStore(), creds, authz), creds


class EacHttp:
    """The controller's /eac/v1 routes, on loopback, counting the inquiries it answers."""

    def __init__(self, eac):
        self.eac, self.calls = eac, []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.calls.append(self.path)
                status, doc = eac_rest.handle("POST", self.path, body, time.time(), outer.eac)
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def world():
    """EAC (HTTP) + SP 'web'/http and 'mail'/smtp demo servers (HTTP), all on loopback."""
    eac, creds = make_eac()
    eh = EacHttp(eac)
    servers, sps = {}, {}
    for name, svc in (("web", "http"), ("mail", "smtp")):
        sp = sp_demo.SpServer(name, svc, bytes.fromhex(sp_key_from_psk(SP_PSK[name])),
                              sp_demo.http_post(eh.url), log=lambda s: None)
        assert sp.login()[0] == 200
        httpd = sp_demo.make_http_server(sp, "127.0.0.1", 0)
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        servers[name], sps[name] = httpd, sp
    urls = {n: f"http://127.0.0.1:{h.server_address[1]}" for n, h in servers.items()}
    yield eac, eh, sps, urls
    for h in servers.values():
        h.shutdown()
        h.server_close()
    eh.close()


def register(eac, identity=IDENT, group="cell1", emsk=None, expires=None):
    emsk = emsk or os.urandom(64)
    s = Session(identity, group, isr_id(emsk), b"m" * 64, emsk, time.time(),
                expires or time.time() + 3600, "psk")
    eac.register(s)
    return s


def keys_file(tmp_path, s: Session, name="keys.json"):
    """What supplicant_main writes for this session."""
    pk = PeerKeys(s.msk, s.emsk, s.isr_id, purpose_key(s.emsk, "crs-report"))
    path = tmp_path / name
    supplicant_main.write_keys(
        path, supplicant_main.keys_document(s.identity, pk, "psk", time.time(), 3600))
    return path


def test_keys_file_carries_per_purpose_keys_only(tmp_path):
    emsk = os.urandom(64)
    s = Session(IDENT, "cell1", isr_id(emsk), b"m" * 64, emsk, 0, 1, "psk")
    path = keys_file(tmp_path, s)
    doc = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert doc["isr_id"] == isr_id(emsk) and doc["sp_root"] == purpose_key(emsk, "sp-root").hex()
    assert doc["crs_report_key"] == purpose_key(emsk, "crs-report").hex()
    assert emsk.hex() not in path.read_text() and "msk" not in doc and "emsk" not in doc
    assert doc["expires"] - doc["authenticated_at"] == 3600
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]          # no temp file left


def test_mutual_authentication_and_key_cache(world, tmp_path):
    eac, eh, sps, urls = world
    s = register(eac)
    path = keys_file(tmp_path, s)
    rc, out = sp_demo.run_client(path, sp_demo.http_post(urls["web"]), "web", "http")
    assert rc == 0, out
    assert out["data"] == f"hello {IDENT}" and out["isr_id"] == s.isr_id
    # the SP holds exactly the key the terminal derived alone
    assert sps["web"].cache[s.isr_id][0] == sp_service_key(s.emsk, s.isr_id, "web", "http")
    n = eh.calls.count("/eac/v1/inquiry")
    assert sp_demo.run_client(path, sp_demo.http_post(urls["web"]), "web", "http")[0] == 0
    assert eh.calls.count("/eac/v1/inquiry") == n              # cached per ISR-ID
    # a different service provider gets a different key
    assert sp_demo.run_client(path, sp_demo.http_post(urls["mail"]), "mail", "smtp")[0] == 0
    assert sps["mail"].cache[s.isr_id][0] != sps["web"].cache[s.isr_id][0]


def test_refusals_carry_the_eacs_reason(world, tmp_path):
    eac, _, _, urls = world
    s3 = register(eac, "c3t1@crs.example", "cell3")
    rc, out = sp_demo.run_client(keys_file(tmp_path, s3), sp_demo.http_post(urls["mail"]),
                                 "mail", "smtp")
    assert (rc, out["status"], out["error"]) == (1, 403, "ss_not_entitled")
    emsk = os.urandom(64)                                      # authenticated nowhere
    ghost = Session(IDENT, "cell1", isr_id(emsk), b"", emsk, 0, time.time() + 60, "psk")
    rc, out = sp_demo.run_client(keys_file(tmp_path, ghost, "g.json"),
                                 sp_demo.http_post(urls["web"]), "web", "http")
    assert (rc, out["status"], out["error"]) == (1, 404, "unknown_isr_id")
    old = register(eac, expires=time.time() - 1)
    rc, out = sp_demo.run_client(keys_file(tmp_path, old, "o.json"), sp_demo.http_post(urls["web"]),
                                 "web", "http")
    assert (rc, out["status"], out["error"]) == (1, 410, "expired_isr_id")
    rc, out = sp_demo.run_client(keys_file(tmp_path, s3, "s.json"), sp_demo.http_post(urls["web"]),
                                 "web", "smtp")
    assert (rc, out["error"]) == (1, "service_not_offered")


def test_each_side_must_prove_the_key(world, tmp_path):
    eac, _, sps, urls = world
    s = register(eac)
    path = keys_file(tmp_path, s)
    doc = json.loads(path.read_text())
    doc["sp_root"] = os.urandom(32).hex()                      # the SS lacks the right key
    path.write_text(json.dumps(doc))
    rc, out = sp_demo.run_client(path, sp_demo.http_post(urls["web"]), "web", "http")
    assert (rc, out["error"]) == (1, "bad_sp_proof")          # it noticed the SP's proof fails
    # ... and an SS that answers the SP's challenge without the key is refused
    web = sps["web"]
    st, h = web.hello({"isr_id": s.isr_id, "service": "http", "nonce_ss": os.urandom(16).hex()})
    assert st == 200
    assert web.finish({"session": h["session"],
                       "proof_ss": os.urandom(32).hex()})[1]["error"] == "bad_ss_proof"
    assert web.finish({"session": h["session"],
                       "proof_ss": os.urandom(32).hex()})[1]["error"] == "unknown_session"


def test_sp_with_wrong_psk_cannot_log_in_nor_serve(world):
    eac, eh, _, _ = world
    s = register(eac)
    bad = sp_demo.SpServer("web", "http", bytes.fromhex(sp_key_from_psk("11" * 16)),
                           sp_demo.http_post(eh.url), log=lambda m: None)
    assert bad.login()[1]["error"] == "bad_sp_proof"
    st, out = bad.hello({"isr_id": s.isr_id, "service": "http", "nonce_ss": os.urandom(16).hex()})
    assert (st, out["error"]) == (401, "bad_sp_proof")
    down = sp_demo.SpServer("web", "http", b"k" * 32, sp_demo.http_post("http://127.0.0.1:9", 1),
                            log=lambda m: None)
    assert down.hello({"isr_id": s.isr_id, "service": "http", "nonce_ss": "00" * 16})[0] == 502


def test_sp_http_front_end_rejects_garbage(world):
    _, _, _, urls = world
    post = sp_demo.http_post(urls["web"])
    for doc in ({}, {"isr_id": 1, "service": "http", "nonce_ss": "00"},
                {"isr_id": "isr-zz", "service": "http", "nonce_ss": "00" * 16},
                {"isr_id": "isr-" + "00" * 12, "service": "http", "nonce_ss": "00" * 4}):
        assert post(sp_demo.HELLO, doc)[0] == 400
    assert post(sp_demo.FINISH, {"session": "x"})[0] == 400
    assert post("/other", {})[0] == 404
    req = sp_demo.urllib.request.Request(urls["web"] + sp_demo.HELLO, data=b"{not json",
                                         method="POST")
    with pytest.raises(sp_demo.urllib.error.HTTPError) as e:
        sp_demo.urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 400


def test_client_command_line(world, tmp_path, capsys):
    eac, _, _, urls = world
    path = keys_file(tmp_path, register(eac))
    rc = sp_demo.main(["client", "--keys", str(path), "--server", urls["web"], "--sp", "web",
                       "--service", "http"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["ok"] and out["data"] == f"hello {IDENT}"
    assert sp_demo.main(["client", "--keys", str(tmp_path / "none"), "--server", urls["web"],
                         "--sp", "web", "--service", "http"]) == 1
    assert json.loads(capsys.readouterr().out)["error"] == "no_keys"


# --- the supplicant process over a veth pair in our own namespaces ----------------------------

needs_netns = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                 reason="needs root and iproute2 (network namespaces)")
CTRL_MAC = "02:00:00:00:00:fe"
CLONE_NEWNET = 0x40000000


def _in_netns(ns: str, fn):
    """Run fn() in a thread that joined netns `ns` (a socket made there stays there)."""
    box = {}

    def run():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            box["v"] = fn()
        except BaseException as exc:
            box["e"] = exc
    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box["v"]


@pytest.fixture
def veth():
    """(namespace of the terminal, its interface, raw EAPOL socket on the other end)."""
    tag = os.urandom(3).hex()
    ns_t, ns_a, if_t, if_a = f"crs-t-{tag}-t", f"crs-t-{tag}-a", f"vt{tag}", f"va{tag}"
    made = []
    sock = None
    try:
        for ns in (ns_t, ns_a):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made.append(ns)
        subprocess.run(["ip", "link", "add", if_t, "netns", ns_t, "type", "veth", "peer", "name",
                        if_a, "netns", ns_a], check=True)
        for ns, i in ((ns_t, if_t), (ns_a, if_a)):
            subprocess.run(["ip", "-n", ns, "link", "set", i, "up"], check=True)

        def mk():
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_EAPOL))
            s.bind((if_a, ETH_P_EAPOL))
            return s
        sock = _in_netns(ns_a, mk)
        yield ns_t, if_t, sock
    finally:
        if sock is not None:
            sock.close()
        for ns in made:       # deleting a namespace removes the veth end inside it
            subprocess.run(["ip", "netns", "delete", ns], check=False)


class Driver:
    """The authenticator side, as the Ryu shell would drive it: frames in, effects out."""

    def __init__(self, sock, creds):
        self.sock, self.effects, self.frames = sock, [], []
        self.auth = Authenticator(creds, CTRL_MAC)

    def apply(self, effects):
        for e in effects:
            if isinstance(e, SendFrame):
                self.sock.send(e.data)
        self.effects += effects

    def pump(self, cond, timeout, what):
        deadline = time.time() + timeout
        while not cond():
            if time.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; effects {self.effects[-6:]}")
            r, _, _ = select.select([self.sock], [], [], 0.05)
            if r:
                frame = self.sock.recv(4096)
                self.frames.append(frame)
                self.apply(self.auth.handle_frame(1, 1, frame, time.time()))
            self.apply(self.auth.tick(time.time()))

    def of(self, kind):
        return [e for e in self.effects if isinstance(e, kind)]


def start_supplicant(ns, ifname, tmp_path, psk=PSK, *extra):
    out = open(tmp_path / "supplicant.out", "w")
    p = subprocess.Popen(["ip", "netns", "exec", ns, str(ROOT / ".venv/bin/python"), "-m",
                          "controller.admission.supplicant_main", "--interface", ifname,
                          "--identity", IDENT, "--psk", psk.hex(), "--keys-out",
                          str(tmp_path / "keys.json"), *extra],
                         cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    return p, tmp_path / "supplicant.out"


def lines(path):
    return path.read_text().splitlines()


@needs_netns
def test_supplicant_process_authenticates_reauthenticates_and_logs_off(veth, tmp_path):
    ns, ifname, sock = veth
    eac, creds = make_eac()
    d = Driver(sock, creds)
    p, out = start_supplicant(ns, ifname, tmp_path)
    try:
        d.pump(lambda: d.of(Admit), 15, "the first authentication")
        s1 = d.of(Admit)[0].session
        wait_until(lambda: any(x.startswith("EAP-SUCCESS ") for x in lines(out)), 5,
                   "EAP-SUCCESS line")
        secs = float(next(x for x in lines(out) if x.startswith("EAP-SUCCESS")).split()[1])
        assert 0 < secs < 5
        keys = json.loads((tmp_path / "keys.json").read_text())
        assert keys["isr_id"] == s1.isr_id and keys["identity"] == IDENT
        assert keys["crs_report_key"] == purpose_key(s1.emsk, "crs-report").hex()
        assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600
        assert s1.emsk.hex() not in (tmp_path / "keys.json").read_text()

        # The keys file is all the SS needs for X.1124: register the session at the EAC and
        # run the demo client against the demo SP with exactly that file.
        eac.register(s1)
        eh = EacHttp(eac)
        try:
            sp = sp_demo.SpServer("web", "http", bytes.fromhex(sp_key_from_psk(SP_PSK["web"])),
                                  sp_demo.http_post(eh.url), log=lambda m: None)
            rc, res = sp_demo.run_client(tmp_path / "keys.json",
                                         lambda path, doc: getattr(sp, path.rsplit("/", 1)[1])(doc),
                                         "web", "http")
            assert rc == 0 and res["data"] == f"hello {IDENT}", res
        finally:
            eh.close()

        # Re-authentication asked by the authenticator (an unsolicited Request/Identity).
        d.apply(d.auth.tick(s1.expires - 30))
        d.pump(lambda: len(d.of(Admit)) == 2, 10, "the re-authentication")
        s2 = d.of(Admit)[1].session
        assert s2.isr_id != s1.isr_id
        wait_until(lambda: json.loads((tmp_path / "keys.json").read_text())["isr_id"] == s2.isr_id,
                   5, "keys file rewritten with the new ISR-ID")
        wait_until(lambda: sum(x.startswith("EAP-SUCCESS") for x in lines(out)) == 2, 5,
                   "2nd success")

        # SIGTERM: EAPOL-Logoff, then exit 0.
        p.send_signal(signal.SIGTERM)
        d.pump(lambda: d.of(Revoke), 10, "the logoff")
        assert d.of(Revoke)[0].reason == "logoff"
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@needs_netns
def test_supplicant_wrong_psk_fails_once(veth, tmp_path):
    ns, ifname, sock = veth
    _, creds = make_eac()
    d = Driver(sock, creds)
    p, out = start_supplicant(ns, ifname, tmp_path, bytes(16), "--once")
    try:
        d.pump(lambda: p.poll() is not None, 15, "the supplicant to give up")
        assert p.returncode == 1
        assert any(x.startswith("EAP-FAILURE") for x in lines(out))
        assert not (tmp_path / "keys.json").exists() and not d.of(Admit)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@needs_netns
def test_supplicant_retransmits_start_then_times_out(veth, tmp_path):
    ns, ifname, sock = veth
    p, out = start_supplicant(ns, ifname, tmp_path, PSK, "--once", "--timeout-s", "2.5")
    starts = []
    try:
        deadline = time.time() + 10
        while p.poll() is None and time.time() < deadline:
            if select.select([sock], [], [], 0.05)[0]:
                f = parse_frame(sock.recv(4096))
                starts.append((f.type, f.dst))
        assert p.wait(5) == 1
        assert len(starts) >= 3 and set(starts) == {(EapolType.START, "01:80:c2:00:00:03")}
        assert any("timeout" in x for x in lines(out) if x.startswith("EAP-FAILURE"))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_supplicant_command_line_errors(capsys):
    assert supplicant_main.main(["--interface", "lo", "--identity", "a", "--psk", "12",
                                 "--keys-out", "/tmp/x"]) == 2
    assert "32 hex digits" in capsys.readouterr().err
    assert supplicant_main.main(["--interface", "crs-no-such-if0", "--identity", "a",
                                 "--psk", "00" * 16, "--keys-out", "/tmp/x"]) == 2


def test_the_sp_refuses_a_revoked_session_once_its_grant_runs_out(world, tmp_path):
    """No push to SPs: a grant lasts `grant_s`; after a revocation the next inquiry is
    refused (404), and a client told so re-authenticates and retries with its new keys."""
    eac, eh, sps, urls = world
    eac.grant_s = 0.3
    old = register(eac)
    path = keys_file(tmp_path, old)
    web = sp_demo.http_post(urls["web"])
    assert sp_demo.run_client(path, web, "web", "http")[0] == 0
    eac.revoke(old.isr_id)                       # Logoff, expiry, revocation
    assert sp_demo.run_client(path, web, "web", "http")[0] == 0   # the grant still runs
    time.sleep(0.35)
    rc, out = sp_demo.run_client(path, web, "web", "http")
    assert rc == 1 and out["status"] == 404 and out["error"] == "unknown_isr_id"
    # with a supplicant to ask: it authenticates again (here: a new session is registered
    # and its keys written, as supplicant_main does on SIGHUP), then the retry succeeds
    asked = []

    def reauth():
        asked.append(True)
        keys_file(tmp_path, register(eac))
    rc, out = sp_demo.run_client(path, web, "web", "http", reauth)
    assert rc == 0 and asked == [True] and out["reauthenticated"] is True
    assert out["isr_id"] != old.isr_id
    # a refusal that is not about the session (not entitled) asks for nothing
    s3 = register(eac, "c3t1@crs.example", "cell3")
    rc, out = sp_demo.run_client(keys_file(tmp_path, s3, "s3.json"),
                                 sp_demo.http_post(urls["mail"]), "mail", "smtp", reauth)
    assert rc == 1 and asked == [True]
