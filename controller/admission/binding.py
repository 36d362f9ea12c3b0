"""Table-0 admission bindings: what an authenticated terminal may send (X.1124 + authorization).

A binding is (switch, edge port, MAC, IPv4). After EAP success the terminal's binding is
written to table 0; frames pass only when all of it matches (ARP: sender MAC and address
too), so an admitted terminal cannot send as another terminal, claim another's address, or
poison anyone's ARP cache. To application servers it may send only the services its group
is entitled to (authorization.yaml); to the controller's service address only the
controller's HTTP port (and the replies of its own agent to the controller's update push);
everything else it sends goes on to the security table, where the reacting system may
restrict it further. Frames from a bound (port, MAC) with another source address are punted
through a low-rate meter so the controller counts them, and never forwarded.

Without a binding a terminal can send nothing but EAPOL and an ARP request for the
controller's service address, which the controller answers itself (proxy ARP): pre-auth
frames never reach forwarding, so nobody's location can be relearned from them.
The flows carry the binding's number as cookie value, so revocation is one cookie-masked
delete.
"""
from __future__ import annotations

from dataclasses import dataclass

from controller.admission.authorization import Authorization
from controller.openflow.ofmsg import (
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    OFPP_CONTROLLER,
    Apply,
    Goto,
    Message,
    Meter,
    MeterMod,
    Output,
)
from controller.openflow.tables import ADMISSION, SECURITY, Priority

# Packets/s of frames punted from table 0 per switch: pre-auth ARP to the service address,
# and frames a bound terminal sent with a source it does not own (counted, then dropped).
PUNT_METER_ID = 0x00D00000     # meter ids: see controller/pipeline.py
PUNT_PPS = 100
# Replies of a terminal's agent to the controller's update push come from this port and go
# to one of the controller's ephemeral ports (Linux: 32768-60999, inside the mask below).
AGENT_PORT = 7125
EPHEMERAL = (0x8000, 0x8000)


@dataclass(frozen=True)
class Server:
    name: str
    ip: str


@dataclass(frozen=True)
class ControllerService:
    """The controller's own address on the emulated (or real) access network."""

    ip: str
    mac: str
    tcp_ports: tuple[int, ...]        # its HTTP services: CRSAP reports, EAC


def _punt() -> list:
    return [Meter(PUNT_METER_ID), Apply((Output(OFPP_CONTROLLER),))]


def binding_flows(number: int, port: int, mac: str, ip: str | None, group: str,
                  authz: Authorization, servers: list[Server],
                  ctl: ControllerService | None) -> list[Message]:
    """The table-0 flows of one authenticated terminal (ADD: re-installing is harmless),
    the drops first, then the allows, the broadest last, then the punt of everything else
    from the (port, MAC): the switch applies them one by one, and a frame arriving in
    between must never find an allow without the drop that narrows it. The punt, lowest of
    all, narrows nothing: before it is in place such a frame meets table 0's miss (dropped),
    so the terminal's own first frames, sent as soon as the EAP Success arrives, cost no
    packet-in.

    With `ip` None (no address known for this port yet) every frame of the (port, MAC) is
    punted, and the controller pins the first source address it sees."""
    on = [Goto(SECURITY.table_id)]
    base = {"in_port": port, "eth_src": mac}
    P = Priority.ADM_BINDING
    punt = ADMISSION.flow(P + 10, base, _punt(), sub=number)
    if ip is None:
        return [punt]
    msgs: list[Message] = []
    src = {**base, "eth_type": ETH_TYPE_IP, "ipv4_src": ip}
    by_name = {s.name: s for s in servers}
    for srv in servers:  # any other traffic to an application server: dropped
        msgs.append(ADMISSION.flow(P + 50, {**src, "ipv4_dst": srv.ip}, [], sub=number))
    if ctl is not None:
        msgs.append(ADMISSION.flow(P + 50, {**src, "ipv4_dst": ctl.ip}, [], sub=number))
        # whatever else is addressed to the controller host's MAC (other protocols, other
        # addresses of its host) is dropped; ARP is handled above this
        msgs.append(ADMISSION.flow(P + 40, {**base, "eth_dst": ctl.mac}, [], sub=number))
    for a in authz.allowed(group):
        srv = by_name.get(a.server)
        if srv is None:
            continue
        proto, key = (IPPROTO_TCP, "tcp_dst") if a.proto == "tcp" else (IPPROTO_UDP, "udp_dst")
        msgs.append(ADMISSION.flow(P + 100, {
            **src, "ipv4_dst": srv.ip, "ip_proto": proto, key: a.port}, on, sub=number))
    if ctl is not None:
        to_ctl = {**src, "ipv4_dst": ctl.ip, "ip_proto": IPPROTO_TCP}
        for p in ctl.tcp_ports:
            msgs.append(ADMISSION.flow(P + 100, {**to_ctl, "tcp_dst": p}, on, sub=number))
        # below P + 100: a controller port in the ephemeral range also matches this flow,
        # and overlapping flows must not share a priority (same instructions anyway)
        msgs.append(ADMISSION.flow(P + 90, {**to_ctl, "tcp_src": AGENT_PORT,
                                            "tcp_dst": EPHEMERAL}, on, sub=number))
    msgs.append(ADMISSION.flow(P + 60, {**base, "eth_type": ETH_TYPE_ARP, "arp_spa": ip,
                                        "arp_sha": mac}, on, sub=number))
    msgs.append(ADMISSION.flow(P + 20, src, on, sub=number))
    msgs.append(punt)
    return msgs


def revoke_flows(number: int) -> list[Message]:
    return [ADMISSION.delete_sub(number)]


def preauth_flows(service_ip: str | None) -> list[Message]:
    """Before authentication: an ARP request for the controller's service address goes to the
    controller (which answers it), through the punt meter; nothing is forwarded."""
    msgs: list[Message] = [
        MeterMod(PUNT_METER_ID, "add", rate=PUNT_PPS, burst=PUNT_PPS // 5, pps=True),
        MeterMod(PUNT_METER_ID, "modify", rate=PUNT_PPS, burst=PUNT_PPS // 5, pps=True),
    ]
    if service_ip:
        msgs.append(ADMISSION.flow(Priority.ADM_PREAUTH, {
            "eth_type": ETH_TYPE_ARP, "arp_op": 1, "arp_tpa": service_ip}, _punt()))
    return msgs
