"""Controller settings: command-line options plus the controller configuration file.

`crs controller` validates everything here before Ryu starts, so a bad file is an error
message and exit status 2, never a half-started controller.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.config import ConfigError, Field, Validator, in_range, load_yaml, one_of

SCHEMA = {
    "admission": Field(dict, default={}, items={
        "mode": Field(str, default="open", check=one_of("open", "authenticate"),
                      doc="open: allow all (no authentication); authenticate: X.1124 802.1X"),
        "eapol_pps": Field(int, default=1000, check=in_range(1, 100000),
                           doc="EAPOL punt rate per switch (ports not yet seen)"),
        "eapol_port_pps": Field(int, default=20, check=in_range(1, 10000),
                                doc="EAPOL punt rate per edge port"),
        "restore_grace_s": Field(float, default=30.0, check=in_range(1, 3600),
                                 doc="after a restart, restored sessions re-authenticate "
                                     "within this time or are revoked"),
        "credentials": Field(str, default="credentials.yaml",
                             doc="X.1124 subscribers and service providers"),
        "authorization": Field(str, default="authorization.yaml",
                               doc="which groups may reach which servers and services"),
        "session_s": Field(int, default=3600, check=in_range(10, 86400 * 7)),
        "preauth_arp_to_service": Field(bool, default=True),
    }),
    "crs": Field(dict, default={}, items={
        "enabled": Field(bool, default=False,
                         doc="X.1125 reacting system (needs admission mode authenticate)"),
        "policy": Field(str, default="crs_policy.yaml"),
    }),
    "throttle": Field(dict, default={}, items={
        "enabled": Field(bool, default=False, doc="Williamson virus throttle per terminal"),
        "working_set": Field(int, default=5, check=in_range(1, 1000)),
        "new_dest_per_s": Field(float, default=1.0, check=in_range(0.01, 1000)),
    }),
    "forwarding": Field(dict, default={}, items={
        "idle_timeout_s": Field(int, default=300, check=in_range(0, 86400)),
    }),
    "topology": Field(str, doc="topology file: cells, servers and inter-switch ports"),
    "audit_log": Field(str, default="../var/audit.jsonl"),
    "demo": Field(bool, default=False,
                  doc="accept the demo secrets shipped in config/credentials.yaml (public)"),
    # REST server guards (item 7 of issue 8); defaults live in Settings only
    "rest": Field(dict, default={}, items={
        "conn_per_source": Field(int, check=in_range(1, 10000),
                                 doc="open connections one terminal address may hold"),
        "conn_per_loopback": Field(int, check=in_range(0, 100000),
                                   doc="the same for loopback (operators); 0: no cap"),
        "socket_timeout_s": Field(float, check=in_range(0.5, 3600),
                                  doc="idle or stalled client connections are closed after"),
    }),
}


@dataclass
class Settings:
    ofp_port: int = 6653
    ofp_host: str = "127.0.0.1"         # OpenFlow listens here (switches on this host)
    ofp_tls_cert: str | None = None
    ofp_tls_key: str | None = None
    ofp_tls_ca: str | None = None
    rest_port: int = 8080
    rest_host: str = "0.0.0.0"
    db_path: str = "var/crs.db"
    log_level: str = "INFO"
    config_file: str | None = None
    topology_file: str | None = None
    admission_mode: str = "open"
    eapol_pps: int = 1000
    eapol_port_pps: int = 20
    restore_grace_s: float = 30.0
    idle_timeout_s: int = 300
    audit_log: str = "var/audit.jsonl"
    demo: bool = False                  # the shipped (public) demo secrets are accepted
    credentials_file: str = "config/credentials.yaml"
    authorization_file: str = "config/authorization.yaml"
    session_s: int = 3600
    preauth_arp_to_service: bool = True
    crs_enabled: bool = False
    crs_policy_file: str = "config/crs_policy.yaml"
    throttle_enabled: bool = False
    throttle_working_set: int = 5
    throttle_new_dest_per_s: float = 1.0
    rest_conn_per_source: int = 32
    rest_conn_per_loopback: int = 256
    rest_socket_timeout_s: float = 10.0
    token_file: str | None = None         # operator token; None: operator.token by db_path
    extra: dict[str, Any] = field(default_factory=dict)


def load_settings(config_file: str | None, **overrides: Any) -> Settings:
    """Settings from a controller config file (optional) and command-line overrides."""
    s = Settings(config_file=config_file)
    if config_file:
        v = Validator(str(config_file))
        doc = v.mapping(load_yaml(config_file), SCHEMA)
        v.raise_if_any()
        base = Path(config_file).parent

        def rel(p: str) -> str:
            return str(p if Path(p).is_absolute() else base / p)
        adm, crs, thr = doc["admission"], doc["crs"], doc["throttle"]
        s.admission_mode = adm["mode"]
        s.eapol_pps = adm["eapol_pps"]
        s.eapol_port_pps = adm["eapol_port_pps"]
        s.restore_grace_s = adm["restore_grace_s"]
        s.credentials_file = rel(adm["credentials"])
        s.authorization_file = rel(adm["authorization"])
        s.session_s = adm["session_s"]
        s.preauth_arp_to_service = adm["preauth_arp_to_service"]
        s.crs_enabled = crs["enabled"]
        s.crs_policy_file = rel(crs["policy"])
        s.throttle_enabled = thr["enabled"]
        s.throttle_working_set = thr["working_set"]
        s.throttle_new_dest_per_s = thr["new_dest_per_s"]
        s.idle_timeout_s = doc["forwarding"]["idle_timeout_s"]
        s.audit_log = rel(doc["audit_log"])
        s.demo = doc["demo"]
        for key, value in doc["rest"].items():
            if value is not None:
                setattr(s, f"rest_{key}", value)
        if doc["topology"]:
            s.topology_file = rel(doc["topology"])
        if s.crs_enabled and s.admission_mode != "authenticate":
            raise ConfigError([(str(config_file), "crs.enabled",
                                "the reacting system needs admission.mode: authenticate "
                                "(reports are signed with keys from X.1124 sessions)")])
    for key, value in overrides.items():
        if value is not None:
            setattr(s, key, value)
    return s


# The launcher stores the validated settings here before Ryu loads the app (same process).
CURRENT: Settings | None = None
