"""Strict Ethernet + EAPOL (IEEE 802.1X-2004/2010) and EAP (RFC 3748) parsing and building.

Frames reach the controller as raw packet-in bytes from untrusted terminals, so anything
that is not exactly a well-formed EAPOL frame raises ``MalformedFrame`` with a reason; no
other exception may escape ``parse_frame``/``parse_eap`` whatever the input.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import IntEnum

ETH_P_EAPOL = 0x888E
PAE_GROUP_ADDR = "01:80:c2:00:00:03"
MAX_FRAME = 1500 + 14       # largest Ethernet frame (untagged payload 1500) we accept
MIN_FRAME = 60              # Ethernet minimum without FCS: shorter frames may be padded to it
ETH_HDR = 14
EAPOL_HDR = 4
EAP_HDR = 4
EAPOL_VERSIONS = (1, 2, 3)


class MalformedFrame(ValueError):
    """A frame that is not a valid EAPOL/EAP frame; ``reason`` says why (for counters/logs)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class EapolType(IntEnum):
    EAP_PACKET = 0
    START = 1
    LOGOFF = 2
    KEY = 3


class EapCode(IntEnum):
    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


class EapType(IntEnum):
    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3
    MD5_CHALLENGE = 4
    PSK = 47


@dataclass(frozen=True)
class Eap:
    """One EAP packet. ``type`` is None for Success/Failure; ``data`` is the Type-Data."""

    code: int
    identifier: int
    type: int | None = None
    data: bytes = b""

    def encode(self) -> bytes:
        return build_eap(self.code, self.identifier, self.type, self.data)


@dataclass(frozen=True)
class EapolFrame:
    """A parsed Ethernet+EAPOL frame. ``eap`` is set for EAP-Packet frames only."""

    dst: str
    src: str
    version: int
    type: int
    body: bytes
    eap: Eap | None = None


_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")


def mac_to_bytes(mac: str) -> bytes:
    """'aa:bb:..' -> 6 bytes; ValueError with a reason otherwise. (Every EAPOL frame
    converts two: a regular expression and fromhex, not a loop in Python.)"""
    if not isinstance(mac, str) or _MAC.fullmatch(mac) is None:
        raise ValueError(f"{mac!r} is not a MAC address")
    return bytes.fromhex(mac.replace(":", ""))


def mac_to_str(raw: bytes) -> str:
    return raw.hex(":")


def parse_eap(data: bytes) -> Eap:
    """Parse exactly one EAP packet; its Length field must equal ``len(data)``."""
    if len(data) < EAP_HDR:
        raise MalformedFrame("truncated EAP header")
    code, ident, length = struct.unpack("!BBH", data[:4])
    if code not in EapCode._value2member_map_:
        raise MalformedFrame(f"unknown EAP code {code}")
    if length != len(data):
        raise MalformedFrame(f"EAP length field {length} != {len(data)} bytes present")
    if code in (EapCode.SUCCESS, EapCode.FAILURE):
        if length != EAP_HDR:
            raise MalformedFrame("EAP Success/Failure with a body")
        return Eap(code, ident)
    if length < EAP_HDR + 1:
        raise MalformedFrame("EAP Request/Response without a Type")
    return Eap(code, ident, data[4], bytes(data[5:]))


def build_eap(code: int, identifier: int, type_: int | None = None, data: bytes = b"") -> bytes:
    """Encode an EAP packet (Success/Failure take no type and no data)."""
    if code not in EapCode._value2member_map_:
        raise ValueError(f"unknown EAP code {code}")
    if not 0 <= identifier <= 255:
        raise ValueError(f"EAP identifier {identifier} outside 0..255")
    if code in (EapCode.SUCCESS, EapCode.FAILURE):
        if type_ is not None or data:
            raise ValueError("EAP Success/Failure carry no type or data")
        return struct.pack("!BBH", code, identifier, EAP_HDR)
    if type_ is None or not 0 <= type_ <= 255:
        raise ValueError("EAP Request/Response need a type 0..255")
    length = EAP_HDR + 1 + len(data)
    if length > MAX_FRAME - ETH_HDR - EAPOL_HDR:
        raise ValueError(f"EAP packet of {length} bytes is too large")
    return struct.pack("!BBHB", code, identifier, length, type_) + bytes(data)


