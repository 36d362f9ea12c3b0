"""The REST API (operators on loopback; terminals and service providers over the emulated
network): routes, guards and handlers, as a WSGI application of its own.

It needs no framework: `controller.httpserver` serves it (the app starts that server), so the
same API runs on Ryu and on os-ken. Handlers take a WebOb request and return a WebOb response.
"""
from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Callable

from webob import Request, Response

from controller import metrics, restguard
from controller.core import Core
from controller.operator import ApiError

log = logging.getLogger("crs.app")
MAX_BODY = 64 * 1024
_ROUTES: list[tuple[frozenset[str], re.Pattern, str]] = []


def route(path: str, methods: list[str]) -> Callable:
    """Declare a handler for `path` ({name} matches one segment, {name:.*} the rest)."""
    pattern = re.sub(r"\{(\w+)(?::([^}]*))?\}",
                     lambda m: f"(?P<{m.group(1)}>{m.group(2) or '[^/]+'})", path)

    def mark(fn: Callable) -> Callable:
        _ROUTES.append((frozenset(methods), re.compile(f"^{pattern}$"), fn.__name__))
        return fn
    return mark


def _standby_body(app: Any) -> bytes:
    st = app.ha.status() if app.ha else {}
    return json.dumps({"error": "this controller is a standby", "leader": st.get("leader"),
                       "leader_url": st.get("leader_url")}).encode()


def _to_leader(app: Any, req) -> Response:
    """An operator's write reaching a standby: 307 to the same path on the leader (the
    method and body are kept; `crs` follows it), or 503 while nobody leads."""
    body = _standby_body(app)
    url = app.ha.status().get("leader_url") if app.ha else None
    if not url:
        return Response(status=503, content_type="application/json", body=body)
    r = Response(status=307, content_type="application/json", body=body)
    r.headers["Location"] = url.rstrip("/") + req.path_qs
    app.core.counters["ha_redirected_to_leader"] += 1
    return r


def _json(body, status: int = 200) -> Response:
    return Response(status=status, content_type="application/json", charset="utf-8",
                    body=json.dumps(body, sort_keys=True, default=str).encode())


def _error(status: int, reason: str, **extra) -> Response:
    return _json({"error": reason, **extra}, status)


def _local(req) -> bool:
    return restguard.is_loopback(req.remote_addr or "")


def operator_only(fn):
    """Operator endpoints answer only on loopback: terminals reach the same port over the
    emulated network and must not quarantine or release anyone. A POST (it changes state)
    also needs the operator token and a JSON body type: a web page in a browser on the
    controller host reaches loopback too, but can neither read the token nor send a JSON
    content type cross-site (that needs a CORS preflight, which this server never grants)."""
    def wrapper(self, req, **kw):
        if not _local(req):
            return _error(403, "operator API is only served on loopback")
        if req.method == "POST":
            refusal = restguard.operator_post_refusal(
                req.headers.get("Content-Type"), req.headers.get("Authorization"),
                self.app.operator_token)
            if refusal:
                status, counter, reason = refusal
                self.core.counters[counter] += 1
                # the raw PATH_INFO: webob's req.path raises on bytes that are not UTF-8
                log.warning("operator %s %r refused: %s", req.method,
                            req.environ.get("PATH_INFO", ""), reason)
                return _error(status, reason)
        try:
            return fn(self, req, **kw)
        except ApiError as exc:
            return _error(exc.status, exc.reason, **exc.extra)
    wrapper.__name__ = fn.__name__
    return wrapper


def _body(req) -> bytes:
    if req.content_length and req.content_length > MAX_BODY:
        raise ApiError(413, f"body larger than {MAX_BODY} bytes")
    try:
        return req.body or b""
    except OSError:  # the client stopped sending (webob DisconnectionError) or timed out
        raise ApiError(400, "request body incomplete") from None


def _json_body(req) -> dict:
    raw = _body(req)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object")
    return data


