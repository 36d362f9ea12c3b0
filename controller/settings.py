"""Controller settings: command-line options plus the controller configuration file.

`validate` is the one check of a controller's settings and of the files they name: `crs
controller` runs it before Ryu starts (a bad file is an error message and exit status 2,
never a half-started controller), `crs check` runs it on controller configuration files,
and the core can take what it loaded. Every configurable default is written once, in
`SCHEMA`; the `Settings` class takes its defaults from there (`KEYS` maps one to the other).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.config import (
    ConfigError,
    Field,
    Validator,
    in_range,
    is_ipv4,
    is_mac,
    load_yaml,
    one_of,
)

SCHEMA = {
    "admission": Field(dict, default={}, items={
        "mode": Field(str, default="open", check=one_of("open", "authenticate"),
                      doc="open: allow all (no authentication); authenticate: X.1124 802.1X"),
        "eapol_pps": Field(int, default=1000, check=in_range(1, 100000),
                           doc="EAPOL punt rate per switch (ports not yet seen)"),
        "eapol_port_pps": Field(int, default=20, check=in_range(1, 10000),
                                doc="EAPOL punt rate per edge port"),
        "eapol_transport": Field(str, default="packet_in",
                                 check=one_of("packet_in", "local", "port"),
                                 doc="packet_in: EAPOL as OpenFlow packet-ins (any switch); "
                                     "local: through each switch's LOCAL port, read with a "
                                     "raw socket on the interface named like the switch "
                                     "(Open vSwitch on the controller host, docs/"
                                     "authentication.md); port: read on each edge port's "
                                     "own interface where it is on this host (a software "
                                     "switch), else as local"),
        "restore_grace_s": Field(float, default=30.0, check=in_range(1, 3600),
                                 doc="after a restart, restored sessions re-authenticate "
                                     "within this time or are revoked"),
        "credentials": Field(str, default="credentials.yaml",
                             doc="X.1124 subscribers and service providers"),
        "authorization": Field(str, default="authorization.yaml",
                               doc="which groups may reach which servers and services"),
        "session_s": Field(int, default=3600, check=in_range(10, 86400 * 7)),
        "sp_grant_s": Field(float, default=5.0, check=in_range(0.5, 3600),
                            doc="an SP re-asks the EAC for a terminal's key this often: "
                                "a revoked session reaches every SP within it"),
        "preauth_arp_to_service": Field(bool, default=True),
        "backend": Field(str, default="internal", check=one_of("internal", "radius"),
                         doc="internal: the controller's EAP server (EAP-PSK); radius: EAP "
                             "methods run at RADIUS servers (RFC 3579), the controller "
                             "relays (docs/authentication.md)"),
        "radius": Field(dict, default={}, items={
            "servers": Field(list, default=None, items={
                "host": Field(str, required=True, check=is_ipv4, doc="IPv4 address"),
                "port": Field(int, default=1812, check=in_range(1, 65535)),
                "secret_file": Field(str, required=True,
                                     doc="the shared secret, mode 0600 (relative to this "
                                         "file's folder)"),
            }, doc="tried in order: the next one when a server does not answer"),
            "timeout_s": Field(float, default=1.0, check=in_range(0.05, 60),
                               doc="resend a request after this long without an answer"),
            "retries": Field(int, default=2, check=in_range(0, 10),
                             doc="resends to one server before the next one is tried"),
            "dead_s": Field(float, default=30.0, check=in_range(0, 3600),
                            doc="a server that did not answer is tried last for this long"),
            "nas_identifier": Field(str, default="crs-controller"),
            "default_group": Field(str, default="radius",
                                   doc="group of an identity the credentials file does not "
                                       "list, unless the Access-Accept's Filter-Id names a "
                                       "group of the authorization file"),
        }),
    }),
    "crs": Field(dict, default={}, items={
        "enabled": Field(bool, default=False,
                         doc="X.1125 reacting system (admission mode authenticate, or open "
                             "with keys and service below)"),
        "keys": Field(str, doc="pre-provisioned report keys (crs keys issue): the reacting "
                               "system with admission open and no topology file"),
        "service": Field(dict, default={}, items={
            "ip": Field(str, check=is_ipv4, doc="where agents reach the SCS (crs service "
                                                "attach puts it on a switch)"),
            "mac": Field(str, default="02:00:00:00:ff:fe", check=is_mac),
        }, doc="without a topology file: the controller's service address"),
        "policy": Field(str, default="crs_policy.yaml"),
        "enforce": Field(list, default=None, items=Field(str),
                         doc="partial deployment: the cells (or switches) whose edges enforce "
                             "decisions; the rest are evaluated but not restricted (default: "
                             "every one)"),
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
    "terminals_per_cell": Field(int, check=in_range(1, 250),
                                doc="terminals in every cell, instead of the topology file's "
                                    "(the network's `crs net up --terminals-per-cell`): the "
                                    "controller must know the terminals the network has"),
    "audit_log": Field(str, default="../var/audit.jsonl"),
    "demo": Field(bool, default=False,
                  doc="accept the demo secrets shipped in config/credentials.yaml (public)"),
    # several controllers on one PostgreSQL store (docs/scale-out.md)
    "ha": Field(dict, default={}, items={
        "enabled": Field(bool, default=False,
                         doc="lead by a lease in the PostgreSQL store; OpenFlow roles"),
        "lease_s": Field(float, default=1.0, check=in_range(0.2, 60),
                         doc="the leader renews every lease_s / 3; a standby takes over "
                             "after lease_s without renewal"),
        "node_id": Field(str, default="", doc="this controller's name in the lease "
                                              "(default: host name and OpenFlow port)"),
        "service_port": Field(int, default=0, check=in_range(0, 65535),
                              doc="the port terminals and service providers use: only the "
                                  "leader listens on it (0: the REST port, one controller)"),
        "advertise_url": Field(str, default="", doc="where operators reach this controller's "
                                                    "REST API (a standby redirects writes to "
                                                    "the leader's; default http://127.0.0.1:"
                                                    "<rest port>)"),
        "refresh_s": Field(float, default=1.0, check=in_range(0.1, 60),
                           doc="a standby re-reads the store this often (what its REST API "
                               "shows)"),
    }),
    # roaming between CRS domains (X.1125 13.3/13.4, docs/crs.md "Roaming")
    "domain": Field(str, default="", doc="this controller's domain in the topology's "
                                         "`domains:`: it owns those switches only"),
    "roaming": Field(dict, default={}, items={
        "peers": Field(list, default=[], items={
            "name": Field(str, required=True, doc="the peer's domain (the name it signs as)"),
            "url": Field(str, required=True, doc="the peer controller's HTTP services"),
            "key_file": Field(str, required=True, doc="the key this pair of domains shares: "
                                                      "hex, at least 32 bytes, mode 0600"),
        }),
        "answer_within_s": Field(float, default=3.0, check=in_range(0.1, 600),
                                 doc="a peer silent this long: counted, logged, asked again; "
                                     "the terminal stays UNKNOWN (fail closed)"),
        "max_gap_s": Field(float, default=10.0, check=in_range(0.1, 86400),
                           doc="a terminal offline longer than this (it may have been in a "
                               "network without CRS) keeps no good level: it reports again"),
    }),
    # REST server guards (item 7 of issue 8)
    "rest": Field(dict, default={}, items={
        "conn_per_source": Field(int, default=32, check=in_range(1, 10000),
                                 doc="open connections one terminal address may hold"),
        "conn_per_loopback": Field(int, default=256, check=in_range(0, 100000),
                                   doc="the same for loopback (operators); 0: no cap"),
        "socket_timeout_s": Field(float, default=10.0, check=in_range(0.5, 3600),
                                  doc="idle or stalled client connections are closed after"),
    }),
}

# Settings attribute <- its key in a controller configuration file.
KEYS: dict[str, str] = {
    "admission_mode": "admission.mode",
    "eapol_pps": "admission.eapol_pps",
    "eapol_port_pps": "admission.eapol_port_pps",
    "eapol_transport": "admission.eapol_transport",
    "restore_grace_s": "admission.restore_grace_s",
    "credentials_file": "admission.credentials",
    "authorization_file": "admission.authorization",
    "session_s": "admission.session_s",
    "sp_grant_s": "admission.sp_grant_s",
    "preauth_arp_to_service": "admission.preauth_arp_to_service",
    "admission_backend": "admission.backend",
    "radius_servers": "admission.radius.servers",
    "radius_timeout_s": "admission.radius.timeout_s",
    "radius_retries": "admission.radius.retries",
    "radius_dead_s": "admission.radius.dead_s",
    "radius_nas_identifier": "admission.radius.nas_identifier",
    "radius_default_group": "admission.radius.default_group",
    "crs_enabled": "crs.enabled",
    "crs_policy_file": "crs.policy",
    "crs_enforce": "crs.enforce",
    "crs_keys_file": "crs.keys",
    "crs_service_ip": "crs.service.ip",
    "crs_service_mac": "crs.service.mac",
    "throttle_enabled": "throttle.enabled",
    "throttle_working_set": "throttle.working_set",
    "throttle_new_dest_per_s": "throttle.new_dest_per_s",
    "idle_timeout_s": "forwarding.idle_timeout_s",
    "topology_file": "topology",
    "terminals_per_cell": "terminals_per_cell",
    "audit_log": "audit_log",
    "demo": "demo",
    "rest_conn_per_source": "rest.conn_per_source",
    "rest_conn_per_loopback": "rest.conn_per_loopback",
    "rest_socket_timeout_s": "rest.socket_timeout_s",
    "ha_enabled": "ha.enabled",
    "ha_lease_s": "ha.lease_s",
    "ha_node_id": "ha.node_id",
    "ha_service_port": "ha.service_port",
    "ha_advertise_url": "ha.advertise_url",
    "ha_refresh_s": "ha.refresh_s",
    "domain": "domain",
    "roaming_peers": "roaming.peers",
    "roaming_answer_within_s": "roaming.answer_within_s",
    "roaming_max_gap_s": "roaming.max_gap_s",
}
# File names: in a configuration file relative to its folder; without one, relative to the
# shipped configuration folder (so the defaults name the same files either way).
PATHS = frozenset({"credentials_file", "authorization_file", "crs_policy_file",
                   "topology_file", "audit_log", "crs_keys_file"})
CONFIG_DIR = "config"


def schema_field(key: str) -> Field:
    """The schema entry of a dotted configuration key (e.g. "admission.session_s")."""
    *sections, name = key.split(".")
    schema = SCHEMA
    for section in sections:
        schema = schema[section].items
    return schema[name]


def _default(attr: str) -> Any:
    value = schema_field(KEYS[attr]).default
    if attr in PATHS and value is not None:
        return os.path.normpath(os.path.join(CONFIG_DIR, value))
    return value


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
    # from the configuration file (defaults: SCHEMA)
    topology_file: str | None = _default("topology_file")
    terminals_per_cell: int | None = _default("terminals_per_cell")
    admission_mode: str = _default("admission_mode")
    eapol_pps: int = _default("eapol_pps")
    eapol_port_pps: int = _default("eapol_port_pps")
    eapol_transport: str = _default("eapol_transport")
    restore_grace_s: float = _default("restore_grace_s")
    idle_timeout_s: int = _default("idle_timeout_s")
    audit_log: str = _default("audit_log")
    demo: bool = _default("demo")       # the shipped (public) demo secrets are accepted
    credentials_file: str = _default("credentials_file")
    authorization_file: str = _default("authorization_file")
    session_s: int = _default("session_s")
    sp_grant_s: float = _default("sp_grant_s")
    preauth_arp_to_service: bool = _default("preauth_arp_to_service")
    admission_backend: str = _default("admission_backend")
    radius_servers: list[dict] | None = _default("radius_servers")
    radius_timeout_s: float = _default("radius_timeout_s")
    radius_retries: int = _default("radius_retries")
    radius_dead_s: float = _default("radius_dead_s")
    radius_nas_identifier: str = _default("radius_nas_identifier")
    radius_default_group: str = _default("radius_default_group")
    crs_enabled: bool = _default("crs_enabled")
    crs_enforce: list[str] | None = _default("crs_enforce")
    crs_policy_file: str = _default("crs_policy_file")
    crs_keys_file: str | None = _default("crs_keys_file")
    crs_service_ip: str | None = _default("crs_service_ip")
    crs_service_mac: str = _default("crs_service_mac")
    throttle_enabled: bool = _default("throttle_enabled")
    throttle_working_set: int = _default("throttle_working_set")
    throttle_new_dest_per_s: float = _default("throttle_new_dest_per_s")
    rest_conn_per_source: int = _default("rest_conn_per_source")
    rest_conn_per_loopback: int = _default("rest_conn_per_loopback")
    rest_socket_timeout_s: float = _default("rest_socket_timeout_s")
    ha_enabled: bool = _default("ha_enabled")
    ha_lease_s: float = _default("ha_lease_s")
    ha_node_id: str = _default("ha_node_id")
    ha_service_port: int = _default("ha_service_port")
    ha_advertise_url: str = _default("ha_advertise_url")
    ha_refresh_s: float = _default("ha_refresh_s")
    domain: str = _default("domain")
    roaming_peers: list[dict[str, Any]] = field(default_factory=list)
    roaming_answer_within_s: float = _default("roaming_answer_within_s")
    roaming_max_gap_s: float = _default("roaming_max_gap_s")

    @property
    def service_port(self) -> int:
        """The port terminals reach the controller's HTTP services on (CRSAP, the EAC)."""
        return self.ha_service_port or self.rest_port

    @property
    def config_dir(self) -> Path:
        """Where names in the configuration file are relative to (key files)."""
        return Path(self.config_file).parent if self.config_file else Path(CONFIG_DIR)
    token_file: str | None = None         # operator token; None: operator.token by db_path
    extra: dict[str, Any] = field(default_factory=dict)


