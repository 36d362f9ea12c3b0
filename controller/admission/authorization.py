"""Which subscriber groups may use which services of which application servers.

One file (config/authorization.yaml) answers both questions the system asks: the EAC's
"is this SS entitled to this service" (X.1124 §8.4) and the admission table's "which
(server, proto, port) may this terminal reach".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from controller.config import Field, Validator, in_range, is_name, load_yaml, one_of

SERVICE = {"proto": Field(str, required=True, check=one_of("tcp", "udp")),
           "port": Field(int, required=True, check=in_range(1, 65535))}
SERVER = {"services": Field(dict, required=True, items=Field(dict, items=SERVICE))}
SCHEMA = {
    "servers": Field(dict, required=True, items=Field(dict, items=SERVER)),
    "groups": Field(dict, required=True, items=Field(list, items=Field(str))),
}


@dataclass(frozen=True)
class Allowed:
    server: str
    service: str
    proto: str
    port: int


@dataclass
class Authorization:
    """Parsed authorization.yaml: servers' services and each group's entitlements."""

    services: dict[tuple[str, str], Allowed] = field(default_factory=dict)
    groups: dict[str, frozenset[tuple[str, str]]] = field(default_factory=dict)

    def allowed(self, group: str) -> list[Allowed]:
        """(server, service, proto, port) a group may reach; unknown group: nothing."""
        return sorted((self.services[k] for k in self.groups.get(group, ())),
                      key=lambda a: (a.server, a.port, a.proto))

    def entitled(self, group: str, server: str, service: str) -> bool:
        return (server, service) in self.groups.get(group, frozenset())


def load_authorization(path: str | Path) -> Authorization:
    """Load and validate; entries are "server/service" or "*"; problems as FILE: KEY: PROBLEM."""
    v = Validator(str(path))
    doc = v.mapping(load_yaml(path), SCHEMA)
    auth = Authorization()
    for server, spec in (doc["servers"] or {}).items():
        if is_name(str(server)):
            v.problem(f"servers.{server}", is_name(str(server)))
        for svc, s in ((spec or {}).get("services") or {}).items():
            if s and s.get("proto") and s.get("port"):
                auth.services[(str(server), str(svc))] = Allowed(str(server), str(svc),
                                                                 s["proto"], s["port"])
    for group, entries in (doc["groups"] or {}).items():
        if is_name(str(group)):
            v.problem(f"groups.{group}", is_name(str(group)))
        allowed: set[tuple[str, str]] = set()
        for i, entry in enumerate(entries or []):
            if entry == "*":
                allowed |= set(auth.services)
                continue
            server, _, svc = str(entry).partition("/")
            if (server, svc) not in auth.services:
                v.problem(f"groups.{group}[{i}]",
                          f"{entry!r} is not a server/service declared under servers")
                continue
            allowed.add((server, svc))
        auth.groups[str(group)] = frozenset(allowed)
    v.raise_if_any()
    return auth
