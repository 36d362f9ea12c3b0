"""The controller's pure core: events in, OpenFlow messages (per dpid) out.

The Ryu shell (`controller.ryu_shell.app`) calls these methods and sends what they return;
nothing here imports Ryu, so every behaviour is testable against `openflow.flowsim`. The
core only dispatches: each event goes to the owner of the table it concerns (admission,
table 0, X.1124; security control, table 1, X.1125 with roaming; forwarding, table 2; the
throttle; the operator API); what one owner tells another (a terminal admitted or revoked)
passes through `_admission_event`. State that must survive the controller is committed to
the store before the flows that depend on it are returned, and every switch's flows are
rebuilt from the store when it connects.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from controller import packet
from controller.audit import AuditLog
from controller.effects import Audit, Count, HttpPost, Log, LogBudget, Out, Rejected, SwitchState
from controller.forwarding import Forwarding
from controller.openflow.ofmsg import ETH_TYPE_EAPOL, ETH_TYPE_LLDP
from controller.openflow.reconcile import Installed, make_before_break
from controller.operator import ApiError, OperatorApi, core_status  # noqa: F401 (ApiError: shell)
from controller.owners.admission import Admission, Connected, Revoked, trusted_ports
from controller.owners.security import Security
from controller.owners.standalone import Standalone, provisioned_keys, standalone_topology
from controller.pipeline import AdmissionMode, admission_base, punt_class, security_base
from controller.settings import Loaded, Settings
from controller.store import Store
from controller.throttle import Throttle
from controller.topology import Topology

log = logging.getLogger("crs.core")


class Core:
    def __init__(self, settings: Settings, topology: Topology | None = None,
                 now: float | None = None, store: Store | None = None,
                 audit: AuditLog | None = None, loaded: Loaded | None = None):
        """`store`, `audit` and `loaded` (the parsed credentials, authorization and policy,
        from `settings.validate`) are built or loaded from the settings when not given."""
        now = self._now = time.time() if now is None else now
        self.settings, self.topology = settings, topology
        self.store = store if store is not None else Store(settings.db_path)
        self.audit = audit if audit is not None else AuditLog(settings.audit_log)
        self.counters: Counter[str] = Counter()
        self.switches: dict[int, SwitchState] = {}
        self.warn = LogBudget(log)
        self.mode = AdmissionMode(open=settings.admission_mode == "open",
                                  eapol_pps=settings.eapol_pps,
                                  eapol_port_pps=settings.eapol_port_pps)
        self.forwarding = Forwarding(idle_timeout=settings.idle_timeout_s,
                                     flood_unknown_arp=self.mode.open)
        self.admission = None if self.mode.open else Admission(
            settings, topology, self.store, self.audit, self.counters, self.common,
            self._admission_event, self.mode, now, loaded)
        if topology is not None:    # servers, the service address, restored bindings
            self.forwarding.place_topology(topology, self.mode.open, settings.domain)
            for b in self.admission.bound.values() if self.admission else ():
                if b.ip:
                    self.forwarding.place(b.mac, b.dpid, b.port, b.ip)
        # ports admitted without 802.1X (inter-switch, servers, the service address)
        self._trusted = self.admission.trusted if self.admission else trusted_ports(topology)
        if settings.throttle_enabled and topology is None:
            raise ValueError("the throttle needs a topology file (which ports are terminals)")
        self.security = Security(settings, topology or standalone_topology(settings),
                                 self.store, self.audit, self.counters, self.common,
                                 self.switches, now, *((loaded.policy, loaded.peers)
                                 if loaded else ())) if settings.crs_enabled else None
        # without a topology file or 802.1X: provisioned keys, terminals seen at edge ports
        self.standalone = Standalone(provisioned_keys(settings, loaded), self.security,
                                     self.counters, self.audit, keys_file=settings.crs_keys_file
                                     ) if topology is None and self.security else None
        self.throttle = Throttle(settings.throttle_working_set, settings.throttle_new_dest_per_s
                                 ) if settings.throttle_enabled else None
        self.api = OperatorApi(self.admission, self.security, topology, settings)

    # --- effects every part shares ------------------------------------------------------

    def common(self, e: Count | Log | Audit | Rejected) -> None:
        if isinstance(e, Count):
            self.counters[e.name] += 1
        elif isinstance(e, Log):
            log.log(e.level, "%s", e.text)
        elif isinstance(e, Audit):
            self.audit.write(e.record, e.encoded)
        elif isinstance(e, Rejected):
            self.counters[e.counter] += 1
            log.warning("%s", e.reason)

    def _admission_event(self, e: Connected | Revoked, now: float) -> Out:
        """What table 0's owner tells the others: connect or forget a terminal."""
        b = e.binding
        if isinstance(e, Revoked):
            out = self.forwarding.forget(b.mac, at=(b.dpid, b.port))
            if self.security is not None:
                out += self.security.leave(b.identity, e.reason, now)
            return out
        out = self.forwarding.place(b.mac, b.dpid, b.port, b.ip)
        if self.security is None:
            return out
        return out + self.security.connect(b.identity, b.group, b.ip, b.mac, b.dpid, b.port,
                                           now, e.moved)

    # --- switch lifecycle --------------------------------------------------------------

    def switch_up(self, dpid: int, ports: set[int], now: float | None = None,
                  eapol_local: bool = False, installed: list[Installed] | None = None) -> Out:
        """A switch connected (first time or again): rebuild its pipeline from the store
        (`eapol_local`: the shell reads its LOCAL port, `admission.local_port`; `installed`:
        the flows it holds, read from it: rebuilt without a gap, `openflow.reconcile`)."""
        now = self._now = time.time() if now is None else now
        self.switches[dpid] = SwitchState(dpid)
        self.counters["switch_connects"] += 1
        msgs = admission_base(self.mode, self._trusted.get(dpid, set()),
                              local := eapol_local and self.admission is not None)
        msgs += self.standalone.switch_up(dpid) if self.standalone else []
        restored: Out = []
        if self.admission is not None:
            flows, restored = self.admission.switch_up(dpid, now, local)
            msgs += flows
        msgs += self.security.rebuild(dpid) if self.security else security_base()
        if self.throttle is not None:
            for i, h in enumerate(self.topology.terminals()):
                if self.topology.switch(h.switch).dpid == dpid:
                    msgs += self.throttle.base_flows(dpid, h.port, i + 1)
        msgs += self.forwarding.switch_up(dpid)
        msgs = msgs if installed is None else make_before_break(msgs, installed)
        self.audit.write({"event": "switch_up", "dpid": dpid, "flows": len(msgs)})
        return [(dpid, m) for m in msgs] + restored

    def switch_down(self, dpid: int) -> None:
        self.switches.pop(dpid, None)
        self.forwarding.switch_down(dpid)
        if self.standalone is not None:
            self.standalone.switch_down(dpid)
        self.audit.write({"event": "switch_down", "dpid": dpid})

    def port_status(self, dpid: int, port: int, up: bool, now: float | None = None,
                    name: str | None = None, eapol_direct: bool = False) -> Out:
        now = self._now = time.time() if now is None else now
        if dpid not in self.switches:
            return []
        adm, alone = self.admission, self.standalone
        if up:
            return (adm.port_up(dpid, port, now, eapol_direct) if adm else []) + \
                (alone.port_up(dpid, port, now, name) if alone else [])
        out = [(dpid, m) for m in self.forwarding.port_down(dpid, port)]
        return out + (adm.port_down(dpid, port, now) if adm else []) + \
            (alone.port_down(dpid, port, now) if alone else [])

    def eapol_transport(self, dpid: int, port: int, direct: bool,
                        now: float | None = None) -> Out:
        """A port's EAPOL moved (a read port's socket failed: back through LOCAL; read
        again: back to the port): its EAPOL flows only; no port state is reset."""
        now = self._now = time.time() if now is None else now
        adm = self.admission
        return adm.port_transport(dpid, port, now, direct) if adm and dpid in self.switches else []

    # --- packets -----------------------------------------------------------------------

    def packet_in(self, dpid: int, in_port: int, table_id: int, data: bytes,
                  now: float | None = None) -> Out:
        now = self._now = time.time() if now is None else now
        self.counters["packet_ins"] += 1
        try:
            frame = packet.parse(data)
        except packet.BadFrame as exc:
            self.counters.update(("packet_in_bad", "bad_frames"))
            self.warn(now, "bad_frame", "dpid %x port %d: dropped malformed frame: %s", dpid,
                      in_port, exc)
            return []
        # every packet-in is accounted by class (`crs status`): a steady network costs little
        self.counters[f"packet_in_{punt_class(frame, table_id)}"] += 1
        if frame.eth_type == ETH_TYPE_LLDP:
            return self.standalone.lldp(dpid, in_port, data, now) if self.standalone else []
        adm, sec = self.admission, self.security
        if frame.eth_type == ETH_TYPE_EAPOL:
            if adm is None:
                self.counters["eapol_ignored_open_mode"] += 1
                return []
            return adm.eapol(dpid, in_port, data, now)
        if table_id == 0:
            return adm.punt(dpid, in_port, frame, now) if adm else []
        if table_id == 1:
            if (self.throttle is not None and frame.ipv4_dst is not None
                    and (dpid, in_port) in self.throttle.hosts
                    and not (frame.ip_proto == 6 and frame.l4_dst == 80 and sec is not None
                             and sec.redirected(dpid, in_port))):
                return [(dpid, m) for m in self.throttle.packet(dpid, in_port, frame.ipv4_dst,
                                                                  data, now)]
            if sec is not None:
                return sec.redirect(dpid, in_port, frame, data)
        if table_id == 2:
            out: Out = []
            if adm is not None and adm.edge(dpid, in_port):
                b = adm.bound.get((dpid, in_port, frame.src))
                if b is None:
                    # only a bound (port, MAC) or an inter-switch/server port teaches
                    # forwarding where a MAC lives: anything else could move someone's traffic
                    self.counters["attack_unbound_source_dropped"] += 1
                    return []
                if sec is not None:
                    out = sec.first_contact(b.identity, frame, now)
            elif self.standalone is not None:
                got = self.standalone.seen(dpid, in_port, frame, data, now)
                if got is not None:
                    return got
            if frame.arp_op == 1 and self.forwarding.proxy_arp:
                return out + self.forwarding.arp_request(dpid, in_port, frame, data)[0]
            return out + self.forwarding.packet_in(dpid, in_port, frame.src, frame.dst, data)
        self.counters["unexpected_packet_ins"] += 1
        return []

    def eapol_local(self, dpid: int, data: bytes | list[bytes], now: float | None = None) -> Out:
        """Frames read from a switch's LOCAL port (`admission.local_port`), one or several
        read together (their admissions then share one commit)."""
        now = self._now = time.time() if now is None else now
        frames = [data] if isinstance(data, bytes) else data
        return self.admission.local_frames(dpid, frames, now) if self.admission else []

    def tick(self, now: float | None = None) -> Out:
        now = self._now = time.time() if now is None else now
        return [m for o in (self.admission, self.security, self.throttle, self.standalone)
                if o is not None for m in o.tick(now)]

    def switch_reply(self, dpid: int, tag: Any, error: str | None = None,
                     now: float | None = None) -> Out:
        """A switch confirmed a tagged barrier's messages (or refused one): ControlAck."""
        now = self._now = time.time() if now is None else now
        return self.security.control_reply(dpid, tag, error, now) if self.security else []

    def take_http(self) -> list[HttpPost]:
        return self.security.take_http() if self.security else []

    def roam_message(self, raw: bytes, now: float | None = None) -> tuple[int, bytes, Out]:
        """POST /roam/v1/messages (a peer SCS, X.1125 13.3): (HTTP status, body, flows)."""
        now = self._now = time.time() if now is None else now
        return self.security.roam_message(raw, now) if self.security else (404, b"", [])

    # --- requests from the REST API ----------------------------------------------------

    def crsap_message(self, raw: bytes, now: float | None = None) -> tuple[int, bytes, Out]:
        """POST /crsap/v1/messages from an agent: (HTTP status, body, flows)."""
        return self.crsap_messages([raw], now)[0]

    def crsap_messages(self, raws: list[bytes],
                       now: float | None = None) -> list[tuple[int, bytes, Out]]:
        """Agents' messages as one group commit: (HTTP status, body, flows) for each."""
        now = self._now = time.time() if now is None else now
        if self.security is None:
            return [(503, b'{"error": "the reacting system is not enabled"}', [])
                    for _ in raws]
        return self.security.messages(raws, now)

    def status(self) -> dict[str, Any]:
        return core_status(self)
