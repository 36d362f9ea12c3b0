"""The IEEE 802.1X authenticator + EAP server for many (dpid, port, mac) at once, pure.

The Ryu shell feeds it packet-in bytes, port events and a clock; it returns effects
(frames to send, admit/revoke decisions, counters, log lines). It never sends anything
itself, so every behaviour (retransmission, hold-off, re-authentication) is a unit test.

Re-authentication runs while the current session stays admitted: access is revoked only
when the new exchange fails or the old session expires first.

With a RADIUS back end (`relay`, admission.backend: radius) this stays the authenticator
(EAPOL, the Identity exchange, retransmission to the terminal, Success/Failure, bindings)
and the EAP method runs at the RADIUS server: each response after the Identity goes to
`relay` (radius.RadiusClient), each Access-Challenge's EAP back to the terminal; an
Access-Accept with the MSK admits with keys derived from it (keys.radius_key_root), a
reject or no answer from any server fails the exchange (fail closed). A re-authentication
that no server answered keeps the session until it expires.
"""
from __future__ import annotations

import heapq
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Union

from controller.effects import Count, Log

from .eap_md5 import Md5Server
from .eap_psk import PskServer
from .eapol import (
    PAE_GROUP_ADDR,
    Eap,
    EapCode,
    EapolType,
    EapType,
    MalformedFrame,
    build_eap,
    build_eap_frame,
    parse_eap,
    parse_frame,
)
from .keys import isr_id as derive_isr_id
from .keys import radius_key_root
from .radius import RadiusClient, RadiusResult, SendRadius, Station

Key = tuple[int, int, str]   # (dpid, port, mac)


@dataclass(frozen=True)
class Timers:
    """Protocol timers (seconds). Defaults suit an emulated network, not 802.1X's 30 s."""

    retransmit_s: float = 2.0         # a loaded terminal (200 starting at once) answers late
    max_retransmits: int = 4
    session_s: float = 3600.0
    reauth_margin_s: float = 60.0     # start re-authentication this long before expiry
    reauth_retry_s: float = 10.0      # after a re-authentication that got no answer
    holdoff_base_s: float = 1.0       # after the n-th failure: base * 2**(n-1), capped
    holdoff_max_s: float = 60.0
    start_burst: int = 3              # EAPOL-Start token bucket per port
    start_rate_per_s: float = 1.0


@dataclass(frozen=True)
class Session:
    identity: str
    group: str
    isr_id: str
    msk: bytes
    emsk: bytes
    start: float
    expires: float
    method: str


@dataclass(frozen=True)
class SendFrame:
    dpid: int
    port: int
    data: bytes


@dataclass(frozen=True)
class Admit:
    dpid: int
    port: int
    mac: str
    identity: str
    session: Session
    took_s: float = 0.0         # the exchange: its Request/Identity -> this Success


@dataclass(frozen=True)
class Revoke:
    dpid: int
    port: int
    mac: str
    reason: str


Effect = Union[SendFrame, Admit, Revoke, Count, Log, SendRadius]
# EAP method types named in the method of a session a RADIUS server authenticated
RADIUS_METHODS = {13: "tls", 21: "ttls", 25: "peap", 52: "pwd", 4: "md5", 47: "psk"}


@dataclass
class _Conv:
    """One station's authenticator state."""

    identifier: int
    state: str = "idle"                  # idle | identity | method
    request: bytes = b""                 # last request (EAP bytes), resent on timeout
    sent_at: float = 0.0
    retries: int = 0
    used_ids: deque = field(default_factory=lambda: deque(maxlen=16))
    identity: str = ""
    method: object | None = None
    method_name: str = ""
    nak_done: bool = False
    session: Session | None = None
    reauth: bool = False                 # the running exchange is a re-authentication
    next_reauth: float = 0.0
    reauth_by: float | None = None       # restored session: re-authenticate by then or go
    due_at: float | None = None          # the time of its entry in the timer heap
    begun: float = 0.0                   # when the running exchange began (Request/Identity)
    radius_state: bytes | None = None    # the RADIUS server's State, echoed
    eap_type: int = 0                    # the method the terminal last answered with


