"""EAP-MD5 (RFC 3748 §5.4), server side plus the peer's response function.

Only for subscribers marked ``legacy: true``: EAP-MD5 authenticates the peer only (no
mutual authentication), derives no keys (no MSK/EMSK, so no ISR-ID binding to key
material) and exposes the challenge/response to offline dictionary attack. The server must
know the cleartext secret, which is why it is stored Fernet-encrypted, not hashed.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Callable

from .eapol import EapCode, EapType, MalformedFrame, build_eap, parse_eap

CHALLENGE_LEN = 16


def md5_response(identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """The RFC 1994 CHAP value: MD5(Identifier || secret || challenge)."""
    return hashlib.md5(bytes([identifier & 0xFF]) + secret + challenge).digest()


def md5_value(data: bytes) -> tuple[bytes, bytes]:
    """Split MD5-Challenge Type-Data into (value, name); ValueError if Value-Size lies."""
    if not data or data[0] == 0 or 1 + data[0] > len(data):
        raise ValueError("bad MD5-Challenge Value-Size")
    return data[1:1 + data[0]], data[1 + data[0]:]


@dataclass
class Md5Result:
    done: bool = False
    success: bool = False
    reason: str = ""


@dataclass
class Md5Server:
    """Challenge one peer; ``secret`` is the decrypted legacy secret (or None if unknown)."""

    secret: bytes | None
    name: bytes = b""
    rng: Callable[[int], bytes] = os.urandom
    identifier: int = -1
    challenge: bytes = b""

    def first(self, identifier: int) -> bytes:
        self.identifier, self.challenge = identifier, self.rng(CHALLENGE_LEN)
        return build_eap(EapCode.REQUEST, identifier, EapType.MD5_CHALLENGE,
                         bytes([CHALLENGE_LEN]) + self.challenge + self.name)

    def process(self, packet: bytes) -> Md5Result:
        """Check the peer's response; a wrong-shaped or stale one is dropped (not done)."""
        try:
            eap = parse_eap(packet)
            if eap.code != EapCode.RESPONSE or eap.type != EapType.MD5_CHALLENGE:
                return Md5Result(reason="not an MD5-Challenge response")
            if eap.identifier != self.identifier:
                return Md5Result(reason="identifier does not match our challenge")
            value, _ = md5_value(eap.data)
        except (MalformedFrame, ValueError) as exc:
            return Md5Result(reason=str(exc))
        if self.secret is None:
            return Md5Result(done=True, reason="no legacy secret for this identity")
        if len(value) != 16 or not hmac.compare_digest(
                value, md5_response(self.identifier, self.secret, self.challenge)):
            return Md5Result(done=True, reason="wrong MD5 response")
        return Md5Result(done=True, success=True)
