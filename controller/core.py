"""The controller's pure core: switch and packet events in, OpenFlow messages (per dpid) out.

The Ryu shell (`controller.ryu_shell.app`) calls these methods and sends what they return;
nothing here imports Ryu, so every behaviour is testable against `openflow.flowsim`.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from controller import packet
from controller.forwarding import Forwarding
from controller.openflow.ofmsg import ETH_TYPE_LLDP, Message
from controller.pipeline import AdmissionMode, admission_base, security_base
from controller.settings import Settings
from controller.topology import Topology

log = logging.getLogger("crs.core")

Out = list[tuple[int, Message]]


@dataclass
class SwitchState:
    dpid: int
    ports: set[int] = field(default_factory=set)


class Core:
    def __init__(self, settings: Settings, topology: Topology | None = None):
        self.settings = settings
        self.topology = topology
        self.forwarding = Forwarding(idle_timeout=settings.idle_timeout_s)
        self.mode = AdmissionMode(open=settings.admission_mode == "open",
                                  eapol_pps=settings.eapol_pps)
        self.switches: dict[int, SwitchState] = {}
        self.counters: Counter[str] = Counter()
        self._infra = topology.infra_ports() if topology else {}

    # --- switch lifecycle --------------------------------------------------------------

    def switch_up(self, dpid: int, ports: set[int]) -> Out:
        """A switch connected (first time or again): (re)build its whole pipeline."""
        self.switches[dpid] = SwitchState(dpid, set(ports))
        self.counters["switch_connects"] += 1
        msgs: list[Message] = []
        msgs += admission_base(self.mode, self._infra.get(dpid, set()))
        msgs += security_base()
        msgs += self.forwarding.switch_up(dpid)
        return [(dpid, m) for m in msgs]

    def switch_down(self, dpid: int) -> None:
        self.switches.pop(dpid, None)
        self.forwarding.switch_down(dpid)

    def port_status(self, dpid: int, port: int, up: bool) -> Out:
        sw = self.switches.get(dpid)
        if sw is None:
            return []
        if up:
            sw.ports.add(port)
            return []
        sw.ports.discard(port)
        return [(dpid, m) for m in self.forwarding.port_down(dpid, port)]

    # --- packets -----------------------------------------------------------------------

    def packet_in(self, dpid: int, in_port: int, table_id: int, data: bytes) -> Out:
        self.counters["packet_ins"] += 1
        try:
            frame = packet.parse(data)
        except packet.BadFrame as exc:
            self.counters["bad_frames"] += 1
            log.warning("dpid %x port %d: dropped malformed frame: %s", dpid, in_port, exc)
            return []
        if frame.eth_type == ETH_TYPE_LLDP:
            return []
        if table_id == 2:
            return [(dpid, m) for m in self.forwarding.packet_in(
                dpid, in_port, frame.src, frame.dst, data)]
        self.counters["unexpected_packet_ins"] += 1
        return []

    def status(self) -> dict:
        return {
            "switches": sorted(self.switches),
            "admission": "open" if self.mode.open else "authenticate",
            "counters": dict(self.counters),
            "hosts_learned": {f"{d:016x}": len(t) for d, t in self.forwarding.macs.items()},
        }
