"""Topology files (topologies/*.yaml): schema, validation and the resolved network model.

A topology is data: switches with datapath ids, cells (an access switch per base-station site
with its terminals), servers of the service network, links with bandwidth and delay, and the
address the controller's services use. The same model serves the Mininet builder (what to
create), the controller (cells, servers, which ports are inter-switch) and experiments.
Port numbers are assigned deterministically (links in file order, then hosts), so the
controller knows every port without discovery.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.config import (
    Field,
    Validator,
    in_range,
    is_ipv4,
    is_ipv4_network,
    is_mac,
    is_name,
    load_yaml,
    one_of,
)

LINK = {
    "bw_mbps": Field(float, check=in_range(0.1, 100000), doc="link rate limit (tc), Mbit/s"),
    "delay_ms": Field(float, check=in_range(0, 10000), doc="one-way delay (tc netem), ms"),
}
SERVICE = {
    "name": Field(str, required=True, check=is_name),
    "proto": Field(str, default="tcp", check=one_of("tcp", "udp")),
    "port": Field(int, required=True, check=in_range(1, 65535)),
}
SCHEMA = {
    "name": Field(str, required=True, check=is_name, doc="topology name"),
    "description": Field(str, default=""),
    "network": Field(str, required=True, check=is_ipv4_network,
                     doc="the one L2 domain every host address lies in"),
    "terminals_per_cell": Field(int, default=8, check=in_range(1, 250)),
    "link_defaults": Field(dict, default={}, items=LINK),
    "controller_service": Field(dict, required=True, items={
        "ip": Field(str, required=True, check=is_ipv4),
        "mac": Field(str, default="02:00:00:00:ff:fe", check=is_mac),
        "switch": Field(str, required=True),
    }, doc="where the controller's services (SCS, EAC inquiry, REST) attach"),
    "switches": Field(list, required=True, items={
        "name": Field(str, required=True, check=is_name),
        "dpid": Field(int, required=True, check=in_range(1, 2**48 - 1)),
        "role": Field(str, default="aggregation",
                      check=one_of("access", "aggregation", "gateway", "service")),
    }),
    "cells": Field(list, default=[], items={
        "name": Field(str, required=True, check=is_name),
        "switch": Field(str, required=True),
        "subnet": Field(str, required=True, check=is_ipv4_network),
        "terminals": Field(int, check=in_range(1, 250), doc="default: terminals_per_cell"),
        "prefix": Field(str, doc="terminal name prefix, default c<N>t"),
        "link": Field(dict, default={}, items=LINK),
    }),
    "hosts": Field(list, default=[], items={
        "name": Field(str, required=True, check=is_name),
        "ip": Field(str, required=True, check=is_ipv4),
        "mac": Field(str, check=is_mac),
        "switch": Field(str, required=True),
        "role": Field(str, default="server", check=one_of("server", "update", "terminal")),
        "services": Field(list, default=[], items=SERVICE),
        "link": Field(dict, default={}, items=LINK),
    }),
    "links": Field(list, default=[], items={
        "a": Field(str, required=True),
        "b": Field(str, required=True),
        **LINK,
    }),
    "domains": Field(list, default=[], items={
        "name": Field(str, required=True, check=is_name),
        "switches": Field(list, required=True, items=Field(str)),
        "crs": Field(bool, default=True, doc="false: a network without CRS (no controller: "
                                             "its switches run standalone)"),
    }, doc="roaming (X.1125 13.3/13.4): which controller owns which switches"),
}


@dataclass(frozen=True)
class Service:
    name: str
    proto: str
    port: int


@dataclass(frozen=True)
class SwitchSpec:
    name: str
    dpid: int
    role: str


@dataclass(frozen=True)
class HostSpec:
    name: str
    ip: str
    mac: str
    switch: str
    port: int                 # the switch port the host is on
    role: str                 # terminal, server, update
    cell: str | None = None
    services: tuple[Service, ...] = ()
    bw_mbps: float | None = None
    delay_ms: float | None = None


@dataclass(frozen=True)
class LinkSpec:
    a: str
    a_port: int
    b: str
    b_port: int
    bw_mbps: float | None = None
    delay_ms: float | None = None


@dataclass(frozen=True)
class CellSpec:
    name: str
    switch: str
    subnet: str
    terminals: tuple[str, ...]


@dataclass(frozen=True)
class DomainSpec:
    name: str
    switches: tuple[str, ...]
    crs: bool = True


@dataclass
class Topology:
    name: str
    file: str
    network: ipaddress.IPv4Network
    service_ip: str
    service_mac: str
    service_switch: str
    service_port: int
    switches: list[SwitchSpec]
    hosts: list[HostSpec]
    links: list[LinkSpec]
    cells: list[CellSpec]
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    domains: list[DomainSpec] = field(default_factory=list)

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    def switch(self, name: str) -> SwitchSpec:
        return next(s for s in self.switches if s.name == name)

    def host(self, name: str) -> HostSpec:
        return next(h for h in self.hosts if h.name == name)

    def terminals(self) -> list[HostSpec]:
        return [h for h in self.hosts if h.role == "terminal"]

    def servers(self) -> list[HostSpec]:
        return [h for h in self.hosts if h.role in ("server", "update")]

    def infra_ports(self) -> dict[int, set[int]]:
        """Inter-switch ports per dpid: traffic on them was admitted at its own edge. A link
        from a network without CRS (a domain with `crs: false`) is not one: nothing there
        was admitted, so its far end is an edge port like a terminal's."""
        out: dict[int, set[int]] = {s.dpid: set() for s in self.switches}
        bare = {n for d in self.domains if not d.crs for n in d.switches}
        for link in self.links:
            if link.b not in bare:
                out[self.switch(link.a).dpid].add(link.a_port)
            if link.a not in bare:
                out[self.switch(link.b).dpid].add(link.b_port)
        return out

    def domain_dpids(self, name: str) -> set[int]:
        """The datapath ids of a domain's switches (the ones its controller owns)."""
        d = next(d for d in self.domains if d.name == name)
        return {self.switch(n).dpid for n in d.switches}

    def foreign_dpids(self, name: str | None) -> set[int]:
        """Switches of the other CRS domains (none without domains): forwarding reaches
        hosts placed there through the boundary, not through their (absent) connection."""
        if not name:
            return set()
        return {self.switch(n).dpid for d in self.domains if d.crs and d.name != name
                for n in d.switches}


