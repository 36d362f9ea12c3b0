"""The remediation portal and update server on the update host (X.1125: redirection to
remediation; `crs net up` runs it).

Port 80 serves the update items the policy names (`/updates/<item>`, what agents fetch) and
the agent itself (`/downloads/crs-agent.py`). The portal port (8080) answers any path with a
page for the terminal asking: the controller redirects an UNKNOWN or restricted terminal's
web requests here (table 1 rewrites tcp/80 to this port), and the page says what the
reacting system thinks of it, why, and what to do, from the controller's
`GET /portal/v1/terminal?ip=` (which answers this host only).
"""
from __future__ import annotations

import argparse
import html
import json
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

AGENT_SOURCE = Path(__file__).with_name("agent.py")
WHAT_TO_DO = {
    "redirect_web": "Install the security agent below and start it: it reports your "
                    "terminal's state, and your access opens once it is found compliant.",
    "isolate": "Your terminal is isolated: only this server and the controller are reachable. "
               "Apply the update below (the agent does it by itself).",
    "restrict_apps": "Some services are closed to your terminal until it is updated.",
    "rate_limit": "Your terminal's traffic is rate-limited until it is updated.",
    "permit": "Nothing to do: your terminal has full access.",
}


def page(info: dict[str, Any] | None, ip: str, items: list[str]) -> str:
    """The portal page (plain HTML, no script: it must render in any browser)."""
    e = html.escape
    if info is None:
        body = (f"<p>The controller knows no terminal at <b>{e(ip)}</b>: authenticate "
                "first (IEEE 802.1X).</p>")
    else:
        todo = "".join(f"<li>{e(WHAT_TO_DO.get(a, a))}</li>" for a in info["actions"]) \
            or "<li>Wait for your agent's next report.</li>"
        upd = (f'<p>Update for your terminal: <a id="update" href="/updates/{e(info["update"])}">'
               f'{e(info["update"])}</a></p>' if info.get("update") else "")
        body = (f'<p>Terminal <b id="name">{e(info["name"])}</b> ({e(ip)})</p>'
                f'<p>Security level: <b id="level">{e(info["level"])}</b></p>'
                f'<p>Why: <span id="reason">{e(info["reason"])}</span></p>'
                f'<p>Security agent: <span id="sca">{e(info["sca"])}</span></p>'
                f"<ul>{todo}</ul>{upd}")
    links = "".join(f'<li><a href="/updates/{e(i)}">{e(i)}</a></li>' for i in items)
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Network access: "
            "security check</title></head><body><h1>Network access: security check</h1>"
            f'{body}<h2>Downloads</h2><ul><li><a id="agent" href="/downloads/crs-agent.py">'
            f"Security agent (crs agent)</a></li>{links}</ul></body></html>")


MAX_BUSY = 32          # portal pages being built at once (each asks the controller)
CACHE_S = 2.0          # what the controller said about an address is reused this long


def make_handler(ask: Callable[[str], dict[str, Any] | None], items: list[str],
                 portal: bool) -> type[BaseHTTPRequestHandler]:
    busy = threading.BoundedSemaphore(MAX_BUSY)
    cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    def cached(ip: str) -> dict[str, Any] | None:
        now = time.monotonic()
        hit = cache.get(ip)
        if hit is None or now - hit[0] > CACHE_S:
            if len(cache) > 4096:       # bounded: addresses are the network's, few
                cache.clear()
            hit = cache[ip] = (now, ask(ip))
        return hit[1]

    class Handler(BaseHTTPRequestHandler):
        timeout = 10            # a client that stalls loses its connection
        def log_message(self, fmt: str, *args: Any) -> None:
            print(f"{self.client_address[0]} {fmt % args}", file=sys.stderr, flush=True)

        def do_GET(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            if path.startswith("/updates/") and path[len("/updates/"):] in items:
                item = path[len("/updates/"):]
                return self._send(200, "text/plain", f"update {item}\n".encode())
            if path == "/downloads/crs-agent.py":
                return self._send(200, "text/x-python", AGENT_SOURCE.read_bytes())
            if not portal:
                return self._send(404, "text/plain", b"not found\n")
            ip = self.client_address[0]
            if not busy.acquire(blocking=False):     # (a terminal hammering the page)
                return self._send(503, "text/plain", b"busy, try again\n")
            try:
                info = cached(ip)
            finally:
                busy.release()
            self._send(200, "text/html; charset=utf-8", page(info, ip, items).encode())

        def _send(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
    return Handler


def controller_asker(base: str) -> Callable[[str], dict[str, Any] | None]:
    def ask(ip: str) -> dict[str, Any] | None:
        url = f"{base.rstrip('/')}/portal/v1/terminal?{urllib.parse.urlencode({'ip': ip})}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None
    return ask


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m controller.crs.portal",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--controller", required=True,
                    help="the controller's HTTP services, e.g. http://10.0.100.254:8080")
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=8080, help="portal port")
    ap.add_argument("--updates-port", type=int, default=80, help="0: no update server")
    ap.add_argument("--item", action="append", default=[], help="an update item (repeatable)")
    ap.add_argument("--policy", help="a CRS policy file: its update items")
    a = ap.parse_args(argv)
    items = list(a.item)
    if a.policy:
        from controller.crs.policy import load_policy
        items += [i for i in load_policy(a.policy).items if i not in items]
    ask = controller_asker(a.controller)
    servers = [ThreadingHTTPServer((a.bind, a.port), make_handler(ask, items, True))]
    if a.updates_port:
        servers.append(ThreadingHTTPServer((a.bind, a.updates_port),
                                           make_handler(ask, items, False)))
    print(f"PORTAL-LISTENING {a.port} updates {a.updates_port} items {','.join(items)}",
          flush=True)
    for srv in servers[1:]:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        servers[0].serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
