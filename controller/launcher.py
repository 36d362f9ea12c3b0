"""Start the controller on Ryu or os-ken (`--framework ryu|os-ken`): the framework's manager,
with the modules `controller.ryu_shell.framework` picks (and its eventlet shim for Ryu 4.34).

The REST API is not the framework's (os-ken has no
WSGI layer, and Ryu's runs eventlet's WSGI server with its defaults: no socket timeout,
tracebacks to clients, 1,024 connections for everyone): the app serves it itself with
`controller.httpserver` (socket timeouts, a per-source connection cap, no tracebacks, X.1125
reports answered without the WSGI stack).
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any

from controller import restguard
from controller import settings as settings_mod
from controller.config import ConfigError

log = logging.getLogger("crs.rest")


def check(settings: settings_mod.Settings) -> settings_mod.Loaded:
    """`settings.validate`: every problem surfaces (ConfigError) before Ryu starts."""
    return settings_mod.validate(settings)


def run(settings: settings_mod.Settings, profile: str | None = None,
        framework: str = "ryu") -> int:
    # Validate everything before Ryu starts: a bad file is exit status 2, not a traceback.
    import importlib.util
    top = {"ryu": "ryu", "os-ken": "os_ken"}.get(framework)
    if top is None or importlib.util.find_spec(top) is None:
        print(f"error: framework {framework!r} is not installed (ryu or os-ken; "
              "run 'sudo make setup')", file=sys.stderr)
        return 2
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
                     settings.rest_port, settings, framework)


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
              settings: settings_mod.Settings | None = None, framework: str = "ryu") -> int:
    """Run `apps` under the framework's manager. Our app serves its REST API itself; the
    reference Ryu apps of the benchmarks (`__main__`) get Ryu's own on `rest_port`."""
    os.environ["CRS_FRAMEWORK"] = framework
    from controller.ryu_shell import framework as fw  # (its eventlet shim first)
    ours = settings is not None
    wsapi = [] if ours else ["--wsapi-host", rest_host, "--wsapi-port", str(rest_port)]
    fw.module("cmd.manager").main(
        args=[*_ofp_args(settings or settings_mod.Settings(), ofp_port), *wsapi, *apps],
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


if __name__ == "__main__":
    # Reference Ryu apps for benchmarks: python -m controller.launcher APP OFP_PORT REST_PORT
    sys.exit(_ryu_main([sys.argv[1]], int(sys.argv[2]), "127.0.0.1", int(sys.argv[3])))
