"""Start the Ryu controller: the only place with the eventlet shim and ryu.cmd.manager.

Ryu 4.34 imports `eventlet.wsgi.ALREADY_HANDLED`, which eventlet >= 0.30.3 dropped; the shim
restores the name before Ryu is imported. Keeping it here (and Ryu imports behind
`controller.ryu_shell`) keeps a later move to os-ken small.
"""
from __future__ import annotations

import logging
import os
import sys

from controller import settings as settings_mod
from controller import topology
from controller.config import ConfigError


def check(settings: settings_mod.Settings) -> None:
    """Load every file the settings name, so problems surface before Ryu starts."""
    topo = topology.load(settings.topology_file) if settings.topology_file else None
    if settings.admission_mode == "authenticate":
        from controller.admission.authorization import load_authorization
        from controller.admission.credentials import load_credentials
        load_credentials(settings.credentials_file)
        load_authorization(settings.authorization_file)
    if settings.crs_enabled:
        from controller.crs.policy import load_policy
        load_policy(settings.crs_policy_file)
        if topo is None:
            raise ConfigError([(settings.config_file or "<command line>", "topology",
                                "the reacting system needs a topology file")])


def run(settings: settings_mod.Settings) -> int:
    # Validate everything before Ryu starts: a bad file is exit status 2, not a traceback.
    try:
        check(settings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(settings.db_path)), exist_ok=True)
    settings_mod.CURRENT = settings
    # Ryu installs the log handler; only our own loggers' level is set here.
    logging.getLogger("crs").setLevel(settings.log_level.upper())

    return _ryu_main(["controller.ryu_shell.app"], settings.ofp_port, settings.rest_host,
                     settings.rest_port)


def _ryu_main(apps: list[str], ofp_port: int, rest_host: str, rest_port: int) -> int:
    import eventlet.wsgi
    if not hasattr(eventlet.wsgi, "ALREADY_HANDLED"):
        eventlet.wsgi.ALREADY_HANDLED = object()
    from ryu.cmd import manager

    manager.main(args=["--ofp-tcp-listen-port", str(ofp_port), "--wsapi-host", rest_host,
                       "--wsapi-port", str(rest_port), *apps], prog="crs controller")
    return 0


if __name__ == "__main__":
    # Reference Ryu apps for benchmarks: python -m controller.launcher APP OFP_PORT REST_PORT
    sys.exit(_ryu_main([sys.argv[1]], int(sys.argv[2]), "127.0.0.1", int(sys.argv[3])))