@dataclass
class _Port:
    up: bool = True
    failures: int = 0
    hold_until: float = 0.0
    tokens: float = 0.0
    token_time: float = 0.0


class Authenticator:
    """Per-station 802.1X authenticator state machines (see module doc)."""

    def __init__(self, credentials, controller_mac: str, timers: Timers | None = None,
                 rng: Callable[[int], bytes] = os.urandom, relay: RadiusClient | None = None,
                 radius_group: str = ""):
        """`relay`: run EAP methods at RADIUS servers (see module doc); `radius_group`:
        the group of a subscriber it admits unless the Access-Accept names a known one
        (Filter-Id) or the credentials file lists the identity."""
        self.creds = credentials
        self.relay, self.radius_group = relay, radius_group
        self.groups: frozenset[str] = frozenset()    # the authorization file's (Filter-Id)
        self.mac = controller_mac.lower()
        self.timers = timers or Timers()
        self.rng = rng
        self.convs: dict[Key, _Conv] = {}
        self.ports: dict[tuple[int, int], _Port] = {}
        # timers as a heap of (when, key): a tick looks only at conversations whose time
        # has come, never at all of them. Entries go stale when a conversation changes (a
        # newer one is pushed then); a stale one is skipped when it comes up.
        self._timers: list[tuple[float, Key]] = []
        self.timer_checks = 0        # conversations a tick looked at (tests, status)

    # --- public events ----------------------------------------------------------------

    def port_up(self, dpid: int, port: int, now: float) -> list[Effect]:
        """A port came up: fresh port state (no hold-off carried over)."""
        self.ports[(dpid, port)] = self._new_port(now)
        return [Log(logging.DEBUG, f"dot1x port up {dpid}:{port}")]

    def port_down(self, dpid: int, port: int, now: float) -> list[Effect]:
        """A port went down: every station on it loses access and state."""
        out: list[Effect] = []
        for key in [k for k in self.convs if k[:2] == (dpid, port)]:
            conv = self.convs.pop(key)
            self._forget(key)
            if conv.session is not None:
                out.append(Revoke(dpid, port, key[2], "port down"))
        self.ports.pop((dpid, port), None)
        return out

    def restore(self, dpid: int, port: int, mac: str, session: Session, now: float,
                grace_s: float) -> list[Effect]:
        """A session that survived a controller restart (from the store): Logoff and port
        down revoke it like a live one, and it must re-authenticate within `grace_s` (asked
        for at once) or it is revoked: whoever now sits on that port with that MAC must
        prove it holds the subscriber's key."""
        mac = mac.lower()
        key = (dpid, port, mac)
        if key in self.convs:
            return []
        conv = self.convs[key] = _Conv(identifier=self.rng(1)[0], session=session)
        conv.reauth_by = now + grace_s
        return [Count("dot1x_restored"),
                Log(logging.INFO, f"dot1x {session.identity} ({mac}) on {dpid}:{port} restored; "
                    f"re-authentication within {grace_s:g} s")] + \
            self._start(dpid, port, mac, now, reauth=True)

    def new_station(self, dpid: int, port: int, mac: str, now: float) -> list[Effect]:
        """Unknown MAC seen on an edge port: ask for its identity now, skipping the
        supplicant's own start delay. No-op if it is authenticated or mid-exchange."""
        mac = mac.lower()
        conv = self.convs.get((dpid, port, mac))
        if conv is not None and (conv.session is not None or conv.state != "idle"):
            return []
        if self._held(dpid, port, now):
            return [Count("dot1x_holdoff_drop")]
        return self._start(dpid, port, mac, now)

    def handle_frame(self, dpid: int, port: int, frame: bytes, now: float) -> list[Effect]:
        """One EAPOL frame from (dpid, port)."""
        out = self._handle_frame(dpid, port, frame, now)
        if len(frame) >= 12:
            self._schedule((dpid, port, ":".join(f"{b:02x}" for b in frame[6:12])))
        return out

    def _handle_frame(self, dpid: int, port: int, frame: bytes, now: float) -> list[Effect]:
        try:
            f = parse_frame(frame)
        except MalformedFrame as exc:
            return [Count("dot1x_malformed"),
                    Log(logging.DEBUG, f"dot1x {dpid}:{port} malformed: {exc.reason}")]
        if f.dst not in (PAE_GROUP_ADDR, self.mac):
            return [Count("dot1x_wrong_destination")]
        mac = f.src
        if f.type == EapolType.LOGOFF:
            return self._logoff(dpid, port, mac)
        if self._held(dpid, port, now):
            return [Count("dot1x_holdoff_drop")]
        if f.type == EapolType.START:
            if not self._take_start_token(dpid, port, now):
                return [Count("dot1x_start_ratelimited")]
            out: list[Effect] = [Count("dot1x_start")]
            conv = self.convs.get((dpid, port, mac))
            if conv is not None and conv.state != "idle":
                # A Start mid-exchange: the peer restarted; begin again with a new identifier.
                conv.state = "idle"
            return out + self._start(dpid, port, mac, now)
        if f.type == EapolType.KEY:
            return [Count("dot1x_key_ignored")]
        assert f.eap is not None
        return self._on_eap(dpid, port, mac, f.eap, f.body, now)

    def tick(self, now: float) -> list[Effect]:
        """Timers: retransmissions, give-ups, session expiry and re-authentication, for the
        conversations whose time has come (a heap: the cost is theirs, not everyone's)."""
        out: list[Effect] = []
        t = self.timers
        heap = self._timers
        due: list[Key] = []
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            conv = self.convs.get(key)
            if conv is None or conv.due_at != when:
                continue              # a conversation gone, or an entry replaced
            conv.due_at = None
            if self._due(conv) <= now:
                due.append(key)
            else:                     # its timer moved later meanwhile: wait for then
                self._schedule(key)
        for key in due:
            conv = self.convs[key]
            self.timer_checks += 1
            out += self._tick_one(key, conv, now, t)
            self._schedule(key)
        if self.relay is not None:
            out += self._radius(self.relay.tick(now), now)
        return out

    def handle_radius(self, host: str, port: int, data: bytes, now: float) -> list[Effect]:
        """A datagram on the RADIUS client's socket (from host:port)."""
        return self._radius(self.relay.datagram(host, port, data, now), now) \
            if self.relay is not None else [Count("radius_reply_unexpected")]

    def _due(self, conv: _Conv) -> float:
        """When this conversation's next timer fires (inf: none)."""
        t = self.timers
        s = conv.session
        when = float("inf")
        if s is not None:
            when = s.expires
            if conv.reauth_by is not None:
                when = min(when, conv.reauth_by)
        if conv.state == "server":          # the RADIUS client keeps that time
            return when
        if conv.state != "idle":
            return min(when, conv.sent_at + t.retransmit_s)
        if s is not None:
            when = min(when, conv.next_reauth)
        return when

    def _schedule(self, key: Key) -> None:
        """One live heap entry per conversation, at or before its next timer: a frame
        that changes nothing (or moves the timer later) pushes nothing, so what a terminal
        sends cannot grow the heap."""
        conv = self.convs.get(key)
        if conv is None:
            return
        when = self._due(conv)
        if when == float("inf") or (conv.due_at is not None and conv.due_at <= when):
            return
        conv.due_at = when
        heapq.heappush(self._timers, (when, key))

    def _tick_one(self, key: Key, conv: _Conv, now: float, t: Timers) -> list[Effect]:
        dpid, port, mac = key
        s = conv.session
        if s is not None and now >= s.expires:
            conv.session, conv.state, conv.reauth = None, "idle", False
            self.convs.pop(key, None)
            self._forget(key)
            return [Revoke(dpid, port, mac, "session expired"), Count("dot1x_session_expired")]
        if s is not None and conv.reauth_by is not None and now >= conv.reauth_by:
            self.convs.pop(key, None)
            self._forget(key)
            return [Revoke(dpid, port, mac, "not re-authenticated after a restart"),
                    Count("dot1x_restored_revoked")]
        if conv.state == "server":
            return []
        if conv.state != "idle":
            if now - conv.sent_at < t.retransmit_s:
                return []
            if conv.retries < t.max_retransmits:
                conv.retries += 1
                conv.sent_at = now
                return [SendFrame(dpid, port, build_eap_frame(mac, self.mac, conv.request)),
                        Count("dot1x_retransmit")]
            out: list[Effect] = [Count("dot1x_timeout"),
                                 Log(logging.INFO, f"dot1x {mac} on {dpid}:{port}: no answer")]
            if conv.reauth and s is not None:
                conv.state, conv.reauth = "idle", False
                conv.next_reauth = now + t.reauth_retry_s
            else:
                out.append(self._send(dpid, port, mac,
                                      build_eap(EapCode.FAILURE, conv.identifier)))
                self.convs.pop(key, None)
            return out
        if s is not None and now >= conv.next_reauth:
            return [Count("dot1x_reauth"), Log(logging.INFO, f"dot1x re-authenticating "
                                                             f"{s.identity}")] + \
                self._start(dpid, port, mac, now, reauth=True)
        return []

    def session(self, dpid: int, port: int, mac: str) -> Session | None:
        conv = self.convs.get((dpid, port, mac.lower()))
        return conv.session if conv else None

    # --- internals --------------------------------------------------------------------

    def _new_port(self, now: float) -> _Port:
        return _Port(tokens=float(self.timers.start_burst), token_time=now)

    def _port(self, dpid: int, port: int, now: float) -> _Port:
        p = self.ports.get((dpid, port))
        if p is None:
            p = self.ports[(dpid, port)] = self._new_port(now)
        return p

    def _held(self, dpid: int, port: int, now: float) -> bool:
        return now < self._port(dpid, port, now).hold_until

    def _take_start_token(self, dpid: int, port: int, now: float) -> bool:
        p = self._port(dpid, port, now)
        t = self.timers
        p.tokens = min(float(t.start_burst), p.tokens + (now - p.token_time) * t.start_rate_per_s)
        p.token_time = now
        if p.tokens < 1.0:
            return False
        p.tokens -= 1.0
        return True

    def _send(self, dpid: int, port: int, mac: str, eap: bytes) -> SendFrame:
        return SendFrame(dpid, port, build_eap_frame(mac, self.mac, eap))

    def _request(self, dpid: int, port: int, mac: str, conv: _Conv, eap: bytes,
                 now: float) -> Effect:
        conv.request, conv.sent_at, conv.retries = eap, now, 0
        return self._send(dpid, port, mac, eap)

    def _next_id(self, conv: _Conv) -> int:
        conv.used_ids.append(conv.identifier)
        conv.identifier = (conv.identifier + 1) & 0xFF
        return conv.identifier

    def _start(self, dpid: int, port: int, mac: str, now: float,
               reauth: bool = False) -> list[Effect]:
        key = (dpid, port, mac)
        conv = self.convs.get(key)
        if conv is None:
            conv = self.convs[key] = _Conv(identifier=self.rng(1)[0])
        ident = self._next_id(conv)
        conv.state, conv.method, conv.method_name, conv.nak_done = "identity", None, "", False
        conv.reauth, conv.begun = reauth or conv.session is not None, now
        out = [self._request(dpid, port, mac, conv,
                             build_eap(EapCode.REQUEST, ident, EapType.IDENTITY), now)]
        self._schedule(key)
        return out

    def _logoff(self, dpid: int, port: int, mac: str) -> list[Effect]:
        conv = self.convs.pop((dpid, port, mac), None)
        self._forget((dpid, port, mac))
        out: list[Effect] = [Count("dot1x_logoff")]
        if conv is not None and conv.session is not None:
            out.append(Revoke(dpid, port, mac, "logoff"))
        return out

    def _on_eap(self, dpid: int, port: int, mac: str, eap: Eap, raw: bytes,
                now: float) -> list[Effect]:
        conv = self.convs.get((dpid, port, mac))
        if eap.code != EapCode.RESPONSE:
            return [Count("dot1x_eap_unexpected_code")]
        if conv is None or conv.state == "idle":
            return [Count("dot1x_eap_unsolicited")]
        if conv.state == "server":     # its answer is at the RADIUS server already
            return [Count("dot1x_eap_while_server")]
        if eap.identifier != conv.identifier:
            if eap.identifier in conv.used_ids:
                return [Count("dot1x_eap_replay"),
                        Log(logging.DEBUG,
                            f"dot1x {mac}: old response id {eap.identifier} dropped")]
            return [Count("dot1x_eap_out_of_sequence")]
        if conv.state == "identity":
            if eap.type != EapType.IDENTITY:
                return [Count("dot1x_eap_unexpected_type")]
            return self._on_identity(dpid, port, mac, conv, eap, now)
        if conv.method_name == "radius":
            conv.eap_type = eap.type or 0
            return self._relay(dpid, port, mac, conv, raw, now)
        if eap.type == EapType.NAK:
            return self._on_nak(dpid, port, mac, conv, eap, now)
        if eap.type == EapType.PSK and conv.method_name == "psk":
            return self._on_psk(dpid, port, mac, conv, raw, now)
        if eap.type == EapType.MD5_CHALLENGE and conv.method_name == "md5":
            return self._on_md5(dpid, port, mac, conv, raw, now)
        return [Count("dot1x_eap_unexpected_type")]

    def _on_identity(self, dpid, port, mac, conv: _Conv, eap: Eap, now: float) -> list[Effect]:
        try:
            identity = eap.data.rstrip(b"\x00").decode()
        except UnicodeDecodeError:
            return self._fail(dpid, port, mac, conv, now, "identity is not UTF-8")
        if conv.reauth and conv.session is not None and identity != conv.session.identity:
            return self._fail(dpid, port, mac, conv, now,
                              f"re-authentication as {identity!r}, "
                              f"session is {conv.session.identity!r}")
        conv.identity = identity
        if self.relay is not None:
            conv.method_name, conv.radius_state = "radius", None
            return self._relay(dpid, port, mac, conv, eap.encode(), now)
        sub = self.creds.subscriber(identity)
        if sub is None:
            return self._fail(dpid, port, mac, conv, now, f"unknown identity {identity!r}")
        if sub.method == "md5" and sub.legacy:
            return self._begin_md5(dpid, port, mac, conv, now)
        return self._begin_psk(dpid, port, mac, conv, now)

    def _begin_psk(self, dpid, port, mac, conv: _Conv, now: float) -> list[Effect]:
        conv.state, conv.method_name = "method", "psk"
        conv.method = PskServer(self.creds.server_identity.encode(), self.creds.psk_keys,
                                rng=self.rng, expected_id_p=conv.identity.encode())
        return [self._request(dpid, port, mac, conv, conv.method.first(self._next_id(conv)), now)]

    def _begin_md5(self, dpid, port, mac, conv: _Conv, now: float) -> list[Effect]:
        conv.state, conv.method_name = "method", "md5"
        conv.method = Md5Server(self.creds.md5_secret(conv.identity), rng=self.rng)
        return [self._request(dpid, port, mac, conv, conv.method.first(self._next_id(conv)), now)]

    def _on_nak(self, dpid, port, mac, conv: _Conv, eap: Eap, now: float) -> list[Effect]:
        wanted = list(eap.data)
        sub = self.creds.subscriber(conv.identity)
        if (not conv.nak_done and conv.method_name == "psk" and EapType.MD5_CHALLENGE in wanted
                and sub is not None and sub.legacy and self.creds.md5_secret(conv.identity)):
            conv.nak_done = True
            return [Count("dot1x_nak_to_md5")] + self._begin_md5(dpid, port, mac, conv, now)
        return self._fail(dpid, port, mac, conv, now,
                          f"peer Nak, proposes {wanted}; none acceptable")

    def _on_psk(self, dpid, port, mac, conv: _Conv, raw: bytes, now: float) -> list[Effect]:
        res = conv.method.process(raw, (conv.identifier + 1) & 0xFF)
        if res.reply is not None and not res.done:
            self._next_id(conv)
            return [self._request(dpid, port, mac, conv, res.reply, now)]
        if not res.done:
            return [Count("dot1x_eap_method_drop"),
                    Log(logging.DEBUG, f"dot1x {mac}: {res.reason}")]
        if not res.success:
            # An ID_P that is not the EAP identity fails at PSK-2 (in PskServer): no PSK-3.
            extra: list[Effect] = [Count("dot1x_psk_id_mismatch")] if res.id_mismatch else []
            return self._fail(dpid, port, mac, conv, now, f"EAP-PSK: {res.reason}") + extra
        identity = res.id_p.decode(errors="replace")
        if identity != conv.identity:      # unreachable since the PSK-2 check; kept as a guard
            return self._fail(dpid, port, mac, conv, now,
                              f"EAP-PSK ID_P {identity!r} differs from identity {conv.identity!r}")
        return self._succeed(dpid, port, mac, conv, now, res.msk, res.emsk, "psk")

    def _on_md5(self, dpid, port, mac, conv: _Conv, raw: bytes, now: float) -> list[Effect]:
        res = conv.method.process(raw)
        if not res.done:
            return [Count("dot1x_eap_method_drop"),
                    Log(logging.DEBUG, f"dot1x {mac}: {res.reason}")]
        if not res.success:
            return self._fail(dpid, port, mac, conv, now, f"EAP-MD5: {res.reason}")
        return self._succeed(dpid, port, mac, conv, now, b"", b"", "md5")

    def _relay(self, dpid, port, mac, conv: _Conv, eap: bytes, now: float) -> list[Effect]:
        """Hand the terminal's EAP response to the RADIUS server; wait for its answer."""
        conv.state = "server"
        return self._radius(self.relay.request((dpid, port, mac), eap, conv.radius_state,
                                               conv.identity, Station(dpid, port, mac, self.mac),
                                               now), now)

    def _radius(self, effects: list, now: float) -> list[Effect]:
        """What the RADIUS client returned: its answers go to their conversations."""
        out: list[Effect] = []
        for e in effects:
            if not isinstance(e, RadiusResult):
                out.append(e)
                continue
            conv = self.convs.get(e.key)
            if conv is None or conv.state != "server":
                out.append(Count("radius_result_orphaned"))     # the exchange ended
                continue
            out += self._on_radius(*e.key, conv, e, now)
        return out

    def _on_radius(self, dpid, port, mac, conv: _Conv, r: RadiusResult,
                   now: float) -> list[Effect]:
        if r.code == "timeout" and conv.reauth and conv.session is not None:
            # the back end is down: the admitted terminal keeps its session until it
            # expires; re-authentication is tried again later
            conv.state, conv.reauth = "idle", False
            conv.next_reauth = now + self.timers.reauth_retry_s
            return [Count("dot1x_reauth_server_down"),
                    Log(logging.WARNING, f"dot1x {conv.identity} ({mac}): re-authentication "
                                         f"not possible, {r.reason}; session kept until it "
                                         "expires")]
        if r.code in ("timeout", "reject"):
            why = "fail closed" if r.code == "timeout" else f"from {r.server}"
            return self._fail(dpid, port, mac, conv, now, f"RADIUS: {r.reason}, {why}")
        try:
            eap = parse_eap(r.eap)
        except MalformedFrame as exc:
            return self._fail(dpid, port, mac, conv, now,
                              f"RADIUS {r.code} from {r.server} without valid EAP: {exc.reason}")
        if r.code == "challenge":
            if eap.code != EapCode.REQUEST:
                return self._fail(dpid, port, mac, conv, now, f"RADIUS Access-Challenge "
                                  f"from {r.server} carries EAP code {eap.code}")
            conv.used_ids.append(conv.identifier)
            conv.identifier, conv.radius_state, conv.state = eap.identifier, r.state, "method"
            return [self._request(dpid, port, mac, conv, r.eap, now)]
        if eap.code != EapCode.SUCCESS or r.reason:
            return self._fail(dpid, port, mac, conv, now,
                              f"RADIUS Access-Accept from {r.server}: "
                              f"{r.reason or 'EAP code %d, not Success' % eap.code}")
        if r.user_name is not None and r.user_name.rstrip("\x00") != conv.identity:
            # a tunnelled method (PEAP) authenticated an inner identity that is not the
            # EAP identity the session would get: admitting would bind someone else's name
            return self._fail(dpid, port, mac, conv, now,
                              f"RADIUS Access-Accept from {r.server} is for "
                              f"{r.user_name!r}, the EAP identity is {conv.identity!r}")
        method = "radius_" + RADIUS_METHODS.get(conv.eap_type, str(conv.eap_type))
        self._forget((dpid, port, mac))
        return self._succeed(dpid, port, mac, conv, now, r.msk, radius_key_root(r.msk),
                             method, r.filter_id)

    def _forget(self, key: Key) -> None:
        if self.relay is not None:
            self.relay.forget(key)

    def _group(self, identity: str, filter_id: str) -> str:
        """The subscriber's group: from the credentials file; with RADIUS, a Filter-Id of
        the Access-Accept that names a group of the authorization file comes first, and
        an identity the file does not list gets `radius_group`."""
        if self.relay is not None and filter_id in self.groups:
            return filter_id
        sub = self.creds.subscriber(identity)
        return sub.group if sub is not None else self.radius_group

    def _succeed(self, dpid, port, mac, conv: _Conv, now: float, msk: bytes, emsk: bytes,
                 method: str, filter_id: str = "") -> list[Effect]:
        t = self.timers
        isr = derive_isr_id(emsk) if emsk else ""
        session = Session(conv.identity, self._group(conv.identity, filter_id), isr, msk, emsk,
                          now, now + t.session_s, method)
        p = self._port(dpid, port, now)
        p.failures, p.hold_until = 0, 0.0
        conv.state, conv.method, conv.reauth, conv.session = "idle", None, False, session
        conv.reauth_by = None
        conv.next_reauth = max(now, session.expires - t.reauth_margin_s)
        return [self._send(dpid, port, mac, build_eap(EapCode.SUCCESS, conv.identifier)),
                Admit(dpid, port, mac, conv.identity, session, now - conv.begun),
                Count("dot1x_success"), Count(f"dot1x_success_{method}"),
                Log(logging.INFO, f"dot1x {conv.identity} ({mac}) authenticated "
                                  f"on {dpid}:{port} by {method}")]

    def _fail(self, dpid, port, mac, conv: _Conv, now: float, reason: str) -> list[Effect]:
        p = self._port(dpid, port, now)
        p.failures += 1
        t = self.timers
        hold = min(t.holdoff_base_s * 2 ** (p.failures - 1), t.holdoff_max_s)
        p.hold_until = now + hold
        out: list[Effect] = [self._send(dpid, port, mac,
                                        build_eap(EapCode.FAILURE, conv.identifier)),
                             Count("dot1x_failure"),
                             Count(f"dot1x_failure_{conv.method_name or 'none'}"),
                             Log(logging.WARNING,
                                 f"dot1x {mac} on {dpid}:{port} failed ({reason}); "
                                 f"failure {p.failures}, hold-off {hold:g} s")]
        if conv.session is not None:
            out.append(Revoke(dpid, port, mac, f"re-authentication failed: {reason}"))
        self.convs.pop((dpid, port, mac), None)
        self._forget((dpid, port, mac))
        return out
