"""Demo X.1124 application server (SP) and client (SS) over HTTP/JSON, stdlib only.

Shows §8.4-8.5 end to end on a terminal and a server host:

  SP  -> EAC  challenge/login (HMAC, mutual)  -> IAC-ID and the SP session key
  SS  -> SP   POST /x1124/v1/hello {isr_id, service, nonce_ss}
  SP  -> EAC  POST /eac/v1/inquiry (MAC'd), answer MAC'd, key sealed; cached per
              (ISR-ID, service) until its lifetime ends
  SP  -> SS   {nonce_sp, proof_sp, session}         the SP proves first ...
  SS  -> SP   POST /x1124/v1/finish {session, proof_ss}
                                                    ... the SS checks that before it proves
  SP  -> SS   {"data": "hello <identity>"}

The SS derives the same key alone from the "sp_root" in the keys file our supplicant writes
(keys.sp_service_key_from_root, as the EAC does). Refusals by the EAC reach the client with
the EAC's status and reason. Run as ``python -m controller.admission.sp_demo server|client``.
"""
from __future__ import annotations

import argparse
import hmac
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from controller import jsonfile

from . import mutual_auth
from .credentials import sp_key_from_psk
from .eac import NONCE_LEN, sp_proof, sp_session_key
from .eac_rest import inquiry_mac, open_answer
from .keys import sp_service_key_from_root

MAX_BODY = 4096
PENDING_S = 30.0            # a hello must be finished within this
RELOGIN_MARGIN_S = 30.0     # log in again this long before the IAC-ID expires
HELLO = "/x1124/v1/hello"
FINISH = "/x1124/v1/finish"
HEX = re.compile(r"^(?:[0-9a-f]{2})+$")

Post = Callable[[str, dict], tuple[int, dict]]


