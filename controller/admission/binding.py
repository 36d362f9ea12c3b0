"""Table-0 admission bindings: what an authenticated terminal may send (X.1124 + authorization).

After EAP success the terminal's (edge port, MAC) is bound in table 0: to application
servers only the services its group is entitled to (authorization.yaml), nothing else to
those servers; everything else (other terminals, the controller's services) goes on to the
security table, where the reacting system may restrict it further. Without a binding a
terminal can send nothing but EAPOL. The flows carry the binding's number as cookie value,
so revocation is one cookie-masked delete.
"""
from __future__ import annotations

from dataclasses import dataclass

from controller.admission.authorization import Authorization
from controller.openflow.ofmsg import (
    ETH_TYPE_ARP, ETH_TYPE_IP, IPPROTO_TCP, IPPROTO_UDP, Goto, Message,
)
from controller.openflow.tables import ADMISSION, SECURITY, Priority


@dataclass(frozen=True)
class Server:
    name: str
    ip: str


def binding_flows(number: int, port: int, mac: str, group: str, authz: Authorization,
                  servers: list[Server]) -> list[Message]:
    """The table-0 flows of one authenticated terminal (ADD: re-installing is harmless)."""
    on = [Goto(SECURITY.table_id)]
    base = {"in_port": port, "eth_src": mac}
    msgs: list[Message] = []
    by_name = {s.name: s for s in servers}
    for a in authz.allowed(group):
        srv = by_name.get(a.server)
        if srv is None:
            continue
        proto, key = (IPPROTO_TCP, "tcp_dst") if a.proto == "tcp" else (IPPROTO_UDP, "udp_dst")
        msgs.append(ADMISSION.flow(Priority.ADM_BINDING + 100, {
            **base, "eth_type": ETH_TYPE_IP, "ipv4_dst": srv.ip, "ip_proto": proto, key: a.port},
            on, sub=number))
    for srv in servers:  # any other traffic to an application server: dropped
        msgs.append(ADMISSION.flow(Priority.ADM_BINDING + 50, {
            **base, "eth_type": ETH_TYPE_IP, "ipv4_dst": srv.ip}, [], sub=number))
    msgs.append(ADMISSION.flow(Priority.ADM_BINDING, base, on, sub=number))
    return msgs


def revoke_flows(number: int) -> list[Message]:
    return [ADMISSION.delete_sub(number)]


def preauth_flows(service_ip: str | None) -> list[Message]:
    """Before authentication: ARP toward the controller's service address only."""
    if not service_ip:
        return []
    return [ADMISSION.flow(Priority.ADM_PREAUTH, {"eth_type": ETH_TYPE_ARP,
                                                 "arp_tpa": service_ip},
                           [Goto(SECURITY.table_id)])]