def parse_frame(data: bytes) -> EapolFrame:
    """Parse raw Ethernet bytes of an EAPOL frame (untagged, ethertype 0x888e).

    Bytes after the EAPOL body are accepted only as Ethernet minimum-size padding.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedFrame("frame is not bytes")
    data = bytes(data)
    if len(data) > MAX_FRAME:
        raise MalformedFrame(f"oversized frame ({len(data)} > {MAX_FRAME} bytes)")
    if len(data) < ETH_HDR + EAPOL_HDR:
        raise MalformedFrame("truncated Ethernet/EAPOL header")
    (ethertype,) = struct.unpack("!H", data[12:14])
    if ethertype != ETH_P_EAPOL:
        raise MalformedFrame(f"ethertype 0x{ethertype:04x} is not EAPOL")
    src = data[6:12]
    if src[0] & 1:
        raise MalformedFrame("group source MAC address")
    version, ptype, body_len = struct.unpack("!BBH", data[14:18])
    if version not in EAPOL_VERSIONS:
        raise MalformedFrame(f"unsupported EAPOL version {version}")
    if ptype not in EapolType._value2member_map_:
        raise MalformedFrame(f"unknown EAPOL packet type {ptype}")
    end = ETH_HDR + EAPOL_HDR + body_len
    if end > len(data):
        raise MalformedFrame(f"truncated EAPOL body ({body_len} announced, "
                             f"{len(data) - ETH_HDR - EAPOL_HDR} present)")
    if end < len(data) and len(data) > MIN_FRAME:
        raise MalformedFrame(f"EAPOL body length {body_len} leaves "
                             f"{len(data) - end} trailing bytes beyond padding")
    if end < len(data) and any(data[end:]):
        raise MalformedFrame("non-zero padding after the EAPOL body")
    body = data[ETH_HDR + EAPOL_HDR:end]
    eap = None
    if ptype == EapolType.EAP_PACKET:
        eap = parse_eap(body)
    elif ptype in (EapolType.START, EapolType.LOGOFF) and body_len:
        # 802.1X-2010 lets EAPOL-Start carry TLVs; we need none, but they are legal.
        if ptype == EapolType.LOGOFF:
            raise MalformedFrame("EAPOL-Logoff with a body")
    return EapolFrame(mac_to_str(data[0:6]), mac_to_str(src), version, ptype, body, eap)


def build_frame(dst: str, src: str, ptype: int, body: bytes = b"", version: int = 2) -> bytes:
    """Encode Ethernet+EAPOL. ``src`` must be a unicast MAC (ours), never the PAE group."""
    s = mac_to_bytes(src)
    if s[0] & 1:
        raise ValueError(f"source MAC {src} is a group address")
    if ptype not in EapolType._value2member_map_:
        raise ValueError(f"unknown EAPOL packet type {ptype}")
    if version not in EAPOL_VERSIONS:
        raise ValueError(f"unsupported EAPOL version {version}")
    frame = (mac_to_bytes(dst) + s + struct.pack("!H", ETH_P_EAPOL)
             + struct.pack("!BBH", version, ptype, len(body)) + bytes(body))
    if len(frame) > MAX_FRAME:
        raise ValueError(f"frame of {len(frame)} bytes is too large")
    return frame


def build_eap_frame(dst: str, src: str, eap: bytes | Eap, version: int = 2) -> bytes:
    """Encode an EAP packet inside an EAPOL EAP-Packet frame."""
    raw = eap.encode() if isinstance(eap, Eap) else bytes(eap)
    return build_frame(dst, src, EapolType.EAP_PACKET, raw, version)


# what a supplicant's frame is, for per-message timing (`frame_kind`); a fixed set, so an
# attacker's frames cannot grow the counters' names
FRAME_KINDS = ("start", "logoff", "identity", "psk2", "psk4", "md5", "nak", "other")
_PSK_RESPONSE = {1: "psk2", 3: "psk4"}


def frame_kind(frame: bytes) -> str:
    """The kind of an untagged EAPOL frame from a supplicant, from its header bytes alone
    (no parsing, never raises): EAPOL-Start or -Logoff, or the EAP response's type (an
    EAP-PSK response by its T flag: PSK-2 or PSK-4). Anything else is "other"."""
    if len(frame) < ETH_HDR + EAPOL_HDR or frame[12:14] != b"\x88\x8e":
        return "other"
    ptype = frame[15]
    if ptype == EapolType.START:
        return "start"
    if ptype == EapolType.LOGOFF:
        return "logoff"
    if ptype != EapolType.EAP_PACKET or len(frame) < 23 or frame[18] != EapCode.RESPONSE:
        return "other"
    t = frame[22]
    if t == EapType.IDENTITY:
        return "identity"
    if t == EapType.PSK:
        return _PSK_RESPONSE.get(frame[23] >> 6, "other") if len(frame) > 23 else "other"
    if t == EapType.MD5_CHALLENGE:
        return "md5"
    return "nak" if t == EapType.NAK else "other"
