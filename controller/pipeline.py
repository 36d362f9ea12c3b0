"""Base flows of the admission and security tables, installed on every switch at connect.

Table 0 (admission) is default deny: its table-miss drops. Above that, in bands: LLDP
dropped (the topology file names the inter-switch ports; without one, `owners.standalone`
sends it to the controller), EAPOL to the
controller through a packets-per-second meter (one per edge port), inter-switch ports
straight on (their traffic was admitted at its own edge), and, while authentication is
disabled by configuration, an "allow all" flow. Table 1 (security control) passes everything
on to forwarding unless the reacting system has put a terminal's flows above its miss flow.

Re-installing is safe at any time: table 0 is rebuilt (deleting admission flows only ever
blocks), table 1's restrictions are never deleted here (only their owner removes them).
"""
from __future__ import annotations

from dataclasses import dataclass

from controller.admission import local_port
from controller.openflow.ofmsg import (
    ETH_TYPE_EAPOL,
    ETH_TYPE_LLDP,
    OFPP_CONTROLLER,
    Apply,
    Goto,
    Message,
    Meter,
    MeterMod,
    Output,
)
from controller.openflow.tables import ADMISSION, FORWARDING, SECURITY, Priority
from controller.packet import Frame

# Meter ids on a switch, one range per user (a collision silently shares a rate):
#   1                     EAPOL, per switch (ports not yet seen)
#   2                     forwarding's table-miss (controller.forwarding.MISS_METER_ID)
#   3 .. 0x00CFFFFF       per terminal number n: 2n+1 rate limit, 2n+2 out-of-group
#                         (controller.crs.enforcement)
#   0x00D00000            table-0 punts (controller.admission.binding.PUNT_METER_ID)
#   0x00D00001            table-3 floods (controller.forwarding.FLOOD_METER_ID)
#   0x00D00002            LLDP without a topology file (owners.standalone.LLDP_METER_ID)
#   0x00E00000 + port     EAPOL per edge port
#   0x00F00000 + group    group seals in meter mode (controller.crs.enforcement)
EAPOL_METER_ID = 1
# One EAPOL meter per edge port, so a port that floods EAPOL cannot starve its neighbours'
# authentication (the per-switch meter stays as the fallback for ports not yet seen).
EAPOL_PORT_METER_BASE = 0x00E00000
MAX_METERED_PORT = 0xFFFFF


@dataclass(frozen=True)
class AdmissionMode:
    open: bool = True              # allow all (no authentication) - the foundation default
    eapol_pps: int = 1000          # punt rate for EAPOL per switch
    eapol_port_pps: int = 20       # punt rate for EAPOL per edge port


def admission_base(mode: AdmissionMode, infra_ports: set[int],
                   local_eapol: bool = False) -> list[Message]:
    """`local_eapol`: this switch's EAPOL goes through its LOCAL port (`admission.
    local_port`): nothing else from LOCAL passes."""
    msgs: list[Message] = [
        ADMISSION.delete_all(),
        MeterMod(EAPOL_METER_ID, "delete"),  # a reconnecting switch may still hold it
        MeterMod(EAPOL_METER_ID, "add", rate=mode.eapol_pps, burst=max(10, mode.eapol_pps // 10),
                 pps=True),
        ADMISSION.flow(Priority.ADM_CONTROL, {"eth_type": ETH_TYPE_LLDP}, []),
        ADMISSION.flow(Priority.ADM_CONTROL, {"eth_type": ETH_TYPE_EAPOL},
                       [Meter(EAPOL_METER_ID), Apply((Output(OFPP_CONTROLLER),))]),
    ]
    msgs += [infra_port_flow(p) for p in sorted(infra_ports)]
    if mode.open:
        msgs.append(ADMISSION.flow(Priority.ADM_OPEN, {}, [Goto(SECURITY.table_id)]))
    elif local_eapol:
        msgs += local_port.base_flows()
    return msgs


def infra_port_flow(port: int) -> Message:
    """Table 0: traffic from an inter-switch port (or the controller's service port) passes
    on: it was admitted at its own edge."""
    return ADMISSION.flow(Priority.ADM_INFRA, {"in_port": port}, [Goto(SECURITY.table_id)])


def eapol_port_flows(mode: AdmissionMode, port: int, local_auth_mac: str | None = None,
                     direct: bool | None = None) -> list[Message]:
    """EAPOL from one edge port through that port's own packets/s meter: as packet-ins,
    and with `local_auth_mac` (the authenticator's MAC) the frames to the two EAPOL
    destinations through the LOCAL port instead (`admission.local_port`); `direct` (True or
    False with `eapol_transport: port`): whether the controller reads the port's own
    interface, where the switch then drops them. Added, then
    modified: the meter may or may not survive on a reconnecting switch, and deleting it
    would remove its flows."""
    if mode.open or port > MAX_METERED_PORT:
        return []
    meter = EAPOL_PORT_METER_BASE + port
    rate, burst = mode.eapol_port_pps, max(5, mode.eapol_port_pps // 2)
    msgs = [MeterMod(meter, "add", rate=rate, burst=burst, pps=True),
            MeterMod(meter, "modify", rate=rate, burst=burst, pps=True),
            ADMISSION.flow(Priority.ADM_CONTROL + 1, {"in_port": port,
                                                      "eth_type": ETH_TYPE_EAPOL},
                           [Meter(meter), Apply((Output(OFPP_CONTROLLER),))])]
    if local_auth_mac is not None:
        msgs += local_port.flows(port, meter, local_auth_mac)
    if direct is not None:        # `eapol_transport: port`: read on the port or not (any more)
        msgs.append(local_port.direct_flow(port) if direct else
                    local_port.direct_flow_delete(port))
    return msgs


def security_base() -> list[Message]:
    """Table 1's miss flow (owned by the reacting system's enforcement)."""
    from controller.crs.enforcement import base_flows
    return base_flows()


def punt_class(frame: Frame, table_id: int) -> str:
    """What a packet-in is, for counting: eapol, lldp, admission_punt (table 0), security
    (table 1: redirect, throttle), then for forwarding (table 2) arp, broadcast, or unicast
    (a new pair's first packet)."""
    if frame.eth_type == ETH_TYPE_EAPOL:
        return "eapol"
    if frame.eth_type == ETH_TYPE_LLDP:
        return "lldp"
    if table_id == ADMISSION.table_id:
        return "admission_punt"
    if table_id == SECURITY.table_id:
        return "security"
    if table_id != FORWARDING.table_id:
        return "other_table"
    if frame.arp_op is not None:
        return "arp"
    return "broadcast" if frame.is_multicast else "unicast"
