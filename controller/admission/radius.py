"""The EAC's RADIUS client (RFC 2865, RFC 3579 EAP over RADIUS, RFC 2548 MPPE keys), pure.

The authenticator relays a terminal's EAP to a RADIUS server through this client: it
builds Access-Requests (the EAP in EAP-Message attributes of at most 253 bytes, the
server's State echoed, a Message-Authenticator), returns them as `SendRadius` effects, and
is fed the datagrams that come back and a clock. A reply counts only when it comes from the
server the request went to, carries the identifier of a request still outstanding there,
and both its Response Authenticator and its Message-Authenticator check with that server's
secret; anything else (forged, late, duplicate, from elsewhere) is dropped and counted.

No answer within `timeout_s` → the same datagram again (same identifier and
authenticator, RFC 5080 2.2.1), `retries` times; then the next server in the list, with a
new identifier. A conversation fails over only before the first server answered it: the
State of an EAP exchange belongs to one server, another would not know it. A server that
let a request time out is marked dead for `dead_s`: new conversations start at the next
live one. When no server answers, the result is a `RadiusResult` with code "timeout" and
the authenticator fails the exchange (fail closed).

The terminal influences nothing here but the EAP bytes (opaque, inside EAP-Message) and
the User-Name (its EAP identity); which server is asked, the NAS attributes (the switch,
port and MAC the frame came from) and every other attribute are the controller's.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import struct
from dataclasses import dataclass, field
from typing import Callable, Hashable

from controller.effects import Count, Log

ACCESS_REQUEST, ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE = 1, 2, 3, 11
CODES = {ACCESS_ACCEPT: "accept", ACCESS_REJECT: "reject", ACCESS_CHALLENGE: "challenge"}
# attribute types (RFC 2865, 2869, 3579)
USER_NAME, NAS_IP_ADDRESS, NAS_PORT, SERVICE_TYPE, FILTER_ID, FRAMED_MTU = 1, 4, 5, 6, 11, 12
REPLY_MESSAGE, STATE, VENDOR_SPECIFIC, SESSION_TIMEOUT = 18, 24, 26, 27
CALLED_STATION_ID, CALLING_STATION_ID, NAS_IDENTIFIER = 30, 31, 32
NAS_PORT_TYPE, NAS_PORT_ID, EAP_MESSAGE, MESSAGE_AUTHENTICATOR = 61, 87, 79, 80
VENDOR_MICROSOFT, MS_MPPE_SEND_KEY, MS_MPPE_RECV_KEY = 311, 16, 17
SERVICE_FRAMED, PORT_TYPE_ETHERNET = 2, 15
HEADER = 20
MAX_PACKET = 4096
MAX_ATTR_DATA = 253
FRAMED_MTU_VALUE = 1400     # the server fragments EAP-TLS records to fit an EAPOL frame


class BadPacket(ValueError):
    pass


@dataclass(frozen=True)
class RadiusServer:
    host: str                               # IPv4 literal (replies are matched on it)
    port: int
    secret: bytes = field(repr=False)       # never printed

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SendRadius:
    """Send `data` in one UDP datagram to `host:port` (from the client's one socket)."""

    host: str
    port: int
    data: bytes


@dataclass(frozen=True)
class Station:
    """Where the terminal's frame came from: the NAS attributes of its requests."""

    dpid: int
    port: int
    mac: str
    nas_mac: str                 # the controller's (authenticator's) MAC


@dataclass(frozen=True)
class RadiusResult:
    """The answer to one conversation's request. code: accept | reject | challenge |
    timeout. `msk` (64 bytes: MS-MPPE-Recv-Key || MS-MPPE-Send-Key) on an accept that had
    both keys."""

    key: Hashable
    code: str
    server: str
    eap: bytes = b""
    state: bytes | None = None
    msk: bytes = b""
    filter_id: str = ""
    reason: str = ""
    user_name: str | None = None    # the User-Name of an Access-Accept, if it has one


# --- codec ------------------------------------------------------------------------------

def encode_attrs(attrs: list[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for t, v in attrs:
        if not 0 < t < 256 or len(v) > MAX_ATTR_DATA:
            raise ValueError(f"attribute {t}: {len(v)} bytes")
        out += bytes((t, len(v) + 2)) + v
    return bytes(out)


def decode_attrs(data: bytes) -> list[tuple[int, bytes]]:
    attrs, i = [], 0
    while i < len(data):
        if i + 2 > len(data) or data[i + 1] < 2 or i + data[i + 1] > len(data):
            raise BadPacket("attribute overruns the packet")
        attrs.append((data[i], data[i + 2:i + data[i + 1]]))
        i += data[i + 1]
    return attrs


def eap_attrs(eap: bytes) -> list[tuple[int, bytes]]:
    """An EAP packet as EAP-Message attributes of at most 253 bytes each (RFC 3579 3.1)."""
    return [(EAP_MESSAGE, eap[i:i + MAX_ATTR_DATA]) for i in range(0, len(eap), MAX_ATTR_DATA)]


def message_authenticator(secret: bytes, packet: bytes, authenticator: bytes) -> bytes:
    """HMAC-MD5 over the packet with `authenticator` in the header and the
    Message-Authenticator's value zeroed (RFC 3579 3.2); `packet` has it zeroed already."""
    return hmac.new(secret, packet[:4] + authenticator + packet[HEADER:], hashlib.md5).digest()


def build_request(ident: int, authenticator: bytes, attrs: list[tuple[int, bytes]],
                  secret: bytes) -> bytes:
    """An Access-Request with a Message-Authenticator (the last attribute)."""
    body = encode_attrs(attrs + [(MESSAGE_AUTHENTICATOR, bytes(16))])
    length = HEADER + len(body)
    if length > MAX_PACKET:
        raise ValueError(f"Access-Request of {length} bytes")
    pkt = struct.pack("!BBH", ACCESS_REQUEST, ident, length) + authenticator + body
    return pkt[:-16] + message_authenticator(secret, pkt, authenticator)


def response_authenticator(reply: bytes, request_auth: bytes, secret: bytes) -> bytes:
    return hashlib.md5(reply[:4] + request_auth + reply[HEADER:] + secret).digest()


def sign_reply(code: int, ident: int, attrs: list[tuple[int, bytes]], request_auth: bytes,
               secret: bytes) -> bytes:
    """A reply as a server builds it (Message-Authenticator, then Response Authenticator):
    for the tests' fake servers and as the reference of `check_reply`."""
    body = encode_attrs(attrs + [(MESSAGE_AUTHENTICATOR, bytes(16))])
    pkt = struct.pack("!BBH", code, ident, HEADER + len(body)) + request_auth + body
    pkt = pkt[:-16] + message_authenticator(secret, pkt, request_auth)
    return pkt[:4] + response_authenticator(pkt, request_auth, secret) + pkt[HEADER:]


def check_reply(data: bytes, request_auth: bytes, secret: bytes) -> list[tuple[int, bytes]]:
    """The attributes of an authentic reply to the request with `request_auth`; raises
    BadPacket naming what is wrong."""
    if len(data) < HEADER:
        raise BadPacket("shorter than a RADIUS header")
    length = struct.unpack("!H", data[2:4])[0]
    if not HEADER <= length <= len(data) or length > MAX_PACKET:
        raise BadPacket(f"length field {length} for {len(data)} bytes")
    data = data[:length]
    if not hmac.compare_digest(data[4:HEADER],
                               response_authenticator(data, request_auth, secret)):
        raise BadPacket("bad Response Authenticator")
    attrs = decode_attrs(data[HEADER:])
    # the Message-Authenticator must be there (RFC 3579 3.2: EAP replies carry one) and
    # hold the HMAC over the packet with the request's authenticator and itself zeroed
    offsets, i = [], HEADER
    for t, v in attrs:
        if t == MESSAGE_AUTHENTICATOR:
            offsets.append(i)
        i += len(v) + 2
    if len(offsets) != 1 or data[offsets[0] + 1] != 18:
        raise BadPacket("no (or more than one) Message-Authenticator")
    at = offsets[0] + 2
    zeroed = data[:at] + bytes(16) + data[at + 16:]
    if not hmac.compare_digest(data[at:at + 16],
                               message_authenticator(secret, zeroed, request_auth)):
        raise BadPacket("bad Message-Authenticator")
    return attrs


def mppe_decrypt(value: bytes, secret: bytes, request_auth: bytes) -> bytes:
    """An MS-MPPE-Send/Recv-Key value (salt, then the encrypted key-length byte, key and
    padding: RFC 2548 2.4.2-2.4.3) decrypted with the shared secret and the request's
    authenticator."""
    salt, cipher = value[:2], value[2:]
    if len(value) < 2 + 16 or len(cipher) % 16 or not salt[0] & 0x80:
        raise BadPacket("malformed MS-MPPE key attribute")
    plain, prev = bytearray(), request_auth + salt
    for i in range(0, len(cipher), 16):
        b = hashlib.md5(secret + prev).digest()
        block = cipher[i:i + 16]
        plain += bytes(x ^ y for x, y in zip(block, b))
        prev = block
    if plain[0] == 0 or plain[0] > len(plain) - 1:
        raise BadPacket("MS-MPPE key length out of range")
    return bytes(plain[1:1 + plain[0]])


def mppe_encrypt(key: bytes, secret: bytes, request_auth: bytes, salt: bytes) -> bytes:
    """The server side of `mppe_decrypt` (tests' fake servers)."""
    plain = bytes([len(key)]) + key
    plain += bytes(-len(plain) % 16)
    out, prev = bytearray(salt), request_auth + salt
    for i in range(0, len(plain), 16):
        block = bytes(x ^ y for x, y in zip(plain[i:i + 16], hashlib.md5(secret + prev).digest()))
        out += block
        prev = block
    return bytes(out)


def vendor_attrs(attrs: list[tuple[int, bytes]], vendor: int) -> list[tuple[int, bytes]]:
    """The sub-attributes of the Vendor-Specific attributes of one vendor (RFC 2865 5.26)."""
    out = []
    for t, v in attrs:
        if t == VENDOR_SPECIFIC and len(v) > 4 and struct.unpack("!I", v[:4])[0] == vendor:
            out += decode_attrs(v[4:])
    return out


# --- the client ---------------------------------------------------------------------------

@dataclass
class _Pending:
    key: Hashable
    server: int                  # index into servers
    ident: int
    authenticator: bytes
    data: bytes
    sent_at: float
    tries: int = 1
    tried: tuple[int, ...] = ()  # servers that let it time out (failover order)
    attrs: list = field(default_factory=list)
    pinned: bool = False         # carries a State: only that server may answer


Effect = SendRadius | RadiusResult | Count | Log


class RadiusClient:
    """Requests of many conversations (one outstanding per key) to a list of servers."""

    def __init__(self, servers: list[RadiusServer], timeout_s: float = 1.0, retries: int = 2,
                 dead_s: float = 30.0, nas_identifier: str = "crs-controller",
                 rng: Callable[[int], bytes] = os.urandom):
        if not servers:
            raise ValueError("no RADIUS server")
        self.servers = list(servers)
        self.timeout_s, self.retries, self.dead_s = timeout_s, retries, dead_s
        self.nas_identifier = nas_identifier.encode()
        self.rng = rng
        self.pending: dict[Hashable, _Pending] = {}
        self._by_id: dict[tuple[int, int], Hashable] = {}     # (server, identifier) -> key
        self._next_id = [rng(1)[0] for _ in servers]
        self._dead_until = [0.0] * len(servers)
        self._server_of: dict[Hashable, int] = {}   # a conversation's server once it answered

    # --- requests ---------------------------------------------------------------------

    def request(self, key: Hashable, eap: bytes, state: bytes | None, user_name: str,
                station: Station, now: float) -> list[Effect]:
        """Relay one EAP response of conversation `key` (a new request replaces an
        outstanding one). `state`: the State of the server's last challenge (None: the
        conversation starts, any live server may take it)."""
        self.cancel(key)
        if state is None:
            self._server_of.pop(key, None)
        attrs = [(USER_NAME, user_name.encode()[:MAX_ATTR_DATA]),
                 (SERVICE_TYPE, struct.pack("!I", SERVICE_FRAMED)),
                 (NAS_IDENTIFIER, self.nas_identifier),
                 (NAS_PORT, struct.pack("!I", station.port & 0xFFFFFFFF)),
                 (NAS_PORT_TYPE, struct.pack("!I", PORT_TYPE_ETHERNET)),
                 (NAS_PORT_ID, f"{station.dpid:016x}:{station.port}".encode()),
                 (CALLING_STATION_ID, station.mac.upper().replace(":", "-").encode()),
                 (CALLED_STATION_ID, station.nas_mac.upper().replace(":", "-").encode()),
                 (FRAMED_MTU, struct.pack("!I", FRAMED_MTU_VALUE))]
        if state is not None:
            attrs.append((STATE, state))
        attrs += eap_attrs(eap)
        server = self._server_of.get(key) if state is not None else None
        pinned = server is not None
        if server is None:
            server = self._first_live(now, ())
        return self._send_new(_Pending(key, server, 0, b"", b"", now, attrs=attrs,
                                       pinned=pinned), now)

    def cancel(self, key: Hashable) -> None:
        """Forget the outstanding request of `key` (its conversation ended): a reply to it
        now is late and dropped."""
        p = self.pending.pop(key, None)
        if p is not None:
            self._by_id.pop((p.server, p.ident), None)

    def forget(self, key: Hashable) -> None:
        self.cancel(key)
        self._server_of.pop(key, None)

    def _first_live(self, now: float, tried: tuple[int, ...]) -> int | None:
        left = [i for i in range(len(self.servers)) if i not in tried]
        live = [i for i in left if self._dead_until[i] <= now]
        return (live or left or [None])[0]

    def _send_new(self, p: _Pending, now: float) -> list[Effect]:
        srv = self.servers[p.server]
        ident = self._free_id(p.server)
        if ident is None:
            return [Count("radius_ids_exhausted"),
                    RadiusResult(p.key, "timeout", srv.name,
                                 reason=f"256 requests outstanding at {srv.name}")]
        p.ident, p.authenticator, p.sent_at, p.tries = ident, self.rng(16), now, 1
        p.data = build_request(ident, p.authenticator, p.attrs, srv.secret)
        self.pending[p.key] = p
        self._by_id[(p.server, ident)] = p.key
        return [SendRadius(srv.host, srv.port, p.data), Count("radius_requests")]

    def _free_id(self, server: int) -> int | None:
        for _ in range(256):
            ident = self._next_id[server]
            self._next_id[server] = (ident + 1) & 0xFF
            if (server, ident) not in self._by_id:
                return ident
        return None

    # --- replies and time -------------------------------------------------------------

    def datagram(self, host: str, port: int, data: bytes, now: float) -> list[Effect]:
        """A UDP datagram on the client's socket from host:port."""
        server = next((i for i, s in enumerate(self.servers)
                       if (s.host, s.port) == (host, port)), None)
        if server is None:
            return [Count("radius_reply_unknown_source"),
                    Log(logging.WARNING, f"RADIUS datagram from {host}:{port}, which is "
                                         "not a configured server: dropped")]
        if len(data) < HEADER or data[0] not in CODES:
            return [Count("radius_reply_malformed")]
        key = self._by_id.get((server, data[1]))
        if key is None:     # late (answered or given up), duplicate, or forged
            return [Count("radius_reply_unmatched")]
        p = self.pending[key]
        srv = self.servers[server]
        try:
            attrs = check_reply(data, p.authenticator, srv.secret)
        except BadPacket as exc:
            return [Count("radius_reply_forged"),
                    Log(logging.WARNING, f"RADIUS reply from {srv.name} dropped: {exc}")]
        self.cancel(key)
        self._dead_until[server] = 0.0
        self._server_of[key] = server
        return self._result(p, srv, data[0], attrs)

    def _result(self, p: _Pending, srv: RadiusServer, code: int,
                attrs: list[tuple[int, bytes]]) -> list[Effect]:
        eap = b"".join(v for t, v in attrs if t == EAP_MESSAGE)
        state = next((v for t, v in attrs if t == STATE), None)
        name = CODES[code]
        out: list[Effect] = [Count(f"radius_{name}")]
        msk, reason = b"", ""
        if code == ACCESS_ACCEPT:
            ms = dict(vendor_attrs(attrs, VENDOR_MICROSOFT))
            try:
                if MS_MPPE_RECV_KEY in ms and MS_MPPE_SEND_KEY in ms:
                    msk = (mppe_decrypt(ms[MS_MPPE_RECV_KEY], srv.secret, p.authenticator)
                           + mppe_decrypt(ms[MS_MPPE_SEND_KEY], srv.secret, p.authenticator))
            except BadPacket as exc:
                reason = f"MS-MPPE keys unreadable: {exc}"
            if len(msk) < 32 and not reason:
                reason = "Access-Accept without MS-MPPE-Recv/Send-Key (no MSK)"
        elif code == ACCESS_REJECT:
            msg = b"".join(v for t, v in attrs if t == REPLY_MESSAGE)
            reason = "Access-Reject" + (f" ({msg.decode(errors='replace')[:80]})" if msg else "")
        filter_id = next((v.decode(errors="replace") for t, v in attrs if t == FILTER_ID), "")
        user = next((v.decode(errors="replace") for t, v in attrs if t == USER_NAME), None)
        return out + [RadiusResult(p.key, name, srv.name, eap, state, msk, filter_id, reason,
                                   user)]

    def tick(self, now: float) -> list[Effect]:
        """Retransmissions, failover and give-ups of the requests whose time has come."""
        out: list[Effect] = []
        for p in [p for p in self.pending.values() if now - p.sent_at >= self.timeout_s]:
            srv = self.servers[p.server]
            if p.tries <= self.retries:
                p.tries += 1
                p.sent_at = now
                out += [SendRadius(srv.host, srv.port, p.data), Count("radius_retransmit")]
                continue
            self.cancel(p.key)
            if self._dead_until[p.server] <= now:
                out.append(Log(logging.WARNING, f"RADIUS server {srv.name}: no answer after "
                                                f"{p.tries} tries; marked dead for "
                                                f"{self.dead_s:g} s"))
            self._dead_until[p.server] = now + self.dead_s
            out.append(Count("radius_server_timeout"))
            p.tried += (p.server,)
            nxt = None if p.pinned else self._first_live(now, p.tried)
            if nxt is None:
                tried = ", ".join(self.servers[i].name for i in p.tried)
                out.append(RadiusResult(p.key, "timeout", srv.name,
                                        reason=f"no RADIUS server answered ({tried})"))
                continue
            out.append(Count("radius_failover"))
            p.server = nxt
            out += self._send_new(p, now)
        return out
