"""Table 0's owner (X.1124): the 802.1X authenticator, the EAC and the admission bindings.

A binding is (switch, port, MAC, IPv4): it is written to table 0 when EAP succeeds, pinned to
the topology's address for that port (or to the first free address the terminal uses), held
by the authenticator (Logoff, port down, expiry and, after a restart, a re-authentication
within the grace time) and revoked by one cookie-masked delete. Pre-authentication ARP for
the service address is answered here. The owner writes only table 0; what other owners must
learn (a terminal admitted, moved, revoked, or its address pinned) goes to the core through
`notify`, which returns the flows those owners need.
"""
from __future__ import annotations

import logging
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

from controller import metrics, packet
from controller.admission import authenticator as auth_mod
from controller.admission import local_port
from controller.admission.authenticator import Authenticator, Session, Timers
from controller.admission.authorization import load_authorization
from controller.admission.binding import (
    ControllerService,
    Server,
    binding_flows,
    preauth_flows,
    revoke_flows,
)
from controller.admission.credentials import load_credentials
from controller.admission.eac import Eac
from controller.admission.keys import purpose_key
from controller.admission.radius import RadiusClient, SendRadius
from controller.audit import AuditLog
from controller.effects import COMMON, LogBudget, Out
from controller.openflow.ofmsg import Barrier, FlowMod, LocalFrame, Message, Output, PacketOut
from controller.openflow.tables import ETH_DST, FORWARDING
from controller.pipeline import MAX_METERED_PORT, AdmissionMode, eapol_port_flows
from controller.records import Binding
from controller.settings import Loaded, Settings
from controller.settings import validate as validate_settings
from controller.store import Store
from controller.topology import Topology, toward_services


@dataclass(frozen=True)
class Connected:
    """A terminal with a known address is admitted (new, moved, or back after a revocation):
    the security owner must (re)connect it."""

    binding: Binding
    moved: bool


@dataclass(frozen=True)
class Revoked:
    """A binding ended: forwarding forgets the MAC, the security owner the terminal."""

    binding: Binding
    reason: str


Event = Connected | Revoked
LOCAL_FLOW_SETTLE_S = 0.5     # answers by packet-out this long after a port's LOCAL flows
Notify = Callable[[Event, float], Out]


def trusted_ports(t: Topology | None) -> dict[int, set[int]]:
    """Ports whose traffic is admitted without 802.1X: inter-switch links, servers and the
    controller's service address (all from the topology file)."""
    if t is None:
        return {}
    ports = t.infra_ports()
    for h in t.servers():
        ports.setdefault(t.switch(h.switch).dpid, set()).add(h.port)
    ports.setdefault(t.switch(t.service_switch).dpid, set()).add(t.service_port)
    return ports


