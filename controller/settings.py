"""Controller settings: command-line options plus the controller configuration file.

`crs controller` validates everything here before Ryu starts, so a bad file is an error
message and exit status 2, never a half-started controller.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.config import Field, Validator, in_range, load_yaml, one_of

SCHEMA = {
    "admission": Field(dict, default={}, items={
        "mode": Field(str, default="open", check=one_of("open", "authenticate"),
                      doc="open: allow all (no authentication); authenticate: X.1124 802.1X"),
        "eapol_pps": Field(int, default=200, check=in_range(1, 100000)),
    }),
    "forwarding": Field(dict, default={}, items={
        "idle_timeout_s": Field(int, default=300, check=in_range(0, 86400)),
    }),
    "topology": Field(str, doc="topology file: cells, servers and inter-switch ports"),
    "audit_log": Field(str, default="var/audit.jsonl"),
}


@dataclass
class Settings:
    ofp_port: int = 6653
    rest_port: int = 8080
    rest_host: str = "0.0.0.0"
    db_path: str = "var/crs.db"
    log_level: str = "INFO"
    config_file: str | None = None
    topology_file: str | None = None
    admission_mode: str = "open"
    eapol_pps: int = 200
    idle_timeout_s: int = 300
    audit_log: str = "var/audit.jsonl"
    extra: dict[str, Any] = field(default_factory=dict)


def load_settings(config_file: str | None, **overrides: Any) -> Settings:
    """Settings from a controller config file (optional) and command-line overrides."""
    s = Settings(config_file=config_file)
    if config_file:
        v = Validator(str(config_file))
        doc = v.mapping(load_yaml(config_file), SCHEMA)
        v.raise_if_any()
        s.admission_mode = doc["admission"]["mode"]
        s.eapol_pps = doc["admission"]["eapol_pps"]
        s.idle_timeout_s = doc["forwarding"]["idle_timeout_s"]
        s.audit_log = doc["audit_log"]
        if doc["topology"]:
            topo = Path(doc["topology"])
            if not topo.is_absolute():
                topo = Path(config_file).parent / topo
            s.topology_file = str(topo)
    for key, value in overrides.items():
        if value is not None:
            setattr(s, key, value)
    return s


# The launcher stores the validated settings here before Ryu loads the app (same process).
CURRENT: Settings | None = None