def load_settings(config_file: str | None, **overrides: Any) -> Settings:
    """Settings from a controller config file (optional) and command-line overrides. The
    file is checked against SCHEMA here; `validate` checks the result as a whole."""
    s = Settings(config_file=config_file)
    if config_file:
        v = Validator(str(config_file))
        doc = v.mapping(load_yaml(config_file), SCHEMA)
        v.raise_if_any()
        base = Path(config_file).parent
        for attr, key in KEYS.items():
            value = doc
            for part in key.split("."):
                value = value[part]
            if value is None or (attr == "topology_file" and not value):
                continue
            if attr in PATHS and not Path(value).is_absolute():
                value = str(base / value)
            if attr == "radius_servers":    # secret files relative to the config folder
                value = [{**sv, "secret_file": str(base / sv["secret_file"])}
                         for sv in value if isinstance(sv, dict) and sv.get("secret_file")]
            setattr(s, attr, value)
    for key, value in overrides.items():
        if value is not None:
            setattr(s, key, value)
    return s


@dataclass(frozen=True)
class Loaded:
    """The files a controller's settings name, as `validate` loaded them (None: not used)."""

    topology: Any = None
    credentials: Any = None
    authorization: Any = None
    policy: Any = None
    keys: Any = None            # pre-provisioned report keys (crs.keys)
    radius: Any = None          # [RadiusServer] with their secrets (backend: radius)
    peers: Any = None           # roaming.peers with their keys (crs/roaming.py)