class RestApi:
    """The handlers; `wsgi` dispatches to them."""

    def __init__(self, app: Any):
        self.app = app

    @property
    def core(self) -> Core:
        return self.app.core

    # operators (loopback) ---------------------------------------------------------------

    @route("/crs/v1/status", ["GET"])
    @operator_only
    def status(self, req, **_):
        st = self.core.status()
        if self.app.ha is not None:
            st["ha"] = ha = self.app.ha.status()
            if self.app.service is not None:
                ha["service_port"] = self.app.service.status()
            if self.app.active:
                ha["takeover_load_ms"] = getattr(self.app, "takeover_load_ms", None)
            else:       # what this standby shows is a copy of the store this old
                ha["copy_age_s"] = round(time.time() - self.app.copy_at, 3)
        return _json(st)

    @route("/metrics", ["GET"])
    @operator_only
    def prometheus(self, req, **_):
        """Prometheus text format (controller.metrics); loopback only, like the rest."""
        ha = self.app.ha.status() if self.app.ha is not None else None
        return Response(status=200, body=metrics.exposition(self.core, ha),
                        content_type="text/plain", charset="utf-8")

    @route("/crs/v1/terminals", ["GET"])
    @operator_only
    def terminals(self, req, **_):
        return _json(self.core.api.terminals(time.time()))

    @route("/crs/v1/terminals/{who}", ["GET"])
    @operator_only
    def terminal(self, req, who, **_):
        now = time.time()
        return _json(self.core.api.row(self.core.api.resolve(who, now), now))

    # (the URL variable may not be called "action": Routes reserves that name)
    @route("/crs/v1/terminals/{who}/{verb}", ["POST"])
    @operator_only
    def terminal_action(self, req, who, verb, **_):
        if not self.app.active:
            return _to_leader(self.app, req)
        row, out = self.core.api.act(verb, who, _json_body(req), time.time())
        self.app.send(out)
        return _json(row)

    @route("/crs/v1/policy", ["GET"])
    @operator_only
    def policy(self, req, **_):
        return _json(self.core.api.policy_show())

    @route("/crs/v1/policy/reload", ["POST"])
    @operator_only
    def policy_reload(self, req, **_):
        if not self.app.active:
            return _to_leader(self.app, req)
        shown, out = self.core.api.policy_reload(time.time())
        self.app.send(out)
        return _json(shown)

    # terminals (SCA) and service providers, over the emulated network ---------------------

    @route("/crsap/v1/messages", ["POST"])
    def crsap(self, req, **_):
        try:
            raw = _body(req)
        except ApiError as exc:
            return _error(exc.status, exc.reason)
        status, body = self.app.crsap.submit(raw)
        return Response(status=status, content_type="application/json", body=body)

    @route("/roam/v1/messages", ["POST"])
    def roam(self, req, **_):
        """A peer SCS's roaming message (X.1125 13.3); authenticated by the core, so it is
        served on every address (peers and attackers alike reach it)."""
        raw = _service_body(self.app, req)
        if isinstance(raw, Response):
            return raw
        status, body = self.app.roam(raw)
        return Response(status=status, content_type="application/json", body=body)

    @route("/portal/v1/terminal", ["GET"])
    def portal(self, req, **_):
        """X.1125 remediation portal (on the update host) asking what to tell a terminal."""
        if not _portal_host(self.app, req):
            return _error(403, "only the update host's portal may ask")
        try:
            return _json(self.core.api.portal(str(req.params.get("ip", "")), time.time()))
        except ApiError as exc:
            return _error(exc.status, exc.reason)

    @route("/eac/v1/{path:.*}", ["POST", "GET"])
    def eac(self, req, path, **_):
        raw = _service_body(self.app, req)
        if isinstance(raw, Response):
            return raw
        status, body = self.core.api.eac_request(req.method, f"/eac/v1/{path}", raw,
                                                 time.time())
        return _json(body, status)


def _service_body(app: Any, req) -> "bytes | Response":
    """The body of a request to the services (the EAC, peer SCSs), or the answer refusing
    it: a standby serves none of them; a body too large or cut short gets its error."""
    if not app.active:
        return _json(json.loads(_standby_body(app)), 503)
    try:
        return _body(req)
    except ApiError as exc:
        return _error(exc.status, exc.reason)


def _portal_host(app: Any, req) -> bool:
    """The update host's portal asks about the terminal it serves: only from that host (its
    address is pinned by table 0 like every other) or loopback."""
    topo = app._loaded.topology
    hosts = {h.ip for h in topo.hosts if h.role == "update"} if topo is not None else set()
    return _local(req) or (req.remote_addr or "") in hosts


def wsgi(api: RestApi) -> Callable:
    """The WSGI application: 404 for an unknown path, 405 for a known path asked with
    another method, else the handler's response."""
    def application(environ: dict, start_response: Callable) -> Any:
        req = Request(environ)
        path = environ.get("PATH_INFO", "")
        allowed: set[str] = set()
        for methods, pattern, name in _ROUTES:
            m = pattern.match(path)
            if m is None:
                continue
            if req.method not in methods:
                allowed |= methods
                continue
            return getattr(api, name)(req, **m.groupdict())(environ, start_response)
        resp = _error(405, "method not allowed") if allowed else _error(404, "not found")
        if allowed:
            resp.headers["Allow"] = ", ".join(sorted(allowed))
        return resp(environ, start_response)
    return application
