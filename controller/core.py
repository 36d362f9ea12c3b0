"""The controller's pure core: events in, OpenFlow messages (per dpid) out.

The Ryu shell (`controller.ryu_shell.app`) calls these methods and sends what they return;
nothing here imports Ryu, so every behaviour is testable against `openflow.flowsim`.
It wires the owners of the three tables together:

- admission (table 0): the 802.1X authenticator and the EAC (X.1124);
- security control (table 1): the SCS and its NAC/ASC enforcement (X.1125);
- forwarding (table 2).

State that must survive the controller (sessions, bindings, decisions, seals, replay
counters) is committed to the store before the flows that depend on it are returned, and
every switch's flows are rebuilt from the store when it connects.
"""
from __future__ import annotations

import logging
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from controller import packet
from controller.audit import AuditLog
from controller.forwarding import Forwarding
from controller.openflow.ofmsg import (
    ETH_TYPE_EAPOL, ETH_TYPE_LLDP, OFPP_TABLE, Message, MeterMod, Output, PacketOut,
)
from controller.pipeline import AdmissionMode, admission_base, eapol_port_flows
from controller.settings import Settings
from controller.store import Store
from controller.topology import Topology

log = logging.getLogger("crs.core")

Out = list[tuple[int, Message]]


@dataclass
class SwitchState:
    dpid: int
    meters: set[int] = field(default_factory=set)     # meter ids we added since it connected


@dataclass
class HttpPost:
    """An HTTP request the shell must make without blocking (e.g. an update command)."""

    url: str
    body: bytes


class ApiError(Exception):
    def __init__(self, status: int, reason: str, **extra: Any):
        super().__init__(reason)
        self.status, self.reason, self.extra = status, reason, extra


