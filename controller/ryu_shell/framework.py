"""Which OpenFlow framework the shell runs on: Ryu (the default: what users of this field
know) or os-ken, its maintained fork (`crs controller --framework os-ken`).

The two have the same modules under different top-level names (`ryu.*`, `os_ken.*`); the
shell and the launcher take them from here, and nothing else knows which one runs. The
choice is the environment variable CRS_FRAMEWORK, set by the launcher before the app loads.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

CHOICES = {"ryu": "ryu", "os-ken": "os_ken"}
NAME = os.environ.get("CRS_FRAMEWORK", "ryu")
if NAME not in CHOICES:
    raise RuntimeError(f"CRS_FRAMEWORK={NAME!r}: expected one of {sorted(CHOICES)}")


def module(path: str) -> ModuleType:
    """`module("lib.hub")`: ryu.lib.hub or os_ken.lib.hub."""
    return importlib.import_module(f"{CHOICES[NAME]}.{path}")


def _shim() -> None:
    """Ryu 4.34 imports `eventlet.wsgi.ALREADY_HANDLED`, which eventlet >= 0.30.3 dropped:
    the name is restored before any Ryu module loads."""
    import eventlet.wsgi
    if not hasattr(eventlet.wsgi, "ALREADY_HANDLED"):
        eventlet.wsgi.ALREADY_HANDLED = object()


_shim()


app_manager = module("base.app_manager")
App = getattr(app_manager, "RyuApp", None) or app_manager.OSKenApp
ofp_event = module("controller.ofp_event")
handler = module("controller.handler")
hub = module("lib.hub")
ofproto_v1_3 = module("ofproto.ofproto_v1_3")
ofproto_v1_3_parser = module("ofproto.ofproto_v1_3_parser")