def ports_toward(topo: "Topology") -> dict[tuple[int, int], int]:
    """For every pair of switches (x, a): the port of x on the tree path toward a."""
    dpid = {s.name: s.dpid for s in topo.switches}
    adj: dict[int, list[tuple[int, int]]] = {d: [] for d in dpid.values()}
    for lk in topo.links:
        adj[dpid[lk.a]].append((dpid[lk.b], lk.a_port))
        adj[dpid[lk.b]].append((dpid[lk.a], lk.b_port))
    out: dict[tuple[int, int], int] = {}
    for a in adj:                       # walk the tree from a: each x learns its port to a
        seen, stack = {a}, [a]
        while stack:
            y = stack.pop()
            for x, _ in adj[y]:
                if x not in seen:
                    seen.add(x)
                    out[(x, a)] = next(p for n, p in adj[x] if n == y)
                    stack.append(x)
    return out


def toward_services(topo: "Topology") -> dict[int, frozenset[int]]:
    """For every switch E: the switches on the tree paths from E to the servers' switches
    and the controller service's (E among them). A switch x other than the ends lies on the
    path between E and T exactly when its port toward E is not its port toward T."""
    toward = ports_toward(topo)
    ends = {topo.switch(h.switch).dpid for h in topo.servers()}
    ends.add(topo.switch(topo.service_switch).dpid)
    dpids = [s.dpid for s in topo.switches]
    return {e: frozenset(x for x in dpids if x == e or x in ends or any(
        toward.get((x, e)) != toward.get((x, t)) for t in ends))
        for e in dpids}


