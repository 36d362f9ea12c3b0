"""Start the Ryu controller: the only place with the eventlet shim and ryu.cmd.manager.

Ryu 4.34 imports `eventlet.wsgi.ALREADY_HANDLED`, which eventlet >= 0.30.3 dropped; the shim
restores the name before Ryu is imported. Keeping it here (and Ryu imports behind
`controller.ryu_shell`) keeps a later move to os-ken small.

The REST server is also chosen here (the one other place that touches eventlet): Ryu
would run eventlet's WSGI server with its defaults (no socket timeout, tracebacks to clients,
1,024 connections for everyone), so one terminal could hold every connection and stop all
reports; and its request parsing costs more than evaluating a report. `serve_rest` runs
`controller.httpserver` instead: socket timeouts, a per-source connection cap, no
tracebacks, and X.1125 reports answered without the WSGI stack.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable

from controller import restguard
from controller import settings as settings_mod
from controller.config import ConfigError

log = logging.getLogger("crs.rest")


def check(settings: settings_mod.Settings) -> settings_mod.Loaded:
    """`settings.validate`: every problem surfaces (ConfigError) before Ryu starts."""
    return settings_mod.validate(settings)


def run(settings: settings_mod.Settings, profile: str | None = None) -> int:
    # Validate everything before Ryu starts: a bad file is exit status 2, not a traceback.
    try:
        loaded = check(settings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if "://" not in settings.db_path:      # an SQLite file (not a PostgreSQL URL)
        os.makedirs(os.path.dirname(os.path.abspath(settings.db_path)), exist_ok=True)
    # A new operator token at every start; the Ryu app reads it from this file. Several
    # controllers share one (kept in their store): a standby redirects an operator's
    # request to the leader, which must accept the token the operator read.
    settings.token_file = restguard.token_file(settings.db_path, settings.token_file)
    try:
        shared = _cluster_token(settings.db_path) if settings.ha_enabled else None
    except Exception as exc:        # the store is unreachable: say so, no traceback
        print(f"error: cannot open the shared store for the operator token: {exc}",
              file=sys.stderr)
        return 2
    try:
        restguard.write_token(settings.token_file, shared)
    except OSError as exc:
        print(f"error: cannot write the operator token file {settings.token_file}: {exc}",
              file=sys.stderr)
        return 2
    settings_mod.CURRENT, settings_mod.LOADED = settings, loaded
    # Ryu installs the log handler; only our own loggers' level is set here.
    logging.getLogger("crs").setLevel(settings.log_level.upper())

    if profile:
        _profile_until_stopped(profile)
    return _ryu_main(["controller.ryu_shell.app"], settings.ofp_port, settings.rest_host,
                     settings.rest_port, settings)


def _cluster_token(db_path: str) -> str:
    """The operator token of a group of controllers: made by the first to start, in the
    shared store (next to the session keys it already protects)."""
    import secrets

    from controller.storedb import Db
    db = Db(db_path)
    try:
        db.migrate()
        db.execute("INSERT INTO meta (key, value) VALUES ('operator_token', ?) "
                   "ON CONFLICT (key) DO NOTHING", (secrets.token_urlsafe(32),))
        return db.execute("SELECT value FROM meta WHERE key = 'operator_token'").fetchone()[0]
    finally:
        db.close()


def _profile_until_stopped(path: str) -> None:
    """cProfile the whole process; SIGTERM or SIGINT writes `path` and ends it. Green
    threads switch inside one OS thread, so cumulative times mix them; own times (tottime)
    are right, and show where the CPU goes."""
    import cProfile
    import signal
    prof = cProfile.Profile()

    def stop(signum: int, frame: Any) -> None:
        prof.disable()
        prof.dump_stats(path)
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    prof.enable()


def _ryu_main(apps: list[str], ofp_port: int, rest_host: str, rest_port: int,
              settings: settings_mod.Settings | None = None) -> int:
    import eventlet.wsgi
    if not hasattr(eventlet.wsgi, "ALREADY_HANDLED"):
        eventlet.wsgi.ALREADY_HANDLED = object()
    from ryu.app import wsgi as ryu_wsgi
    from ryu.cmd import manager

    # ryu.cmd.manager looks start_service up when it starts the REST server
    ryu_wsgi.start_service = _rest_service(settings or settings_mod.Settings())
    manager.main(args=[*_ofp_args(settings or settings_mod.Settings(), ofp_port),
                       "--wsapi-host", rest_host, "--wsapi-port", str(rest_port), *apps],
                 prog="crs controller")
    return 0


def _ofp_args(settings: settings_mod.Settings, ofp_port: int) -> list[str]:
    """Where OpenFlow listens: loopback unless told otherwise (terminals must never reach
    it), and over TLS when a certificate is given (real switches over a network); with TLS
    Ryu listens only on the TLS port."""
    args = ["--ofp-listen-host", settings.ofp_host]
    if settings.ofp_tls_cert:
        args += ["--ctl-cert", settings.ofp_tls_cert, "--ctl-privkey", settings.ofp_tls_key,
                 "--ofp-ssl-listen-port", str(ofp_port)]
        if settings.ofp_tls_ca:
            args += ["--ca-certs", settings.ofp_tls_ca]
    else:
        args += ["--ofp-tcp-listen-port", str(ofp_port)]
    return args


def _rest_service(settings: settings_mod.Settings) -> Callable[[Any], Any]:
    """Ryu's `ryu.app.wsgi.start_service`, serving the WSGI application with `serve_rest`.

    The listening socket is made by Ryu's own WSGIServer (same host/port handling); the
    refusal counter goes to the core's counters when the app has a core (`crs status`)."""
    def start_service(app_mgr: Any) -> Callable[[], None] | None:
        from ryu.app import wsgi as ryu_wsgi
        from ryu.lib import hub
        app = next((c for c in app_mgr.contexts.values()
                    if isinstance(c, ryu_wsgi.WSGIApplication)), None)
        if app is None:
            return None
        counters = next((a.core.counters for a in app_mgr.applications.values()
                         if hasattr(a, "core")), None)
        cap = restguard.SourceCap(settings.rest_conn_per_source,
                                  settings.rest_conn_per_loopback, counters)
        listener = ryu_wsgi.WSGIServer(app).server
        crs_app = next((a for a in app_mgr.applications.values() if hasattr(a, "crsap")),
                       None)
        fast = _crsap_fast(crs_app) if crs_app is not None else None
        service = getattr(crs_app, "service", None)
        if service is not None:     # the service port that moves with leadership
            from controller.httpserver import Server
            service.make_server = lambda: Server(app, cap, settings.rest_socket_timeout_s,
                                                 fast, server_port=service.port)
        return lambda: serve_rest(listener, app, cap, settings.rest_socket_timeout_s,
                                  hub.LoggingWrapper(), fast, listener.getsockname()[1])
    return start_service


def _crsap_fast(crs_app: Any) -> Callable:
    """POST /crsap/v1/messages straight into the app's group commit (the WSGI route for
    it stays, for any other server)."""
    from controller.crs.messages import HTTP_PATH

    def fast(method: str, path: str, headers: dict, body: bytes):
        if path != HTTP_PATH or method != "POST":
            return None
        status, answer = crs_app.crsap.submit(body)
        return status, "application/json", answer
    return fast


def serve_rest(sock: Any, app: Callable, cap: restguard.SourceCap, socket_timeout_s: float,
               access_log: Any = None, fast: Any = None, port: int = 0) -> None:
    """Serve `app` on the listening socket `sock` until the process ends
    (`controller.httpserver`: `fast` answers the requests it can without the WSGI stack).
    `access_log` is accepted for Ryu's signature and unused: a line per report would cost
    as much as the report."""
    from controller.httpserver import Server
    Server(app, cap, socket_timeout_s, fast, server_port=port).serve(sock)


if __name__ == "__main__":
    # Reference Ryu apps for benchmarks: python -m controller.launcher APP OFP_PORT REST_PORT
    sys.exit(_ryu_main([sys.argv[1]], int(sys.argv[2]), "127.0.0.1", int(sys.argv[3])))
