"""NAC/ASC enforcement: a Decision + where the terminal is -> table-1 (SECURITY) messages.

Every flow is built with `SECURITY.flow(...)` and carries the terminal's number as cookie
value, so `SECURITY.delete_sub(number)` removes all of them; each rebuild starts with that
delete, so the returned list *replaces* whatever held before. Per-terminal flows match the
edge `in_port` only (never the MAC or IP the terminal claims): a quarantined terminal that
changes its MAC or IP stays caught. Bands (tables.Priority), highest first:

- SEC_ALLOW     the controller's HTTP port on its service address and the update server
                (IP, and ARP for those two addresses only): always reachable. Nothing else
                leaves a restricted port unless the decision allows it: ARP to others only
                when the terminal may still reach others (scope group: its peers; redirected
                web: any, so the web request can be made and redirected).
- SEC_REDIRECT  web redirection (see below).
- SEC_DENY+200  restricted applications (ASC), e.g. tcp/25: dropped.
- SEC_DENY+100  scope "group": destinations in the group -> forwarding (metered if limited).
- SEC_DENY+90   redirected web: ARP to anyone -> forwarding (metered if limited).
- SEC_DENY      everything else from the port: dropped (isolate, scope none/group), or
                metered when the group is sealed in "meter" mode.
- SEC_METER     rate limit: everything from the port through the terminal's meter.
- SEC_GROUP     group seal for terminals without flows of their own (`group_seal_flows`).

Web redirection. Rewriting tcp/80 to the update server's portal (port 8080) is easy in one
direction; the replies must get the original address back, which a stateless rule cannot
know. So the SEC_REDIRECT rule sends the first packet of each web connection to the
controller (packet-in); the shell then calls `redirect_connection_flows` with the original
destination and the client port, which installs a forward rewrite (dst -> portal) and a
reverse rewrite (portal -> original src address/port) for that connection with an idle
timeout, and re-injects the packet. The reverse rule matches the portal's reply wherever it
crosses a table 1; install it on every switch on the path (it is idempotent: once rewritten
the reply no longer matches). The terminal must be able to ARP the original destination (or
its gateway), as for any web request.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

from controller.crs.decision import Decision, Location
from controller.openflow.ofmsg import (
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    OFPP_CONTROLLER,
    Apply,
    FlowMod,
    Goto,
    Message,
    Meter,
    MeterMod,
    Output,
    SetField,
)
from controller.openflow.tables import FORWARDING, SECURITY, Priority

GROUP_SUB_BASE = 1 << 40          # cookie values of group seals, above any terminal number
GROUP_METER_BASE = 0x00F00000
REDIRECT_IDLE_S = 60


@dataclass(frozen=True)
class ServiceAddresses:
    """What a restricted terminal may always reach."""

    controller_ip: str
    update_ip: str
    update_mac: str
    portal_port: int = 8080
    controller_ports: tuple[int, ...] = (8080,)     # the controller's HTTP services
    agent_port: int = 7125                           # agents' replies to the update push


def rate_meter(meter_id: int, kbps: int | None, pps: int | None = None) -> MeterMod:
    """A drop-band meter holding traffic to `kbps`, or with `pps` to packets per second (a
    worm's probes are small: a bit rate that lets a terminal work passes a scan). The burst
    is a fifth of a second's worth: measured on the userspace datapath, no burst let UDP
    through about 17% above the rate; this one holds UDP within 1% and TCP within 10%
    (below) of it."""
    if pps is not None:
        return MeterMod(meter_id, "add", rate=pps, burst=max(1, pps // 5), pps=True)
    return MeterMod(meter_id, "add", rate=kbps, burst=max(16, kbps // 5))


def rate_meter_id(number: int) -> int:
    return 2 * number + 1


def outside_meter_id(number: int) -> int:
    return 2 * number + 2


def _goto() -> Goto:
    return Goto(FORWARDING.table_id)


def _dst_match(dst: str) -> dict:
    """A peer as an exact address or a subnet (masked match)."""
    net = ipaddress.IPv4Network(dst, strict=False)
    if net.prefixlen == 32:
        return {"ipv4_dst": str(net.network_address)}
    return {"ipv4_dst": (str(net.network_address), str(net.netmask))}


def base_flows() -> list[Message]:
    """Table-1 miss: what no CRS rule restricts goes on to forwarding."""
    return [SECURITY.flow(Priority.MISS, {}, [_goto()])]


def release_flows(number: int) -> list[Message]:
    """Remove everything one terminal had in table 1 (leave / release)."""
    return [SECURITY.delete_sub(number), MeterMod(rate_meter_id(number), "delete"),
            MeterMod(outside_meter_id(number), "delete")]


def _allow_services(sub: int, prio: int, port: int, svc: ServiceAddresses) -> list[FlowMod]:
    base = {"in_port": port}
    ip = {**base, "eth_type": ETH_TYPE_IP}
    tcp_ctl = {**ip, "ipv4_dst": svc.controller_ip, "ip_proto": IPPROTO_TCP}
    msgs = [SECURITY.flow(prio, {**base, "eth_type": ETH_TYPE_ARP, "arp_tpa": a}, [_goto()],
                          sub=sub) for a in dict.fromkeys((svc.controller_ip, svc.update_ip))]
    msgs += [SECURITY.flow(prio, {**tcp_ctl, "tcp_dst": p}, [_goto()], sub=sub)
             for p in svc.controller_ports]
    # one step below: a controller port in the ephemeral range (>= 32768) also matches this
    # flow, and two overlapping flows must not share a priority (same instructions anyway)
    msgs.append(SECURITY.flow(prio - 10, {**tcp_ctl, "tcp_src": svc.agent_port,
                                          "tcp_dst": (0x8000, 0x8000)}, [_goto()], sub=sub))
    if svc.update_ip != svc.controller_ip:      # (no update server of its own: the
        msgs.append(SECURITY.flow(prio, {**ip, "ipv4_dst": svc.update_ip}, [_goto()],
                                  sub=sub))       # controller's ports only, as above)
    return msgs


def _arp_to(sub: int, prio: int, port: int, dst: str | None, fwd: list) -> FlowMod:
    """ARP from a restricted port toward `dst` (an address or subnet; None: anyone)."""
    match: dict = {"in_port": port, "eth_type": ETH_TYPE_ARP}
    if dst is not None:
        m = _dst_match(dst)["ipv4_dst"]
        match["arp_tpa"] = m
    return SECURITY.flow(prio, match, fwd, sub=sub)


def terminal_flows(decision: Decision, loc: Location, svc: ServiceAddresses,
                   peers: Sequence[str] = ()) -> list[Message]:
    """The messages that make table 1 hold `decision` for the terminal at `loc`.

    `peers`: the terminal's group as addresses or subnets (for scope "group"); the
    terminal's own address need not be in it."""
    n, port = loc.number, loc.port
    msgs: list[Message] = release_flows(n)
    if decision.unrestricted:
        return msgs
    msgs += _allow_services(n, Priority.SEC_ALLOW, port, svc)
    rate = decision.meter_kbps if decision.meter_pps is None else decision.meter_pps
    if rate is not None:
        msgs.append(rate_meter(rate_meter_id(n), decision.meter_kbps, decision.meter_pps))
    fwd = ([Meter(rate_meter_id(n))] if rate is not None else []) + [_goto()]
    if decision.redirect_web:
        msgs.append(SECURITY.flow(
            Priority.SEC_REDIRECT,
            {"in_port": port, "eth_type": ETH_TYPE_IP, "ip_proto": IPPROTO_TCP, "tcp_dst": 80},
            [Apply((Output(OFPP_CONTROLLER),))], sub=n))
    for s in decision.restricted:
        proto, key = (IPPROTO_TCP, "tcp_dst") if s.proto == "tcp" else (IPPROTO_UDP, "udp_dst")
        msgs.append(SECURITY.flow(Priority.SEC_DENY + 200, {
            "in_port": port, "eth_type": ETH_TYPE_IP, "ip_proto": proto, key: s.port}, [],
            sub=n))
    if decision.redirect_web and not decision.isolate:
        # below the group's ARP flows (+100), which it contains; same instructions
        msgs.append(_arp_to(n, Priority.SEC_DENY + 90, port, None, fwd))
    if decision.isolate or decision.scope != "all":
        if decision.scope == "group" and not decision.isolate:
            for peer in peers:
                msgs.append(SECURITY.flow(Priority.SEC_DENY + 100, {
                    "in_port": port, "eth_type": ETH_TYPE_IP, **_dst_match(peer)}, fwd, sub=n))
                msgs.append(_arp_to(n, Priority.SEC_DENY + 100, port, peer, fwd))
        if decision.outside_kbps is not None and not decision.isolate:
            msgs.append(rate_meter(outside_meter_id(n), decision.outside_kbps))
            msgs.append(SECURITY.flow(Priority.SEC_DENY, {"in_port": port},
                                      [Meter(outside_meter_id(n)), _goto()], sub=n))
        else:
            msgs.append(SECURITY.flow(Priority.SEC_DENY, {"in_port": port}, [], sub=n))
    elif rate is not None:
        msgs.append(SECURITY.flow(Priority.SEC_METER, {"in_port": port}, fwd, sub=n))
    return msgs


def redirect_connection_flows(loc: Location, svc: ServiceAddresses, orig_ip: str,
                              client_port: int, orig_mac: str | None = None) -> list[Message]:
    """Per-connection rewrite of one web connection to the update server's portal."""
    n = loc.number
    forward = SECURITY.flow(Priority.SEC_REDIRECT + 10, {
        "in_port": loc.port, "eth_type": ETH_TYPE_IP, "ip_proto": IPPROTO_TCP,
        "ipv4_dst": orig_ip, "tcp_src": client_port, "tcp_dst": 80},
        [Apply((SetField("eth_dst", svc.update_mac), SetField("ipv4_dst", svc.update_ip),
                SetField("tcp_dst", svc.portal_port))), _goto()],
        sub=n, idle_timeout=REDIRECT_IDLE_S)
    back = [SetField("ipv4_src", orig_ip), SetField("tcp_src", 80)]
    if orig_mac:
        back.insert(0, SetField("eth_src", orig_mac))
    reverse = SECURITY.flow(Priority.SEC_REDIRECT + 10, {
        "eth_type": ETH_TYPE_IP, "ip_proto": IPPROTO_TCP, "ipv4_src": svc.update_ip,
        "tcp_src": svc.portal_port, "ipv4_dst": loc.ip, "tcp_dst": client_port},
        [Apply(tuple(back)), _goto()], sub=n, idle_timeout=REDIRECT_IDLE_S)
    return [forward, reverse]


GROUP_GEN_BIT = 1 << 36          # the same generation bit as per-terminal flows (nac.GEN_BIT)


def group_seal_flows(group_index: int, ports: Iterable[int], peers: Sequence[str],
                     svc: ServiceAddresses, mode: str = "drop", kbps: int | None = None,
                     gen: int = 0) -> list[Message]:
    """Seal a group on one switch: from the group's edge `ports`, destinations outside
    `peers` are dropped (or metered in "meter" mode); the controller and update server stay
    reachable. Make-before-break: the flows of generation `gen` are added before those of
    the previous generation are deleted, so a changing seal never opens for a packet.
    Unseal with `group_unseal_flows(group_index)`."""
    sub = GROUP_SUB_BASE + group_index | (GROUP_GEN_BIT if gen & 1 else 0)
    old_sub = GROUP_SUB_BASE + group_index | (0 if gen & 1 else GROUP_GEN_BIT)
    msgs: list[Message] = []
    meter = GROUP_METER_BASE + group_index
    if mode == "meter":
        if not kbps:
            raise ValueError("meter mode needs a rate in kbps")
        m = rate_meter(meter, kbps)
        msgs += [m, replace(m, command="modify")]   # one of the two fails harmlessly
    for port in ports:
        msgs += _allow_services(sub, Priority.SEC_GROUP + 200, port, svc)
        for peer in peers:
            msgs.append(SECURITY.flow(Priority.SEC_GROUP + 100, {
                "in_port": port, "eth_type": ETH_TYPE_IP, **_dst_match(peer)}, [_goto()],
                sub=sub))
            msgs.append(_arp_to(sub, Priority.SEC_GROUP + 100, port, peer, [_goto()]))
        rest = [Meter(meter), _goto()] if mode == "meter" else []
        msgs.append(SECURITY.flow(Priority.SEC_GROUP, {"in_port": port}, rest, sub=sub))
    return msgs + [SECURITY.delete_sub(old_sub)]


def group_unseal_flows(group_index: int) -> list[Message]:
    return [SECURITY.delete_sub(GROUP_SUB_BASE + group_index),
            SECURITY.delete_sub(GROUP_SUB_BASE + group_index | GROUP_GEN_BIT),
            MeterMod(GROUP_METER_BASE + group_index, "delete")]