def mac_for(ip: str) -> str:
    """Deterministic locally administered MAC from an IPv4 address (02:00:a.b.c.d)."""
    octets = ipaddress.IPv4Address(ip).packed
    return "02:00:" + ":".join(f"{b:02x}" for b in octets)


def load(path: str | Path, terminals_per_cell: int | None = None) -> Topology:
    """Load and validate a topology file; raise ConfigError naming file, key and problem."""
    path = Path(path)
    data = load_yaml(path)
    v = Validator(str(path))
    doc = v.mapping(data, SCHEMA)
    v.raise_if_any()
    topo = _resolve(doc, v, terminals_per_cell)
    v.raise_if_any()
    return topo


def _resolve(doc: dict[str, Any], v: Validator, tpc_override: int | None) -> Topology:
    net = ipaddress.IPv4Network(doc["network"])
    names: dict[str, str] = {}

    def claim(name: str, key: str) -> None:
        if name in names:
            v.problem(key, f"duplicate name {name!r} (already used at {names[name]})")
        else:
            names[name] = key

    switches = []
    dpids: dict[int, str] = {}
    for i, s in enumerate(doc["switches"]):
        claim(s["name"], f"switches[{i}].name")
        if s["dpid"] in dpids:
            v.problem(f"switches[{i}].dpid",
                      f"duplicate dpid {s['dpid']} (also {dpids[s['dpid']]})")
        dpids[s["dpid"]] = s["name"]
        switches.append(SwitchSpec(s["name"], s["dpid"], s["role"]))
    switch_names = {s.name for s in switches}
    if not switches:
        v.problem("switches", "at least one switch is needed")

    next_port: dict[str, int] = {s.name: 1 for s in switches}

    def port_of(sw: str) -> int:
        port = next_port[sw]
        next_port[sw] = port + 1
        return port

    defaults = doc["link_defaults"]

    def link_param(link: dict[str, Any], key: str) -> float | None:
        value = link.get(key)
        return value if value is not None else defaults.get(key)

    links = []
    seen_links: set[frozenset[str]] = set()
    for i, lk in enumerate(doc["links"]):
        bad = False
        for end in ("a", "b"):
            if lk[end] not in switch_names:
                v.problem(f"links[{i}].{end}", f"{lk[end]!r} is not a switch of this topology "
                          "(hosts attach with their own 'switch' key)")
                bad = True
        if bad:
            continue
        if lk["a"] == lk["b"]:
            v.problem(f"links[{i}]", "a link must join two different switches")
            continue
        pair = frozenset((lk["a"], lk["b"]))
        if pair in seen_links:
            v.problem(f"links[{i}]", f"duplicate link {lk['a']} - {lk['b']}")
            continue
        seen_links.add(pair)
        links.append(LinkSpec(lk["a"], port_of(lk["a"]), lk["b"], port_of(lk["b"]),
                              link_param(lk, "bw_mbps"), link_param(lk, "delay_ms")))
    _check_tree(switches, links, v)

    ips: dict[str, str] = {}

    def claim_ip(ip: str, key: str) -> None:
        if ipaddress.IPv4Address(ip) not in net:
            v.problem(key, f"{ip} is outside the topology's network {net}")
        elif ip in (str(net.network_address), str(net.broadcast_address)):
            v.problem(key, f"{ip} is the network or broadcast address of {net}")
        if ip in ips:
            v.problem(key, f"duplicate address {ip} (also {ips[ip]})")
        ips[ip] = key

    svc = doc["controller_service"]
    claim_ip(svc["ip"], "controller_service.ip")
    if svc["switch"] not in switch_names:
        v.problem("controller_service.switch",
                  f"{svc['switch']!r} is not a switch of this topology")
        return _empty(doc, net)
    service_port = port_of(svc["switch"])

    hosts: list[HostSpec] = []
    cells: list[CellSpec] = []
    tpc = tpc_override or doc["terminals_per_cell"]
    for ci, c in enumerate(doc["cells"]):
        key = f"cells[{ci}]"
        claim(c["name"], f"{key}.name")
        if c["switch"] not in switch_names:
            v.problem(f"{key}.switch", f"{c['switch']!r} is not a switch of this topology")
            continue
        subnet = ipaddress.IPv4Network(c["subnet"])
        if not subnet.subnet_of(net):
            v.problem(f"{key}.subnet", f"{subnet} is not inside the network {net}")
            continue
        count = tpc_override or c["terminals"] or tpc
        if count > subnet.num_addresses - 2:
            v.problem(f"{key}.terminals", f"{count} terminals do not fit in {subnet}")
            continue
        prefix = c["prefix"] or f"c{ci + 1}t"
        members = []
        for j in range(1, count + 1):
            name = f"{prefix}{j}"
            ip = str(subnet.network_address + j)
            claim(name, f"{key} (terminal {name})")
            claim_ip(ip, f"{key} (terminal {name})")
            hosts.append(HostSpec(name, ip, mac_for(ip), c["switch"], port_of(c["switch"]),
                                  "terminal", c["name"], (), link_param(c["link"], "bw_mbps"),
                                  link_param(c["link"], "delay_ms")))
            members.append(name)
        cells.append(CellSpec(c["name"], c["switch"], str(subnet), tuple(members)))

    macs: dict[str, str] = {}
    for hi, h in enumerate(doc["hosts"]):
        key = f"hosts[{hi}]"
        claim(h["name"], f"{key}.name")
        claim_ip(h["ip"], f"{key}.ip")
        if h["switch"] not in switch_names:
            v.problem(f"{key}.switch", f"{h['switch']!r} is not a switch of this topology")
            continue
        mac = (h["mac"] or mac_for(h["ip"])).lower()
        if mac in macs:
            v.problem(f"{key}.mac", f"duplicate MAC {mac} (also {macs[mac]})")
        macs[mac] = key
        services = tuple(Service(s["name"], s["proto"], s["port"]) for s in h["services"])
        hosts.append(HostSpec(h["name"], h["ip"], mac, h["switch"], port_of(h["switch"]),
                              h["role"], None, services, link_param(h["link"], "bw_mbps"),
                              link_param(h["link"], "delay_ms")))

    return Topology(doc["name"], v.file, net, svc["ip"], svc["mac"].lower(), svc["switch"],
                    service_port, switches, hosts, links, cells, doc["description"],
                    domains=_domains(doc["domains"], switch_names, v))