def validate(settings: Settings) -> Loaded:
    """Every check of a controller's settings before it starts: each configurable value
    against its schema entry (command-line overrides too), what needs what (the reacting
    system needs authentication, a topology and an update server; the throttle needs a
    topology), and every file they name loaded and checked (credentials 0600, shipped demo
    secrets only with `demo: true`). Raises ConfigError listing every problem found, as
    FILE: KEY: PROBLEM; returns what it loaded."""
    from controller import topology as topology_mod
    where = settings.config_file or "<command line>"
    problems: list[tuple[str, str, str]] = []
    v = Validator(where)
    for attr, key in KEYS.items():
        value = getattr(settings, attr)
        if value is not None:
            v.value(value, schema_field(key), key)
    problems += v.problems

    def load(loader: Any, *args: Any, **kw: Any) -> Any:
        try:
            return loader(*args, **kw)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return None
    topo = load(topology_mod.load, settings.topology_file,
                terminals_per_cell=settings.terminals_per_cell) if settings.topology_file else None
    out: dict[str, Any] = {"topology": topo}
    if settings.admission_mode == "authenticate":
        from controller.admission.authorization import load_authorization
        from controller.admission.credentials import load_credentials
        out["credentials"] = load(load_credentials, settings.credentials_file,
                                  demo=settings.demo)      # 0600, demo: true
        out["authorization"] = load(load_authorization, settings.authorization_file)
    if settings.admission_backend == "radius":
        out["radius"] = _radius_servers(settings, where, problems)
    if settings.crs_enabled:
        from controller.crs import provisioned
        from controller.crs.policy import load_policy
        standalone = settings.admission_mode == "open"
        if standalone and not settings.crs_keys_file:
            problems.append((where, "crs.enabled",
                             "the reacting system needs admission.mode: authenticate "
                             "(reports signed with keys from X.1124 sessions), or open with "
                             "crs.keys (pre-provisioned keys: crs keys issue)"))
        elif not standalone and settings.crs_keys_file:
            problems.append((where, "crs.keys", "pre-provisioned keys are for admission.mode:"
                             " open; with authentication the keys come from X.1124 sessions"))
        out["policy"] = load(load_policy, settings.crs_policy_file)
        if standalone and settings.crs_keys_file:
            out["keys"] = load(provisioned.load, settings.crs_keys_file, missing_ok=True)
            if settings.topology_file:
                problems.append((where, "topology", "pre-provisioned keys (crs.keys) are for "
                                 "networks without a topology file: leave one of them out"))
            if not settings.crs_service_ip:
                problems.append((where, "crs.service.ip", "without a topology file the "
                                 "reacting system needs the address agents report to"))
            if settings.crs_enforce is not None:
                problems.append((where, "crs.enforce", "needs a topology file (cells)"))
        elif not settings.topology_file:
            problems.append((where, "topology", "the reacting system needs a topology file"))
        elif topo is not None and not any(h.role == "update" for h in topo.hosts):
            problems.append((topo.file, "hosts",
                             "the reacting system needs a host with role: update"))
        if settings.crs_enforce is not None and not settings.crs_enforce:
            problems.append((where, "crs.enforce", "an empty list enforces nothing anywhere: "
                             "name at least one cell or switch (or leave the key out)"))
        if topo is not None and settings.crs_enforce is not None:
            known = {c.name for c in topo.cells} | {sw.name for sw in topo.switches}
            for name in settings.crs_enforce:
                if name not in known:
                    problems.append((where, "crs.enforce", f"{name!r} is neither a cell nor a "
                                     f"switch of {topo.file}"))
    if settings.eapol_transport in ("local", "port") and not (
            settings.topology_file and settings.admission_mode == "authenticate"):
        problems.append((where, "admission.eapol_transport",
                         f"{settings.eapol_transport} needs admission.mode: authenticate and "
                         "a topology file (its switch names are the LOCAL ports' interfaces)"))
    if settings.ha_enabled and "://" not in (settings.db_path or ""):
        problems.append((where, "ha.enabled", "several controllers need a shared store: "
                         "--store postgresql://..."))
    if settings.ha_service_port and not settings.ha_enabled:
        problems.append((where, "ha.service_port", "a service port that moves with "
                         "leadership needs ha.enabled: true"))
    elif settings.ha_service_port and settings.ha_service_port == settings.rest_port:
        problems.append((where, "ha.service_port", f"{settings.ha_service_port} is also the "
                         "REST port: only the leader may listen on the service port"))
    if settings.domain or settings.roaming_peers:
        out["peers"] = _check_roaming(settings, topo, where, problems, load)
    if settings.throttle_enabled and not settings.topology_file:
        problems.append((where, "topology",
                         "the throttle needs a topology file (which ports are terminals)"))
    if problems:
        raise ConfigError(problems)
    return Loaded(**out)