class Admission:
    def __init__(self, settings: Settings, topology: Topology | None, store: Store,
                 audit: AuditLog, counters: Counter, common: Callable, notify: Notify,
                 mode: AdmissionMode, now: float, loaded: Loaded | None = None):
        self.settings, self.topology, self.store, self.audit = settings, topology, store, audit
        self.counters, self.common, self.notify, self.mode = counters, common, notify, mode
        self.trusted = trusted_ports(topology)
        self.warn = LogBudget(logging.getLogger("crs.admission"))
        creds = (loaded and loaded.credentials) or load_credentials(settings.credentials_file)
        self.authz = (loaded and loaded.authorization) or \
            load_authorization(settings.authorization_file)
        mac = topology.service_mac if topology else "02:00:00:00:ff:fe"
        self.auth = Authenticator(creds, mac, Timers(
            session_s=settings.session_s, reauth_margin_s=min(60.0, settings.session_s / 3)),
            relay=self._radius_client(settings, loaded),
            radius_group=settings.radius_default_group)
        self.auth.groups = frozenset(self.authz.groups)
        self.radius_out: list[SendRadius] = []     # datagrams for the shell's RADIUS socket
        self.eac = Eac(store, creds, self.authz, grant_s=settings.sp_grant_s)
        self.ctl_service = ControllerService(topology.service_ip, topology.service_mac,
                                             (settings.service_port,)) if topology else None
        self.servers = [Server(h.name, h.ip) for h in topology.servers()] if topology else []
        # per edge switch: the switches its terminals' first flows cross (to the servers and
        # the controller service); the others' forwarding flows may follow table 0's
        self._first_hops = toward_services(topology) if topology else {}
        self._host_at = {} if topology is None else {
            (topology.switch(h.switch).dpid, h.port): h.ip for h in topology.hosts}
        self._host_ips = set(self._host_at.values())
        # roaming: a terminal of another CRS domain keeps its address here, with its MAC
        self._roamers = {} if topology is None else {
            h.ip: h.mac for h in topology.terminals()
            if topology.switch(h.switch).dpid in topology.foreign_dpids(settings.domain)}
        # active bindings, indexed for the packet path: by (dpid, port, mac) and by address
        self.bound: dict[tuple[int, int, str], Binding] = {}
        self._by_ip: dict[str, str] = {}
        self._mac_owner: dict[str, str] = {}     # MAC -> identity of its live binding
        # MACs no terminal may authenticate with: the topology's servers, the controller
        self._reserved_macs = {m.lower() for m in
                               ([mac] + [h.mac for h in topology.servers()] if topology
                                else [mac])}
        for b in store.bindings(now):
            self._index(b)
        self._last_purge = self._last_expiry_check = now
        # switches whose EAPOL goes through their LOCAL port, and the ports whose flows for
        # it are installed (answers to other ports leave as packet-outs)
        self.local: set[int] = set()
        self._mac_bytes = bytes.fromhex(self.auth.mac.replace(":", ""))
        # set by the shell: sends frames that need no commit at once (ahead of outputs
        # waiting for a disk sync), without yielding to anything that could call the core
        # meanwhile; False: it could not (they wait)
        self.early: Callable[[Out], bool] | None = None
        # (dpid, port) -> when answers may take the LOCAL port: the port's return flow goes
        # to the switch over OpenFlow, an answer over the LOCAL interface, and the answer
        # must not overtake the flow (it would be dropped, and wait for a retransmission).
        # Until then answers leave by packet-out, which always works.
        self._local_ports: dict[tuple[int, int], float] = {}

    # --- events ----------------------------------------------------------------------

    def switch_up(self, dpid: int, now: float,
                  local: bool = False) -> tuple[list[Message], Out]:
        """Table 0's flows of a (re)connecting switch after its base flows, and the
        re-authentication requests of the bindings on it (restored after a restart).
        `local`: the switch's EAPOL goes through its LOCAL port from now on."""
        self._local_ports = {k: t for k, t in self._local_ports.items() if k[0] != dpid}
        if local:
            self.local.add(dpid)
        else:
            self.local.discard(dpid)
        svc_ip = self.topology.service_ip if (self.settings.preauth_arp_to_service
                                              and self.topology) else None
        msgs = preauth_flows(svc_ip)
        out: Out = []
        for b in self.store.bindings(now):
            if b.dpid == dpid:
                msgs += self._flows(b)
                session = Session(b.identity, b.group, b.isr_id or "", b"", b"", b.start or 0.0,
                                  b.expires, b.method or "")
                out += self._auth(self.auth.restore(dpid, b.port, b.mac, session, now,
                                                    self.settings.restore_grace_s), now)
        return msgs, out

    def port_up(self, dpid: int, port: int, now: float, direct: bool = False) -> Out:
        """`direct`: the shell reads this edge port's own interface (`eapol_transport:
        port`, `local_port.from_port`); its EAPOL then stops at the switch, and answers
        leave as LOCAL frames at once (the shell writes them on the port)."""
        return self.port_transport(dpid, port, now, direct) + \
            self._auth(self.auth.port_up(dpid, port, now), now)

    def port_transport(self, dpid: int, port: int, now: float, direct: bool) -> Out:
        """A port's EAPOL flows for its transport (`port_up`), and nothing else: when the
        shell stops reading a port (its socket failed) the port's authentication state,
        its sessions and hold-off, stay as they are."""
        if port in self.trusted.get(dpid, ()):
            return []
        local = dpid in self.local
        direct = direct and local
        flows = eapol_port_flows(
            self.mode, port, self.auth.mac if local else None,
            direct if local and self.settings.eapol_transport == "port" else None)
        if local and flows:     # (no flows for a port beyond the metered range)
            self._local_ports[(dpid, port)] = now + (0 if direct else LOCAL_FLOW_SETTLE_S)
        return [(dpid, m) for m in flows]

    def port_down(self, dpid: int, port: int, now: float) -> Out:
        return self._auth(self.auth.port_down(dpid, port, now), now)

    def eapol(self, dpid: int, port: int, data: bytes, now: float) -> Out:
        return self._auth(self.auth.handle_frame(dpid, port, data, now), now, exchange=True)

    def radius_datagram(self, host: str, port: int, data: bytes, now: float) -> Out:
        """A datagram on the shell's RADIUS socket (admission.backend: radius)."""
        return self._auth(self.auth.handle_radius(host, port, data, now), now, exchange=True)

    def take_radius(self) -> list[SendRadius]:
        out, self.radius_out = self.radius_out, []
        return out

    @staticmethod
    def _radius_client(settings: Settings, loaded: Loaded | None) -> RadiusClient | None:
        if settings.admission_backend != "radius":
            return None
        servers = loaded.radius if loaded and loaded.radius else \
            validate_settings(settings).radius
        return RadiusClient(servers, settings.radius_timeout_s, settings.radius_retries,
                            settings.radius_dead_s, settings.radius_nas_identifier)

    def tick(self, now: float) -> Out:
        out = self._auth(self.auth.tick(now), now)
        if now - self._last_expiry_check >= 1.0:
            self._last_expiry_check = now
            for b in self.store.expired_bindings(now):
                out += self._revoke(b.dpid, b.port, b.mac, "session expired", now)
        if now - self._last_purge > 60:
            self._last_purge = now
            self.store.purge(now)
        return out

    def punt(self, dpid: int, port: int, frame: packet.Frame, now: float) -> Out:
        """Table 0 sent this through the punt meter: a pre-auth ARP request for the service
        address (answered here, never forwarded), the first frame of a binding whose address
        is not known yet (pinned), or a bound terminal's frame with a source it does not own
        (counted and dropped)."""
        b = self.bound.get((dpid, port, frame.src))
        if b is not None and b.ip is None:
            return self._pin(b, frame, now)
        t = self.topology
        if (frame.arp_op == 1 and t is not None and frame.arp_tpa == t.service_ip
                and frame.arp_spa != t.service_ip and frame.arp_sha == frame.src
                and port not in self.trusted.get(dpid, ())
                and (b is None or frame.arp_spa == b.ip)):
            self.counters["preauth_arp_answered"] += 1
            reply = packet.arp_reply(t.service_mac, t.service_ip, frame.src,
                                     frame.arp_spa or "0.0.0.0")
            return [(dpid, PacketOut(reply, (Output(port),)))]
        if b is None:
            self.counters["attack_preauth_frame_dropped"] += 1
            return []
        if (frame.ipv4_src == b.ip and frame.arp_op is None) or \
                (frame.arp_op is not None and frame.arp_spa == b.ip and frame.arp_sha == b.mac):
            # its own address: the frame overtook the binding's allow flows (they are sent
            # after the punt); dropped, not an attack
            self.counters["binding_frame_before_flows_dropped"] += 1
            return []
        kind = "arp" if frame.arp_op is not None else "ip" if frame.ipv4_src else "other"
        self.counters[f"attack_spoofed_{kind}_dropped"] += 1
        self.warn(now, f"spoof:{b.identity}", "%s on %x:%d sent a %s frame as %s (bound to %s):"
                  " dropped", b.identity, dpid, port, kind,
                  frame.arp_spa or frame.ipv4_src or hex(frame.eth_type), b.ip)
        return []

    def local_frames(self, dpid: int, frames: list[bytes], now: float) -> Out:
        """Frames read together from `dpid`'s LOCAL port. Several: one transaction, so the
        admissions among them share one disk sync (50 terminals re-authenticating at once
        would otherwise queue behind 50 syncs); each frame in a savepoint, so a failure
        costs that frame alone. Their EAP Successes still leave before the commit, their
        flows after it."""
        out: Out = []
        if len(frames) > 1:
            self.counters["eapol_local_grouped"] += len(frames)
        with self.store.batch() if len(frames) > 1 else nullcontext():
            for data in frames:
                got = self.from_local(dpid, data)
                self.counters["eapol_local" if got else "eapol_local_refused"] += 1
                if got is None:
                    continue
                if len(frames) == 1:
                    return self.eapol(dpid, *got, now)
                try:
                    with self.store.savepoint():
                        out += self.eapol(dpid, *got, now)
                except Exception:   # a bug on one frame: the others of the read go on
                    self.counters["eapol_frame_failed"] += 1
                    logging.getLogger("crs.admission").exception(
                        "switch %016x: EAPOL frame failed; its changes were rolled back",
                        dpid)
        return out

    def from_local(self, dpid: int, data: bytes) -> tuple[int, bytes] | None:
        """(edge port, frame) of a frame read from `dpid`'s LOCAL port; None unless the
        switch wrote it there, for an edge port. The port MAC is written by the switch's
        flows alone, and those exist for edge ports only; they may predate this
        controller's own port list (a takeover, a restart: the switch keeps its flows
        until its ports are listed again), so a frame is taken before that list arrives
        and answered by packet-out until then."""
        got = local_port.from_switch(data, self._mac_bytes) if dpid in self.local else None
        if got is None or got[0] in self.trusted.get(dpid, ()) or \
                got[0] > MAX_METERED_PORT:
            return None
        return got

    def local_interfaces(self) -> dict[int, str]:
        """dpid -> the host interface of its LOCAL port (the switch's name), when EAPOL
        goes that way (`admission.eapol_transport: local`, and `port` for the ports the
        shell cannot read directly)."""
        t = self.topology
        if self.settings.eapol_transport not in ("local", "port") or t is None:
            return {}
        return {s.dpid: s.name for s in t.switches}

    # --- queries ---------------------------------------------------------------------

    def edge(self, dpid: int, port: int) -> bool:
        return port not in self.trusted.get(dpid, ())

    def bindings(self, now: float) -> Iterator[Binding]:
        return self.store.bindings(now)

    def sizes(self) -> dict[str, int]:
        return {"bindings": len(self.bound), "dot1x_conversations": len(self.auth.convs),
                "log_keys": len(self.warn.keys)}

    # --- internals -------------------------------------------------------------------

    def _services_first(self, out: Out, edge: int) -> tuple[Out, Out]:
        """Split what a new binding's neighbours return into what must precede its table-0
        flows and what may follow them. Before: everything but forwarding flows, wherever
        (restrictions, seals), and the forwarding flows of the switches between the edge and
        the servers and the controller service, so a terminal's first frames to them cross
        no switch that does not know it yet. After: the other switches' forwarding flows
        (on mobile_core six messages fewer encoded and written before table 0's). A frame
        to a host behind those in that window misses their source table and is forwarded
        by the controller (`Forwarding.packet_in`): slower, never open."""
        near = self._first_hops.get(edge)
        if near is None:
            return out, []
        # a switch with a confirmation barrier among these keeps them all before it: its
        # flows after the barrier would count in its next confirmed batch
        keep = near | {dpid for dpid, m in out if isinstance(m, Barrier)}
        first: Out = []
        later: Out = []
        for dpid, m in out:
            fwd = isinstance(m, FlowMod) and m.table_id in _FORWARDING_TABLES
            (later if fwd and dpid not in keep else first).append((dpid, m))
        return first, later

    def _flows(self, b: Binding) -> list[Message]:
        return binding_flows(*_flow_inputs(b), self.authz, self.servers, self.ctl_service)

    def _index(self, b: Binding) -> None:
        self.bound[b.location] = b
        self._mac_owner[b.mac] = b.identity
        if b.ip:
            self._by_ip[b.ip] = b.identity

    def _unindex(self, b: Binding) -> None:
        self.bound.pop(b.location, None)
        if self._mac_owner.get(b.mac) == b.identity:
            del self._mac_owner[b.mac]
        if b.ip and self._by_ip.get(b.ip) == b.identity:
            del self._by_ip[b.ip]

    def _pin(self, b: Binding, frame: packet.Frame, now: float) -> Out:
        """First frame of a binding without a known address: pin its source address, unless
        that address belongs to someone else (another binding, a host of the topology, the
        controller)."""
        ip = frame.arp_spa if frame.arp_op is not None else frame.ipv4_src
        if not ip or ip == "0.0.0.0":
            self.counters["binding_unpinned_frame_dropped"] += 1
            return []
        t = self.topology
        taken = ip in self._by_ip or (t is not None and (ip == t.service_ip or (
            ip in self._host_ips and self._roamers.get(ip) != b.mac.lower())))
        if taken or (frame.arp_op is not None and frame.arp_sha != b.mac):
            self.counters["attack_spoofed_first_address_dropped"] += 1
            self.warn(now, f"pin:{b.identity}", "%s tried to take the address %s: dropped",
                      b.identity, ip)
            return []
        b = replace(b, ip=ip)
        self._index(b)
        self.store.put_binding(b.identity, ip=ip)
        self.counters["binding_address_pinned"] += 1
        self.audit.write({"event": "binding_address", "identity": b.identity, "ip": ip,
                          "dpid": b.dpid, "port": b.port, "mac": b.mac})
        first, later = self._services_first(self.notify(Connected(b, True), now), b.dpid)
        return first + [(b.dpid, m) for m in self._flows(b)] + later

    def _auth(self, effects: list, now: float, exchange: bool = False) -> Out:
        """`exchange`: the answer to a terminal's frame (or the RADIUS server's), not frames
        that must follow flows made with them (a switch's or a port's restore)."""
        first = next((i for i, e in enumerate(effects)
                      if isinstance(e, (auth_mod.Admit, auth_mod.Revoke))), None)
        if first is None:
            out = self._auth_effects(effects, now)
            # an exchange's own frames (requests, a failure that revokes nothing) grant
            # nothing and tell of no commit: they need not wait for another decision's
            # disk sync (`ryu_shell.durable`) either
            if exchange and out and self.early is not None and self.early(out):
                return []
            return out
        head: Out = []
        if self.early is not None and first:
            # the frames before an admission (the EAP Success) grant nothing by themselves:
            # they leave now if the shell can send them at once, not after the commit the
            # binding's flows must wait for
            head, effects = self._auth_effects(effects[:first], now), effects[first:]
            if self.early(head):
                head = []
        with self.store.batch():   # the binding and what follows it: one commit
            return head + self._auth_effects(effects, now)

    def _auth_effects(self, effects: list, now: float) -> Out:
        out: Out = []
        for e in effects:
            if isinstance(e, auth_mod.SendFrame):
                if now >= self._local_ports.get((e.dpid, e.port), float("inf")):
                    out.append((e.dpid, LocalFrame(local_port.to_switch(e.data, e.port))))
                else:
                    out.append((e.dpid, PacketOut(e.data, (Output(e.port),))))
            elif isinstance(e, SendRadius):
                self.radius_out.append(e)
            elif isinstance(e, auth_mod.Admit):
                metrics.observe("eap_exchange", e.took_s)
                out += self._admit(e, now)
            elif isinstance(e, auth_mod.Revoke):
                out += self._revoke(e.dpid, e.port, e.mac, e.reason, now)
            elif isinstance(e, COMMON):
                self.common(e)
        return out

    def _admit(self, e: auth_mod.Admit, now: float) -> Out:
        s = e.session
        owner = self._mac_owner.get(e.mac)
        if e.mac.lower() in self._reserved_macs or (owner is not None and owner != s.identity):
            # someone else's MAC (another subscriber's live binding, a server, the
            # controller): admitting it would move that host's traffic here. Nothing is
            # installed; the EAP Success already sent gives no access.
            self.counters["attack_mac_in_use_refused"] += 1
            self.warn(now, f"mac:{e.mac}", "%s authenticated on %x:%d with %s, which is in "
                      "use by %s: not admitted", s.identity, e.dpid, e.port, e.mac,
                      owner or "a host of the topology")
            self.audit.write({"event": "admission_refused", "identity": s.identity,
                              "dpid": e.dpid, "port": e.port, "mac": e.mac,
                              "reason": "MAC in use"})
            return []
        prev = self.store.binding(s.identity)
        moved = prev is None or prev.location != (e.dpid, e.port, e.mac)
        ip = self._host_at.get((e.dpid, e.port)) or (None if moved else prev.ip)
        if ip and self._by_ip.get(ip, s.identity) != s.identity:
            # a second station on a port whose address someone else holds: it must show
            # an address of its own (first address seen, if free)
            ip = None
        crs_key = purpose_key(s.emsk, "crs-report") if s.emsk else None
        number = self.store.put_binding(
            s.identity, grp=s.group, dpid=e.dpid, port=e.port, mac=e.mac, isr_id=s.isr_id,
            crs_key=crs_key, method=s.method, start=s.start, expires=s.expires, ip=ip)
        out: Out = []
        if prev and prev.isr_id and prev.isr_id != s.isr_id:
            self.eac.revoke(prev.isr_id)
        if prev and moved:
            self._unindex(prev)
            out += [(prev.dpid, m) for m in revoke_flows(prev.number)]
        self.eac.register(s)
        self.counters["dot1x_admitted"] += 1
        self.audit.write({"event": "authenticated", "identity": s.identity, "group": s.group,
                          "dpid": e.dpid, "port": e.port, "mac": e.mac, "ip": ip,
                          "isr_id": s.isr_id, "method": s.method, "expires": s.expires,
                          "reauth": prev is not None})
        b = Binding(s.identity, number, s.group, e.dpid, e.port, e.mac, s.isr_id, crs_key,
                    s.method, s.start, s.expires, ip)
        self._index(b)
        later: Out = []
        if ip:      # restrictions and forwarding first, admission last: the first frame
            # admitted finds them in place (forwarding: on the switches toward the servers;
            # the others' forwarding flows follow table 0's, `_services_first`)
            first, later = self._services_first(self.notify(Connected(b, moved), now), e.dpid)
            out += first
        # a binding's flows are a function of these (and the configuration both share)
        if moved or prev is None or _flow_inputs(b) != _flow_inputs(prev):
            out += [(e.dpid, m) for m in self._flows(b)]
        else:       # a re-authentication in place: the switch holds these flows already
            self.counters["dot1x_reauth_flows_kept"] += 1
        return out + later

    def _revoke(self, dpid: int, port: int, mac: str, reason: str, now: float) -> Out:
        out: Out = []
        for b in self.store.bindings_at(dpid, port, mac):
            self._unindex(b)
            out += [(dpid, m) for m in revoke_flows(b.number)]
            if b.isr_id:
                self.eac.revoke(b.isr_id)
            self.store.drop_binding(b.identity)
            self.counters["dot1x_revoked"] += 1
            self.audit.write({"event": "revoked", "identity": b.identity, "dpid": dpid,
                              "port": port, "mac": mac, "reason": reason})
            out += self.notify(Revoked(b, reason), now)
        return out


_FORWARDING_TABLES = frozenset({FORWARDING.table_id, ETH_DST.table_id})


def _flow_inputs(b: Binding) -> tuple[Any, ...]:
    """What of a binding its flows depend on (`binding_flows`' own arguments)."""
    return b.number, b.port, b.mac, b.ip, b.group