class Core:
    def __init__(self, settings: Settings, topology: Topology | None = None,
                 now: float | None = None):
        now = self._now = time.time() if now is None else now
        self.settings = settings
        self.topology = topology
        self.store = Store(settings.db_path)
        self.audit = AuditLog(settings.audit_log)
        self.forwarding = Forwarding(idle_timeout=settings.idle_timeout_s)
        if topology is not None:
            from controller.topology import ports_toward
            self.forwarding.toward = ports_toward(topology)
            self.forwarding.infra = topology.infra_ports()
        self.mode = AdmissionMode(open=settings.admission_mode == "open",
                                  eapol_pps=settings.eapol_pps,
                                  eapol_port_pps=settings.eapol_port_pps)
        self.switches: dict[int, SwitchState] = {}
        self.counters: Counter[str] = Counter()
        self.http_out: list[HttpPost] = []
        self._trusted = self._trusted_ports()
        self._last_purge = self._last_expiry_check = now
        self.auth = self.eac = self.scs = None
        self.authz = None
        self._gens: dict[str, int] = {}     # cookie generation per terminal (table 1)
        self._seal_gens: dict[str, int] = {}    # cookie generation per sealed group
        self._evidence_saved = 0                # correlator change count last stored
        self._indexes: tuple[dict[str, str], set[str]] | None = None
        # (dpid, port, mac) -> binding, for every active binding: who may send from where
        self._bound: dict[tuple[int, int, str], dict] = {}
        self._bound_port: dict[tuple[int, int], str] = {}    # (dpid, port) -> identity
        self._bound_ip: dict[str, str] = {}                  # pinned IPv4 -> identity
        self._log_budget: dict[str, float] = {}
        self._host_at: dict[tuple[int, int], str] | None = None
        self._host_ips: set[str] | None = None
        if not self.mode.open:
            self._init_admission()
        if settings.crs_enabled:
            self._init_crs(now)
        self.throttle = None
        if settings.throttle_enabled:
            from controller.throttle import Throttle
            if topology is None:
                raise ValueError("the throttle needs a topology file (which ports are terminals)")
            self.throttle = Throttle(settings.throttle_working_set,
                                     settings.throttle_new_dest_per_s)

    # --- set-up ------------------------------------------------------------------------

    def _trusted_ports(self) -> dict[int, set[int]]:
        """Ports whose traffic is admitted without 802.1X: inter-switch links, servers and
        the controller's service address (all from the topology file)."""
        t = self.topology
        if t is None:
            return {}
        ports = t.infra_ports()
        for h in t.servers():
            ports.setdefault(t.switch(h.switch).dpid, set()).add(h.port)
        ports.setdefault(t.switch(t.service_switch).dpid, set()).add(t.service_port)
        return ports

    def _init_admission(self) -> None:
        from controller.admission.authenticator import Authenticator, Timers
        from controller.admission.authorization import load_authorization
        from controller.admission.credentials import load_credentials
        from controller.admission.eac import Eac
        s = self.settings
        creds = load_credentials(s.credentials_file)
        self.authz = load_authorization(s.authorization_file)
        self.auth = Authenticator(creds, self.controller_mac, Timers(
            session_s=s.session_s, reauth_margin_s=min(60.0, s.session_s / 3)))
        self.eac = Eac(self.store, creds, self.authz)
        self.ctl_service = None
        if self.topology is not None:
            from controller.admission.binding import ControllerService
            self.ctl_service = ControllerService(self.topology.service_ip,
                                                 self.topology.service_mac,
                                                 (s.rest_port,))
        for b in self.store.bindings(self._now):
            self._index_binding(b)

    def _init_crs(self, now: float) -> None:
        from controller.crs.enforcement import ServiceAddresses
        from controller.crs.policy import load_policy
        from controller.crs.scs import SCS
        t = self.topology
        if t is None:
            raise ValueError("the reacting system needs a topology file (servers, cells)")
        update = next((h for h in t.hosts if h.role == "update"), None)
        if update is None:
            raise ValueError(f"{t.file}: the reacting system needs a host with role: update")
        self.svc = ServiceAddresses(t.service_ip, update.ip, update.mac,
                                    controller_ports=(self.settings.rest_port,))
        policy = load_policy(self.settings.crs_policy_file)
        self.store.add_policy(policy.version, str(policy.source))
        self.scs = SCS(policy, self._report_key)
        self._restore_scs()

    @property
    def controller_mac(self) -> str:
        return self.topology.service_mac if self.topology else "02:00:00:00:ff:fe"

    # --- switch lifecycle --------------------------------------------------------------

    def switch_up(self, dpid: int, ports: set[int], now: float | None = None) -> Out:
        """A switch connected (first time or again): rebuild its pipeline from the store."""
        now = self._now = time.time() if now is None else now
        sw = SwitchState(dpid)
        self.switches[dpid] = sw
        self.counters["switch_connects"] += 1
        msgs: list[Message] = []
        msgs += admission_base(self.mode, self._trusted.get(dpid, set()))
        restored: Out = []
        if self.auth is not None:
            from controller.admission.binding import preauth_flows
            svc_ip = self.topology.service_ip if (self.settings.preauth_arp_to_service
                                                  and self.topology) else None
            msgs += preauth_flows(svc_ip)
            for b in self.store.bindings(now):
                if b["dpid"] == dpid:
                    msgs += self._binding_flows(b)
                    restored += self._auth_effects(self.auth.restore(
                        dpid, b["port"], b["mac"], self._restored_session(b), now,
                        self.settings.restore_grace_s), now)
        msgs += self._security_rebuild(dpid, sw)
        if self.throttle is not None:
            for i, h in enumerate(self.topology.terminals()):
                if self.topology.switch(h.switch).dpid == dpid:
                    msgs += self.throttle.base_flows(dpid, h.port, i + 1)
        msgs += self.forwarding.switch_up(dpid)
        self.audit.write({"event": "switch_up", "dpid": dpid, "flows": len(msgs)})
        return [(dpid, m) for m in msgs] + restored

    def switch_down(self, dpid: int) -> None:
        self.switches.pop(dpid, None)
        self.forwarding.switch_down(dpid)
        self.audit.write({"event": "switch_down", "dpid": dpid})

    def port_status(self, dpid: int, port: int, up: bool, now: float | None = None) -> Out:
        now = self._now = time.time() if now is None else now
        sw = self.switches.get(dpid)
        if sw is None:
            return []
        out: Out = []
        if up:
            if self.auth is not None:
                if port not in self._trusted.get(dpid, ()):
                    out += [(dpid, m) for m in eapol_port_flows(self.mode, port)]
                out += self._auth_effects(self.auth.port_up(dpid, port, now), now)
            return out
        out += [(dpid, m) for m in self.forwarding.port_down(dpid, port)]
        if self.auth is not None:
            out += self._auth_effects(self.auth.port_down(dpid, port, now), now)
        return out

    # --- packets -----------------------------------------------------------------------

    def packet_in(self, dpid: int, in_port: int, table_id: int, data: bytes,
                  now: float | None = None) -> Out:
        now = self._now = time.time() if now is None else now
        self.counters["packet_ins"] += 1
        try:
            frame = packet.parse(data)
        except packet.BadFrame as exc:
            self.counters["bad_frames"] += 1
            self._warn("bad_frame", "dpid %x port %d: dropped malformed frame: %s", dpid,
                       in_port, exc)
            return []
        if frame.eth_type == ETH_TYPE_LLDP:
            return []
        if frame.eth_type == ETH_TYPE_EAPOL:
            if self.auth is None:
                self.counters["eapol_ignored_open_mode"] += 1
                return []
            return self._auth_effects(self.auth.handle_frame(dpid, in_port, data, now), now)
        if table_id == 0:
            return self._admission_punt(dpid, in_port, frame, now)
        if table_id == 1:
            if (self.throttle is not None and frame.ipv4_dst is not None
                    and (dpid, in_port) in self.throttle.hosts
                    and not (frame.ip_proto == 6 and frame.l4_dst == 80 and self._redirected(
                        dpid, in_port))):
                return [(dpid, m) for m in self.throttle.packet(dpid, in_port, frame.ipv4_dst,
                                                                  data, now)]
            if self.scs is not None:
                return self._redirect(dpid, in_port, frame, data)
        if table_id == 2:
            edge = in_port not in self._trusted.get(dpid, ())
            tid = self._bound.get((dpid, in_port, frame.src), {}).get("identity")
            if self.auth is not None and edge and tid is None:
                # only a bound (port, MAC) or an inter-switch/server port teaches forwarding
                # where a MAC lives; anything else would let a frame move someone's traffic
                self.counters["attack_unbound_source_dropped"] += 1
                return []
            out: Out = []
            if self.scs is not None and edge and tid is not None:
                out = self._first_contact(tid, frame, now)
            return out + self.forwarding.packet_in(dpid, in_port, frame.src, frame.dst, data)
        self.counters["unexpected_packet_ins"] += 1
        return []

    def _admission_punt(self, dpid: int, in_port: int, frame: packet.Frame,
                        now: float) -> Out:
        """Table 0 sent this through the punt meter: a pre-auth ARP request for the service
        address (answered here, never forwarded), the first frame of a binding whose address
        is not known yet (pinned), or a bound terminal's frame with a source it does not
        own (counted and dropped)."""
        b = self._bound.get((dpid, in_port, frame.src))
        if b is not None and b.get("ip") is None:
            return self._pin_address(b, frame, now)
        t = self.topology
        if (frame.arp_op == 1 and t is not None and frame.arp_tpa == t.service_ip
                and frame.arp_spa != t.service_ip and frame.arp_sha == frame.src
                and in_port not in self._trusted.get(dpid, ())
                and (b is None or frame.arp_spa == b.get("ip"))):
            self.counters["preauth_arp_answered"] += 1
            reply = packet.arp_reply(t.service_mac, t.service_ip, frame.src,
                                     frame.arp_spa or "0.0.0.0")
            return [(dpid, PacketOut(reply, (Output(in_port),)))]
        if b is None:
            self.counters["attack_preauth_frame_dropped"] += 1
            return []
        kind = "arp" if frame.arp_op is not None else "ip" if frame.ipv4_src else "other"
        self.counters[f"attack_spoofed_{kind}_dropped"] += 1
        self._warn(f"spoof:{b['identity']}", "%s on %x:%d sent a %s frame as %s (bound to %s):"
                   " dropped", b["identity"], dpid, in_port, kind,
                   frame.arp_spa or frame.ipv4_src or hex(frame.eth_type), b.get("ip"))
        return []

    def _warn(self, key: str, fmt: str, *args: Any) -> None:
        """A warning at most once per 10 s per key: an attacker must not flood the log."""
        if self._now - self._log_budget.get(key, -1e9) >= 10.0:
            if len(self._log_budget) > 10000:
                self._log_budget.clear()
            self._log_budget[key] = self._now
            log.warning(fmt, *args)

    def tick(self, now: float | None = None) -> Out:
        now = self._now = time.time() if now is None else now
        out: Out = []
        if self.auth is not None:
            out += self._auth_effects(self.auth.tick(now), now)
            if now - self._last_expiry_check >= 1.0:
                self._last_expiry_check = now
                for b in self.store.expired_bindings(now):
                    out += self._revoke(b["dpid"], b["port"], b["mac"], "session expired", now)
            if now - self._last_purge > 60:
                self._last_purge = now
                self.store.purge(now)
        if self.scs is not None:
            out += self._scs_effects(self.scs.tick(now), now)
        if self.throttle is not None:
            out += self.throttle.tick(now)
        return out

    def take_http(self) -> list[HttpPost]:
        out, self.http_out = self.http_out, []
        return out

    # --- admission (X.1124) ------------------------------------------------------------

    def _servers(self):
        from controller.admission.binding import Server
        return [Server(h.name, h.ip) for h in self.topology.servers()] if self.topology else []

    def _binding_flows(self, b: dict) -> list[Message]:
        from controller.admission.binding import binding_flows
        return binding_flows(b["number"], b["port"], b["mac"], b.get("ip"), b["group"],
                             self.authz, self._servers(), self.ctl_service)

    def _index_binding(self, b: dict) -> None:
        self._bound[(b["dpid"], b["port"], b["mac"])] = b
        self._bound_port[(b["dpid"], b["port"])] = b["identity"]
        if b.get("ip"):
            self._bound_ip[b["ip"]] = b["identity"]

    def _unindex_binding(self, b: dict) -> None:
        self._bound.pop((b["dpid"], b["port"], b["mac"]), None)
        if self._bound_port.get((b["dpid"], b["port"])) == b["identity"]:
            del self._bound_port[(b["dpid"], b["port"])]
        if b.get("ip") and self._bound_ip.get(b["ip"]) == b["identity"]:
            del self._bound_ip[b["ip"]]

    def _address_at(self, dpid: int, port: int) -> str | None:
        """The IPv4 address a binding on (dpid, port) pins: the topology's host on that port;
        None (pin the first address the terminal uses) for a port the file does not name."""
        if self._host_at is None:
            t = self.topology
            self._host_at = {} if t is None else {
                (t.switch(h.switch).dpid, h.port): h.ip for h in t.hosts}
        return self._host_at.get((dpid, port))

    def _address_at_all(self) -> set[str]:
        """Every address the topology file gives a host (none of them is free to take)."""
        if self._host_ips is None:
            self._address_at(0, 0)
            self._host_ips = set(self._host_at.values())
        return self._host_ips

    def _pin_address(self, b: dict, frame: packet.Frame, now: float) -> Out:
        """First frame of a binding without a known address: pin its source address, unless
        that address belongs to someone else (another binding, a server, the controller)."""
        ip = frame.arp_spa if frame.arp_op is not None else frame.ipv4_src
        if not ip or ip == "0.0.0.0":
            self.counters["binding_unpinned_frame_dropped"] += 1
            return []
        t = self.topology
        taken = ip in self._bound_ip or (t is not None and (
            ip == t.service_ip or ip in self._address_at_all()))
        if taken or (frame.arp_op is not None and frame.arp_sha != b["mac"]):
            self.counters["attack_spoofed_first_address_dropped"] += 1
            self._warn(f"pin:{b['identity']}", "%s tried to take the address %s: dropped",
                       b["identity"], ip)
            return []
        b["ip"] = ip
        self._bound_ip[ip] = b["identity"]
        self.store.put_binding(b["identity"], ip=ip)
        self.counters["binding_address_pinned"] += 1
        self.audit.write({"event": "binding_address", "identity": b["identity"], "ip": ip,
                          "dpid": b["dpid"], "port": b["port"], "mac": b["mac"]})
        out: Out = [(b["dpid"], m) for m in self._binding_flows(b)]
        if self.scs is not None:
            self._indexes = None
            out += self._scs_effects(self.scs.connect(
                b["identity"], b["group"], ip, b["mac"], b["dpid"], b["port"], now), now)
        return out

    def _restored_session(self, b: dict):
        from controller.admission.authenticator import Session
        return Session(b["identity"], b["group"], b["isr_id"] or "", b"", b"",
                       b["start"] or 0.0, b["expires"], b["method"] or "")

    def _auth_effects(self, effects, now: float) -> Out:
        from controller.admission import authenticator as a
        from controller.admission.binding import revoke_flows
        from controller.admission.keys import purpose_key
        out: Out = []
        for e in effects:
            if isinstance(e, a.SendFrame):
                out.append((e.dpid, PacketOut(e.data, (Output(e.port),))))
            elif isinstance(e, a.Count):
                self.counters[e.name] += 1
            elif isinstance(e, a.Log):
                log.log(logging.getLevelName(e.level.upper()) if isinstance(e.level, str)
                        else e.level, "%s", e.text)
            elif isinstance(e, a.Admit):
                s = e.session
                prev = self.store.binding(s.identity)
                moved = prev is None or (prev["dpid"], prev["port"], prev["mac"]) != \
                    (e.dpid, e.port, e.mac)
                ip = self._address_at(e.dpid, e.port) or (None if moved else prev["ip"])
                if ip and self._bound_ip.get(ip, s.identity) != s.identity:
                    # a second station on a port whose address someone else holds: it
                    # must show an address of its own (first address seen, if free)
                    ip = None
                crs_key = purpose_key(s.emsk, "crs-report") if s.emsk else None
                number = self.store.put_binding(
                    s.identity, grp=s.group, dpid=e.dpid, port=e.port, mac=e.mac,
                    isr_id=s.isr_id, crs_key=crs_key, method=s.method, start=s.start,
                    expires=s.expires, ip=ip)
                if prev and prev["isr_id"] and prev["isr_id"] != s.isr_id:
                    self.eac.revoke(prev["isr_id"])
                if prev and moved:
                    self._unindex_binding(prev)
                    out += [(prev["dpid"], m) for m in revoke_flows(prev["number"])]
                self.eac.register(s)
                self.counters["dot1x_admitted"] += 1
                self.audit.write({"event": "authenticated", "identity": s.identity,
                                  "group": s.group, "dpid": e.dpid, "port": e.port,
                                  "mac": e.mac, "ip": ip, "isr_id": s.isr_id,
                                  "method": s.method, "expires": s.expires,
                                  "reauth": prev is not None})
                b = {"identity": s.identity, "number": number, "dpid": e.dpid, "port": e.port,
                     "mac": e.mac, "ip": ip, "group": s.group}
                self._index_binding(b)
                out += [(e.dpid, m) for m in self._binding_flows(b)]
                t = self.scs.terminals.get(s.identity) if self.scs is not None else None
                if self.scs is not None and ip and (moved or t is None or not t.online):
                    self._indexes = None
                    out += self._scs_effects(self.scs.connect(
                        s.identity, s.group, ip, e.mac, e.dpid, e.port, now), now)
            elif isinstance(e, a.Revoke):
                out += self._revoke(e.dpid, e.port, e.mac, e.reason, now)
        return out

    def _revoke(self, dpid: int, port: int, mac: str, reason: str, now: float) -> Out:
        from controller.admission.binding import revoke_flows
        out: Out = []
        for b in self.store.bindings_at(dpid, port, mac):
            self._unindex_binding(b)
            out += [(dpid, m) for m in revoke_flows(b["number"])]
            out += self.forwarding.forget(mac)
            if b["isr_id"]:
                self.eac.revoke(b["isr_id"])
            self.store.drop_binding(b["identity"])
            self.counters["dot1x_revoked"] += 1
            self.audit.write({"event": "revoked", "identity": b["identity"], "dpid": dpid,
                              "port": port, "mac": mac, "reason": reason})
            if self.scs is not None and b["identity"] in self.scs.terminals:
                self._indexes = None
                out += self._scs_effects(self.scs.leave(b["identity"], now, reason), now)
        return out

    def _ip_of(self, mac: str) -> str:
        if self.topology:
            for h in self.topology.hosts:
                if h.mac == mac:
                    return h.ip
        return ""

    def _first_contact(self, tid: str, frame: packet.Frame, now: float) -> Out:
        """Network evidence for the SCS: a terminal's first attempt to reach an address (an
        ARP request, or the first packet of a new host pair, both reach the controller).
        It is attributed to the terminal bound to the (switch, port) the frame came in on
        (its source address is pinned there). It succeeds when something lives at that
        address (a host of the topology or a bound terminal); a scanner of dark address
        space fails again and again."""
        if frame.arp_op == 1:
            dst = frame.arp_tpa
        elif frame.ipv4_src and frame.ipv4_dst:
            dst = frame.ipv4_dst
        else:
            return []
        t = self.scs.terminals.get(tid)
        if not dst or t is None or dst == t.ip:
            return []
        live = dst in self._live_ips()
        return self._scs_effects(self.scs.observe_first_contact(tid, dst, live, now), now)

    def _live_ips(self) -> set[str]:
        return self._index()[1]

    def _index(self) -> tuple[dict[str, str], set[str]]:
        """Terminals by MAC and every live address; rebuilt only after a terminal attached,
        left or changed its address (packet-ins must not scan every terminal)."""
        if self._indexes is None:
            by_mac = {t.mac: t.tid for t in self.scs.terminals.values()}
            ips = {t.ip for t in self.scs.terminals.values() if t.ip and t.online}
            if self.topology:
                ips |= {h.ip for h in self.topology.hosts} | {self.topology.service_ip}
            self._indexes = (by_mac, ips)
        return self._indexes

    # --- reacting system (X.1125) -----------------------------------------------------

    def _report_key(self, tid: str) -> bytes | None:
        return self.store.crs_key(tid, self._now)

    def crsap_message(self, raw: bytes, now: float | None = None) -> tuple[int, bytes, Out]:
        """POST /crsap/v1/messages from an agent: (HTTP status, body, flows)."""
        from controller.crs import messages as crsap
        from controller.crs.scs import Reply
        now = self._now = time.time() if now is None else now
        if self.scs is None:
            return 503, b'{"error": "the reacting system is not enabled"}', []
        with self.store.batch():      # the decision is on disk before its flows leave
            before = self.scs.replay.accepted
            effects = self.scs.handle(None, raw, now)
            reply = next((e for e in effects if isinstance(e, Reply)), None)
            if self.scs.replay.accepted != before:   # every accepted message, Leave too
                sender = crsap.decode(raw).sender
                self.store.put_replay(sender, self.scs.replay.last_seq[sender])
            out = self._scs_effects(effects, now)
        if reply is not None:
            return 200, reply.payload, out
        if any(getattr(e, "name", "").startswith("crs_rejected") for e in effects):
            return 403, b'{"error": "rejected"}', out
        return 204, b"", out

    def _scs_effects(self, effects, now: float) -> Out:
        from controller.crs import nac
        from controller.crs import scs as s
        out: Out = []
        for e in effects:
            if isinstance(e, s.Enforce):
                self._persist(e.terminal_id)       # committed before the flows exist
                out += self._enforce(e.terminal_id)
            elif isinstance(e, s.Remove):
                self._persist(e.terminal_id)
                sw = self.switches.get(e.location.dpid)
                out += [(e.location.dpid, m) for m in
                        nac.release(e.location, sw.meters if sw else set())]
            elif isinstance(e, s.SealGroup):
                self.store.put_seal(e.group, e.sealed)
                out += self._seal(e.group, e.sealed)
            elif isinstance(e, s.SendUpdate):
                if e.ip:
                    self.http_out.append(HttpPost(f"http://{e.ip}:7125/crsap/v1/messages",
                                                  e.payload))
            elif isinstance(e, s.Audit):
                rec = dict(e.record)
                if rec.get("event") == "sci_report":
                    self.store.add_sci(rec["terminal"], now, rec.get("sci", {}))
                    self._persist(rec["terminal"])
                self.audit.write(rec)
            elif isinstance(e, s.Count):
                self.counters[e.name] += 1
            elif isinstance(e, s.Log):
                log.log(e.level if isinstance(e.level, int) else logging.INFO, "%s", e.text)
        if self.scs.corr.changes != self._evidence_saved:   # before the flows, like decisions
            self._evidence_saved = self.scs.corr.changes
            self.store.put_evidence(self.scs.corr.to_state())
        return out

    def _peers(self, group: str | None) -> list[str]:
        if self.topology and group:
            for c in self.topology.cells:
                if c.name == group:
                    return [c.subnet]
        return [t.ip for t in self.scs.terminals.values() if t.group == group and t.ip]

    def _enforce(self, tid: str) -> Out:
        from controller.crs import nac
        t = self.scs.terminals[tid]
        if t.decision is None or t.dpid not in self.switches:
            return []
        gen = self._gens.get(tid, 0) + 1
        self._gens[tid] = gen
        sw = self.switches[t.dpid]
        msgs = nac.hold(t.decision, t.location, self.svc, self._peers(t.group), gen, sw.meters)
        self.audit.write({"event": "flows", "terminal": tid, "dpid": t.dpid, "port": t.port,
                          "generation": gen, "messages": len(msgs),
                          "level": t.decision.level.value})
        return [(t.dpid, m) for m in msgs]

    def _group_index(self, group: str) -> int:
        if self.topology:
            for i, c in enumerate(self.topology.cells):
                if c.name == group:
                    return i + 1
        return 1000 + zlib.crc32(group.encode()) % 100000

    def _seal(self, group: str, sealed: bool, only_dpid: int | None = None) -> Out:
        """Group seal flows on every switch with members (or only `only_dpid`, rebuilding
        it under the current generation); a change moves to the next generation."""
        from controller.crs import nac
        from controller.crs.enforcement import group_seal_flows, group_unseal_flows
        idx = self._group_index(group)
        members = [t.location for t in self.scs.terminals.values()
                   if t.group == group and t.online]
        per_switch = nac.group_ports(members)
        if self.topology:   # a cell's switch is sealed even before its terminals attach
            for c in self.topology.cells:
                if c.name == group:
                    sw = self.topology.switch(c.switch)
                    ports = [self.topology.host(n).port for n in c.terminals]
                    per_switch[sw.dpid] = sorted(set(per_switch.get(sw.dpid, [])) | set(ports))
        pol = self.scs.policy.correlation
        if only_dpid is None:
            self._seal_gens[group] = self._seal_gens.get(group, 0) + 1
        gen = self._seal_gens.get(group, 0)
        out: Out = []
        for dpid, ports in per_switch.items():
            if dpid not in self.switches or (only_dpid is not None and dpid != only_dpid):
                continue
            if sealed:
                msgs = group_seal_flows(idx, ports, self._peers(group), self.svc,
                                        mode=pol.seal_mode, kbps=pol.seal_meter_kbps,
                                        gen=gen)
            else:
                msgs = group_unseal_flows(idx)
            out += [(dpid, m) for m in msgs]
        self.audit.write({"event": "seal_flows", "group": group, "sealed": sealed,
                          "switches": sorted(per_switch)})
        return out

    def _security_rebuild(self, dpid: int, sw: SwitchState) -> list[Message]:
        """Table 1 on (re)connect: base flow, then every stored decision and seal, added
        without deleting first (deleting a restriction would open access)."""
        from controller.crs import enforcement, nac
        msgs: list[Message] = list(enforcement.base_flows())
        if self.scs is None:
            return msgs
        for t in self.scs.terminals.values():
            if t.dpid != dpid or t.decision is None or not t.online:
                continue
            gen = self._gens.get(t.tid, 0)
            for m in nac.hold(t.decision, t.location, self.svc, self._peers(t.group), gen,
                              sw.meters):
                msgs.append(m)
                # The meter may have survived on the switch: never delete it (that would
                # remove the flows using it, and the restriction with them); add it, and
                # modify it to the wanted rate (one of the two fails harmlessly).
                if isinstance(m, MeterMod) and m.command == "add":
                    msgs.append(replace(m, command="modify"))
        for group in self.store.sealed_groups():
            msgs += [m for _, m in self._seal(group, True, only_dpid=dpid)]
        return msgs

    # --- SCS persistence ----------------------------------------------------------------

    def _persist(self, tid: str) -> None:
        from controller.crs import nac
        t = self.scs.terminals.get(tid)
        if t is None:
            return
        state = {"group": t.group, "ip": t.ip, "mac": t.mac, "dpid": t.dpid, "port": t.port,
                 "online": t.online, "own_level": t.own_level.value,
                 "own_reason": t.own_reason, "last_report": t.last_report,
                 "last_sci": t.last_sci, "gen": self._gens.get(tid, 0),
                 "override": [t.override.kind, t.override.kbps] if t.override else None}
        self.store.put_terminal(tid, t.number, state,
                                nac.decision_to_dict(t.decision) if t.decision else None)

    def _restore_scs(self) -> None:
        """After a restart: terminals, decisions, overrides, seals and replay counters."""
        from controller.crs import nac
        from controller.crs.control import Override
        from controller.crs.decision import Level
        from controller.crs.scs import Terminal
        for tid, number, st, dec in self.store.terminals():
            t = Terminal(tid, number, st["group"], st["ip"], st["mac"], st["dpid"], st["port"],
                         online=st["online"], own_level=Level(st["own_level"]),
                         own_reason=st["own_reason"], last_report=st["last_report"],
                         last_sci=st["last_sci"])
            if st.get("override"):
                t.override = Override(st["override"][0], st["override"][1])
            t.decision = nac.decision_from_dict(dec) if dec else None
            self.scs.terminals[tid] = t
            if t.online and t.ip:
                self.scs.by_ip[t.ip] = tid
            self._gens[tid] = st.get("gen", 0)
            self.scs._numbers = max(self.scs._numbers, number)
        self.scs.replay.last_seq.update(self.store.replay())
        self.scs.corr.sealed.update(self.store.sealed_groups())
        self.scs.corr.restore(self.store.evidence())
        self._evidence_saved = self.scs.corr.changes

    # --- operator API ------------------------------------------------------------------

    def terminals(self) -> list[dict[str, Any]]:
        sessions = {b["identity"]: b for b in self.store.bindings(self._now)}
        rows: dict[str, dict[str, Any]] = {}
        if self.scs is not None:
            for st in self.scs.status():
                rows[st["id"]] = {**st, "identity": st["id"]}
        for ident, b in sessions.items():
            row = rows.setdefault(ident, {"id": ident, "identity": ident, "dpid": b["dpid"],
                                          "port": b["port"], "mac": b["mac"],
                                          "ip": self._ip_of(b["mac"]), "level": None})
            row.update({"authenticated": True, "isr_id": b["isr_id"], "method": b["method"],
                        "session_expires": b["expires"], "group": b["group"]})
        for row in rows.values():
            row.setdefault("authenticated", False)
            row["name"] = row["identity"].split("@")[0]
        return sorted(rows.values(), key=lambda r: r["identity"])

    def resolve(self, who: str) -> str:
        """A terminal by identity, name (identity's local part), IP or MAC."""
        who = who.lower()
        for row in self.terminals():
            if who in (row["identity"].lower(), row["name"].lower(),
                       str(row.get("ip") or "").lower(), str(row.get("mac") or "").lower()):
                return row["identity"]
        raise ApiError(404, f"no terminal {who!r} (give its name, identity, IP or MAC)")

    def operator(self, action: str, who: str, body: dict[str, Any] | None = None,
                 now: float | None = None) -> tuple[dict[str, Any], Out]:
        now = self._now = time.time() if now is None else now
        if self.scs is None:
            raise ApiError(409, "the reacting system is not enabled (crs.enabled: false)")
        tid = self.resolve(who)
        if tid not in self.scs.terminals:
            raise ApiError(409, f"{tid} is authenticated but has not connected to the SCS")
        if action == "quarantine":
            effects = self.scs.quarantine(tid, now)
        elif action == "release":
            effects = self.scs.release(tid, now)
        elif action == "rate-limit":
            kbps = (body or {}).get("kbps")
            if not isinstance(kbps, int) or isinstance(kbps, bool) or not 8 <= kbps <= 10**7:
                raise ApiError(400, "rate-limit needs {\"kbps\": integer 8..10000000}")
            effects = self.scs.rate_limit(tid, kbps, now)
        else:
            raise ApiError(404, f"unknown action {action!r}")
        out = self._scs_effects(effects, now)
        self._persist(tid)
        row = next(r for r in self.terminals() if r["identity"] == tid)
        return row, out

    def policy_show(self) -> dict[str, Any]:
        if self.scs is None:
            raise ApiError(409, "the reacting system is not enabled")
        p = self.scs.policy
        return {"version": p.version, "source": str(p.source),
                "file": self.settings.crs_policy_file}

    def policy_reload(self, now: float | None = None) -> tuple[dict[str, Any], Out]:
        from controller.config import ConfigError
        from controller.crs.policy import reload
        now = self._now = time.time() if now is None else now
        if self.scs is None:
            raise ApiError(409, "the reacting system is not enabled")
        new = reload(self.settings.crs_policy_file)
        if isinstance(new, ConfigError):
            raise ApiError(400, "policy not reloaded; the old one stays in force",
                           problems=str(new).splitlines())
        self.store.add_policy(new.version, str(new.source))
        out = self._scs_effects(self.scs.reload(new, now), now)
        return self.policy_show(), out

    def eac_request(self, method: str, path: str, body: bytes,
                    now: float | None = None) -> tuple[int, dict[str, Any]]:
        from controller.admission import eac_rest
        now = self._now = time.time() if now is None else now
        if self.eac is None:
            return 409, {"error": "authentication is not enabled (admission.mode: open)"}
        return eac_rest.handle(method, path, body, now, self.eac)

    def _redirected(self, dpid: int, in_port: int) -> bool:
        if self.scs is None:
            return False
        return any(t.dpid == dpid and t.port == in_port and t.decision is not None
                   and t.decision.redirect_web for t in self.scs.terminals.values())

    def _redirect(self, dpid: int, in_port: int, frame: packet.Frame, data: bytes) -> Out:
        """First packet of a redirected web connection: rewrite it to the update portal."""
        from controller.crs.enforcement import redirect_connection_flows
        t = next((t for t in self.scs.terminals.values()
                  if t.dpid == dpid and t.port == in_port and t.online), None)
        if t is None or frame.ipv4_dst is None or frame.l4_src is None:
            self.counters["redirect_unknown"] += 1
            return []
        flows = redirect_connection_flows(t.location, self.svc, frame.ipv4_dst, frame.l4_src,
                                          frame.dst)
        self.counters["redirected_connections"] += 1
        return [(dpid, m) for m in flows] + [(dpid, PacketOut(data, (Output(OFPP_TABLE),),
                                                               in_port))]

    def _state_sizes(self) -> dict[str, int]:
        """How much per-source state the controller holds: bounded by terminals, never by
        the addresses frames or reports claim (an operator's check against memory floods)."""
        sizes = {"bindings": len(self._bound), "log_keys": len(self._log_budget)}
        if self.auth is not None:
            sizes["dot1x_conversations"] = len(self.auth.convs)
        if self.scs is not None:
            c = self.scs.corr
            sizes.update(terminals=len(self.scs.terminals), evidence_accused=len(c.accusations),
                         evidence_first_contacts=len(c._seen),
                         evidence_scan_flags=len(c.scan_until))
        return sizes

    def status(self) -> dict[str, Any]:
        return {
            "switches": sorted(self.switches),
            "admission": "open" if self.mode.open else "authenticate",
            "crs": self.scs is not None,
            "throttle": self.throttle is not None,
            "counters": {**self.counters, **(self.throttle.counters if self.throttle else {}),
                         **(self.eac.counters if self.eac else {})},
            "hosts_learned": {f"{d:016x}": len(t) for d, t in self.forwarding.macs.items()},
            "state_sizes": self._state_sizes(),
            # the EAC's only SP-challenge state (bounded; issuing a challenge adds nothing)
            "eac_spent_challenges": self.eac.spent_challenges() if self.eac else 0,
        }