def _domains(docs: list[dict[str, Any]], switch_names: set[str],
             v: Validator) -> list[DomainSpec]:
    """Domains (roaming): when given, every switch belongs to exactly one."""
    out: list[DomainSpec] = []
    owner: dict[str, str] = {}
    for i, d in enumerate(docs):
        if d["name"] in {o.name for o in out}:
            v.problem(f"domains[{i}].name", f"duplicate domain {d['name']!r}")
        for n in d["switches"]:
            if n not in switch_names:
                v.problem(f"domains[{i}].switches", f"{n!r} is not a switch of this topology")
            elif n in owner:
                v.problem(f"domains[{i}].switches", f"{n!r} is already in domain {owner[n]!r}")
            owner[n] = d["name"]
        out.append(DomainSpec(d["name"], tuple(d["switches"]), d["crs"]))
    if out and switch_names - set(owner):
        v.problem("domains", f"switches in no domain: {sorted(switch_names - set(owner))}")
    return out


def _check_tree(switches: list[SwitchSpec], links: list[LinkSpec], v: Validator) -> None:
    """Shipped forwarding floods on every port, so the switch graph must be a tree."""
    parent = {s.name: s.name for s in switches}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for i, lk in enumerate(links):
        ra, rb = root(lk.a), root(lk.b)
        if ra == rb:
            v.problem(f"links[{i}]", f"{lk.a} - {lk.b} closes a loop; switches must form a tree")
        parent[ra] = rb
    roots = {root(s.name) for s in switches}
    if len(roots) > 1:
        v.problem("links", f"switches are not all connected ({len(roots)} separate parts)")


def _empty(doc: dict[str, Any], net: ipaddress.IPv4Network) -> Topology:
    return Topology(doc["name"], "", net, "", "", "", 0, [], [], [], [])