def http_post(base: str, timeout: float = 5.0) -> Post:
    """A JSON POST function to one base URL: (path, doc) -> (status, doc); 0 if unreachable."""
    def post(path: str, doc: dict) -> tuple[int, dict]:
        req = urllib.request.Request(base.rstrip("/") + path, data=json.dumps(doc).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, _json_obj(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json_obj(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            return 0, {"error": "unreachable", "detail": str(getattr(exc, "reason", exc))}
    return post


def _json_obj(raw: bytes) -> dict:
    try:
        doc = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        return {"error": "bad_response", "detail": "not JSON"}
    return doc if isinstance(doc, dict) else {"error": "bad_response", "detail": "not an object"}


# --- the application server (SP) ---------------------------------------------------------------

@dataclass
class _Pending:
    isr_id: str
    service: str
    nonce_ss: bytes
    nonce_sp: bytes
    key: bytes
    identity: str
    deadline: float


@dataclass
class SpServer:
    """SP logic, transport-free: ``hello``/``finish`` take and return JSON objects."""

    name: str
    service: str
    sp_key: bytes
    eac: Post
    clock: Callable[[], float] = time.monotonic
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)
    iac_id: str | None = None
    session_key: bytes = b""
    iac_deadline: float = 0.0
    cache: dict[str, tuple[bytes, str, float]] = field(default_factory=dict)
    pending: dict[str, _Pending] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def login(self) -> tuple[int, dict]:
        """X.1124 §8.2 for the SP: challenge, proof, check the EAC's proof back."""
        st, ch = self.eac("/eac/v1/sp/challenge", {"sp": self.name})
        if st != 200:
            return st, ch
        try:
            n_eac = bytes.fromhex(ch["nonce_eac"])
        except (KeyError, TypeError, ValueError):
            return 502, {"error": "bad_eac_answer", "detail": "challenge without a nonce"}
        n_sp = os.urandom(NONCE_LEN)
        st, lg = self.eac("/eac/v1/sp/login", {
            "sp": self.name, "nonce_eac": n_eac.hex(), "nonce_sp": n_sp.hex(),
            "proof": sp_proof(self.sp_key, "sp", self.name, n_eac, n_sp).hex()})
        if st != 200:
            return st, lg
        try:
            ok = hmac.compare_digest(bytes.fromhex(lg["eac_proof"]),
                                     sp_proof(self.sp_key, "eac", self.name, n_eac, n_sp))
            iac, lifetime = str(lg["iac_id"]), float(lg["lifetime_s"])
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            return 502, {"error": "bad_eac_proof", "detail": "the EAC did not prove the SP key"}
        self.iac_id, self.session_key = iac, sp_session_key(self.sp_key, self.name, n_eac, n_sp)
        self.iac_deadline = self.clock() + lifetime - min(RELOGIN_MARGIN_S, lifetime / 2)
        self.log(f"sp {self.name}: logged in to the EAC as {iac}")
        return 200, {"iac_id": iac}

    def _inquire(self, isr_id: str) -> tuple[int, dict] | tuple[bytes, str, float]:
        """Key for (isr_id, our service): cache, else ask the EAC (logging in again if needed)."""
        now = self.clock()
        hit = self.cache.get(isr_id)
        if hit is not None and hit[2] > now:
            return hit
        for attempt in (1, 2):
            if self.iac_id is None or now >= self.iac_deadline:
                st, out = self.login()
                if st != 200:
                    return (st if st else 502), {"error": out.get("error", "eac_login_failed"),
                                                 "detail": out.get("detail", "")}
            nonce = os.urandom(NONCE_LEN).hex()
            iac = self.iac_id
            st, ans = self.eac("/eac/v1/inquiry", {
                "iac_id": iac, "isr_id": isr_id, "service": self.service, "nonce": nonce,
                "mac": inquiry_mac(self.session_key, iac, isr_id, self.service, nonce)})
            if st in (401, 410) and ans.get("error") in ("unknown_iac_id", "expired_iac_id",
                                                         "bad_request_mac") and attempt == 1:
                self.iac_id = None              # the EAC forgot our login: log in once more
                continue
            if st != 200:
                return (st if st else 502), {"error": ans.get("error", "eac_error"),
                                             "detail": ans.get("detail", "")}
            grant = open_answer(self.session_key, iac, nonce, ans)
            if grant is None or grant.isr_id != isr_id or grant.sp_name != self.name \
                    or grant.service != self.service:
                return 502, {"error": "bad_eac_answer",
                             "detail": "answer MAC or sealed key invalid"}
            try:
                lifetime = float(ans["lifetime_s"])
            except (KeyError, TypeError, ValueError):
                lifetime = 0.0
            entry = (grant.key, grant.identity, self.clock() + lifetime)
            self.cache[isr_id] = entry
            return entry
        return 502, {"error": "eac_login_failed"}

    def hello(self, doc: Any) -> tuple[int, dict]:
        """SS service request: look the ISR-ID up at the EAC, then prove the key first."""
        if not isinstance(doc, dict) or set(doc) != {"isr_id", "service", "nonce_ss"} \
                or not all(isinstance(v, str) for v in doc.values()):
            return 400, {"error": "bad_request",
                         "detail": "need isr_id, service, nonce_ss (strings)"}
        if doc["service"] != self.service:
            return 404, {"error": "service_not_offered",
                         "detail": f"{self.name} offers {self.service}"}
        if not re.fullmatch(r"isr-[0-9a-f]{8,64}", doc["isr_id"]) \
                or not HEX.match(doc["nonce_ss"]) \
                or len(doc["nonce_ss"]) < 2 * NONCE_LEN or len(doc["nonce_ss"]) > 128:
            return 400, {"error": "bad_request", "detail": "malformed isr_id or nonce_ss"}
        with self.lock:
            got = self._inquire(doc["isr_id"])
            if isinstance(got[0], int):
                return got                                   # the EAC's refusal, passed on
            key, identity, _ = got
            now = self.clock()
            self.pending = {k: p for k, p in self.pending.items() if p.deadline > now}
            nonce_ss, nonce_sp = bytes.fromhex(doc["nonce_ss"]), mutual_auth.new_nonce()
            if nonce_ss == nonce_sp:
                return 400, {"error": "bad_request", "detail": "nonce reflected"}
            token = os.urandom(16).hex()
            self.pending[token] = _Pending(doc["isr_id"], self.service, nonce_ss, nonce_sp, key,
                                           identity, now + PENDING_S)
        return 200, {"session": token, "nonce_sp": nonce_sp.hex(),
                     "proof_sp": mutual_auth.proof(key, "sp", nonce_ss, nonce_sp, doc["isr_id"],
                                                   self.name, self.service).hex()}

    def finish(self, doc: Any) -> tuple[int, dict]:
        """The SS's proof; on success the service data."""
        if not isinstance(doc, dict) or set(doc) != {"session", "proof_ss"} \
                or not all(isinstance(v, str) and HEX.match(v) for v in doc.values()):
            return 400, {"error": "bad_request",
                         "detail": "need session and proof_ss (hex strings)"}
        with self.lock:
            p = self.pending.pop(doc["session"], None)
        if p is None or p.deadline <= self.clock():
            return 401, {"error": "unknown_session", "detail": "no pending hello (used or expired)"}
        if not mutual_auth.verify(p.key, "ss", p.nonce_ss, p.nonce_sp, p.isr_id, self.name,
                                  p.service, bytes.fromhex(doc["proof_ss"])):
            return 401, {"error": "bad_ss_proof", "detail": "the SS did not prove the derived key"}
        self.log(f"sp {self.name}: {p.identity} ({p.isr_id}) authenticated for {p.service}")
        return 200, {"data": f"hello {p.identity}", "identity": p.identity, "sp": self.name,
                     "service": p.service}


def make_http_server(sp: SpServer, host: str = "0.0.0.0", port: int = 8000) -> ThreadingHTTPServer:
    """The SP's HTTP front end (call ``serve_forever``; ``server_address`` has the real port)."""
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            n = self.headers.get("Content-Length", "")
            if not n.isdigit() or int(n) > MAX_BODY:
                return self._send(400, {"error": "bad_request",
                                        "detail": "Content-Length missing or too large"})
            raw = self.rfile.read(int(n))
            try:
                doc = json.loads(raw.decode())
            except (UnicodeDecodeError, ValueError):
                return self._send(400, {"error": "bad_request", "detail": "body is not JSON"})
            route = {HELLO: sp.hello, FINISH: sp.finish}.get(self.path)
            if route is None:
                return self._send(404, {"error": "not_found"})
            try:
                self._send(*route(doc))
            except Exception as exc:   # keep serving other clients
                self._send(500, {"error": "internal", "detail": type(exc).__name__})

        def _send(self, status: int, doc: dict) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):
            pass

    return ThreadingHTTPServer((host, port), Handler)


# --- the client (SS) -----------------------------------------------------------------------------

def read_keys(path: str | Path, now: float | None = None) -> tuple[str, bytes]:
    """(ISR-ID, sp_root) from the supplicant's keys file; ValueError with a reason otherwise."""
    doc = jsonfile.read(path)
    if doc is None:
        raise ValueError(f"keys file {path} is missing, unreadable or not a JSON object")
    isr, root = doc.get("isr_id"), doc.get("sp_root")
    if not isinstance(isr, str) or not isinstance(root, str) or not HEX.match(root):
        raise ValueError(f"keys file {path} has no isr_id/sp_root (EAP-MD5 gives no keys)")
    exp = doc.get("expires")
    if isinstance(exp, (int, float)) and (time.time() if now is None else now) >= exp:
        raise ValueError(f"keys in {path} expired: re-authenticate")
    return isr, bytes.fromhex(root)


GONE = ("unknown_isr_id", "expired_isr_id")     # the EAC no longer honours our session
REAUTH_WAIT_S = 15.0


def run_client(keys_file: str | Path, server: Post, sp_name: str, service: str,
               reauth: Callable[[], None] | None = None) -> tuple[int, dict]:
    """SS side of §8.5: returns (exit status, result JSON). When the SP answers 404/410
    because the EAC no longer knows our session (revoked, expired, replaced) and `reauth`
    is given, ask the supplicant to authenticate again (`reauth`), wait for its new keys
    and try once more."""
    t0 = time.monotonic()
    rc, out = _client_once(keys_file, server, sp_name, service, t0)
    if rc == 0 or reauth is None or out.get("status") not in (404, 410) \
            or out.get("error") not in GONE:
        return rc, out
    stale = out.get("isr_id")
    reauth()
    deadline = time.monotonic() + REAUTH_WAIT_S
    while time.monotonic() < deadline:
        try:
            if read_keys(keys_file)[0] != stale:
                rc, out = _client_once(keys_file, server, sp_name, service, t0)
                return rc, {**out, "reauthenticated": True}
        except ValueError:
            pass                # the supplicant is writing it
        time.sleep(0.05)
    return 1, {**out, "detail": f"no new session within {REAUTH_WAIT_S:g} s"}


def _client_once(keys_file: str | Path, server: Post, sp_name: str, service: str,
                 t0: float) -> tuple[int, dict]:
    try:
        isr, root = read_keys(keys_file)
    except ValueError as exc:
        return 1, {"ok": False, "error": "no_keys", "detail": str(exc)}
    key = sp_service_key_from_root(root, isr, sp_name, service)
    nonce_ss = mutual_auth.new_nonce()
    st, hello = server(HELLO, {"isr_id": isr, "service": service, "nonce_ss": nonce_ss.hex()})
    if st != 200:
        return 1, {"ok": False, "status": st, "error": hello.get("error", "refused"),
                   "detail": hello.get("detail", ""), "isr_id": isr}
    try:
        nonce_sp, proof_sp = bytes.fromhex(hello["nonce_sp"]), bytes.fromhex(hello["proof_sp"])
        session = str(hello["session"])
    except (KeyError, TypeError, ValueError):
        return 1, {"ok": False, "error": "bad_sp_answer"}
    if not mutual_auth.verify(key, "sp", nonce_ss, nonce_sp, isr, sp_name, service, proof_sp):
        return 1, {"ok": False, "error": "bad_sp_proof",
                   "detail": "the server does not hold our key"}
    st, fin = server(FINISH, {"session": session, "proof_ss": mutual_auth.proof(
        key, "ss", nonce_ss, nonce_sp, isr, sp_name, service).hex()})
    if st != 200:
        return 1, {"ok": False, "status": st, "error": fin.get("error", "refused"),
                   "detail": fin.get("detail", "")}
    return 0, {"ok": True, "sp": sp_name, "service": service, "isr_id": isr,
               "data": fin.get("data"),
               "elapsed_ms": (time.monotonic() - t0) * 1000}


# --- command line --------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m controller.admission.sp_demo",
                                 description="X.1124 demo application server and client")
    sub = ap.add_subparsers(dest="role", required=True)
    s = sub.add_parser("server", help="application server (SP)")
    s.add_argument("--name", required=True)
    s.add_argument("--service", required=True)
    s.add_argument("--eac", required=True, help="EAC base URL, e.g. http://10.0.100.254:8080")
    s.add_argument("--sp-psk", required=True, help="the SP's PSK (hex) registered at the EAC")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--bind", default="0.0.0.0")
    c = sub.add_parser("client", help="service subscriber (SS)")
    c.add_argument("--keys", required=True, type=Path, help="keys JSON of crs supplicant")
    c.add_argument("--server", required=True, help="http://IP:PORT of the SP")
    c.add_argument("--sp", required=True)
    c.add_argument("--service", required=True)
    c.add_argument("--supplicant-pid", type=int,
                   help="our supplicant's PID: when the SP says the session is gone (404/410), "
                        "signal it to authenticate again (SIGHUP) and retry with the new keys")
    return ap


def main(argv: list[str] | None = None) -> int:
    """``server`` runs until SIGTERM/SIGINT; ``client`` prints one JSON line, 0 on mutual
    success."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.role == "client":
        pid = args.supplicant_pid
        rc, out = run_client(args.keys, http_post(args.server), args.sp, args.service,
                             (lambda: os.kill(pid, signal.SIGHUP)) if pid else None)
        print(json.dumps(out), flush=True)
        return rc
    try:
        sp_key = bytes.fromhex(sp_key_from_psk(args.sp_psk))
    except ValueError as exc:
        print(f"sp_demo: --sp-psk: {exc}", file=sys.stderr)
        return 2
    sp = SpServer(args.name, args.service, sp_key, http_post(args.eac))
    st, out = sp.login()
    if st != 200:     # keep going: the EAC may come up later; every hello retries the login
        print(f"sp_demo: EAC login failed ({st}): {out.get('error')} {out.get('detail', '')}",
              file=sys.stderr, flush=True)
    try:
        httpd = make_http_server(sp, args.bind, args.port)
    except OSError as exc:
        print(f"sp_demo: cannot listen on {args.bind}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"SP-LISTENING {args.name} {httpd.server_address[1]}", flush=True)
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=httpd.shutdown).start())
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