def _radius_servers(settings: Settings, where: str,
                    problems: list[tuple[str, str, str]]) -> list:
    """The RADIUS servers with their secrets, read from files only their owner may read."""
    from controller.admission.radius import RadiusServer
    key = "admission.radius.servers"
    if settings.admission_mode != "authenticate":
        problems.append((where, "admission.backend", "radius needs admission.mode: "
                         "authenticate"))
    if not settings.radius_servers:
        problems.append((where, key, "backend radius needs at least one server"))
        return []
    out = []
    for i, sv in enumerate(settings.radius_servers):
        path = sv.get("secret_file", "")
        try:
            mode = os.stat(path).st_mode
            secret = Path(path).read_bytes().strip()
        except OSError as exc:
            problems.append((where, f"{key}[{i}].secret_file",
                             f"cannot read {path}: {exc.strerror}"))
            continue
        if mode & 0o077:
            problems.append((where, f"{key}[{i}].secret_file", f"{path} is mode "
                             f"{mode & 0o777:o}: others may read the secret; chmod 600"))
        elif not secret:
            problems.append((where, f"{key}[{i}].secret_file", f"{path} is empty"))
        else:
            out.append(RadiusServer(sv["host"], int(sv.get("port") or 1812), secret))
    return out


def _check_roaming(settings: Settings, topo: Any, where: str,
                   problems: list[tuple[str, str, str]], load: Any) -> Any:
    """`domain` names a CRS domain of the topology; peers name the other ones and need the
    reacting system; their key files load (0600, hex, long enough)."""
    domains = {d.name: d for d in topo.domains} if topo is not None else {}
    if settings.domain and settings.domain not in domains:
        problems.append((where, "domain", f"{settings.domain!r} is not a domain of the "
                         f"topology (domains: {sorted(domains) or 'none'})"))
    elif settings.domain and not domains[settings.domain].crs:
        problems.append((where, "domain", f"{settings.domain!r} is a domain without CRS "
                         "(crs: false): no controller runs it"))
    if not settings.roaming_peers:
        return []
    if not settings.domain or not settings.crs_enabled:
        problems.append((where, "roaming.peers", "roaming needs `domain:` and crs.enabled"))
    for i, p in enumerate(settings.roaming_peers):
        d = domains.get(p["name"])
        if d is None or not d.crs or p["name"] == settings.domain:
            problems.append((where, f"roaming.peers[{i}].name", f"{p['name']!r} is not "
                             "another CRS domain of the topology"))
        if not p["url"].startswith("http://"):
            problems.append((where, f"roaming.peers[{i}].url", "must be an http:// URL"))
    from controller.crs.roaming import load_peers
    return load(load_peers, where, settings.roaming_peers, settings.config_dir)


# The launcher stores the validated settings here before Ryu loads the app (same process).
CURRENT: Settings | None = None
LOADED: Loaded | None = None        # what `validate` loaded for CURRENT
