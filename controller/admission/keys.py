"""Per-purpose keys from the EAP EMSK (HKDF-SHA256), shared by our supplicant and the EAC.

The EMSK never leaves the EAC/terminal pair; each use gets its own key so that a key handed
to a service provider or used for CRS reports reveals nothing about the others.
"""
from __future__ import annotations

import hmac

PURPOSES = ("crs-report", "sp-root", "isr-id")
_SALT = b"crs-x1124-emsk-v1"


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract, then expand to `length` bytes. On the C HMAC of
    the standard library: a derivation costs ~5 us here against ~17 us for the
    `cryptography` package's object per call, and an admission makes five
    (test_keys checks it against that package and the RFC's vectors)."""
    if not 1 <= length <= 255 * 32:
        raise ValueError("HKDF-SHA256 gives 1..8160 bytes")
    prk = hmac.digest(salt or bytes(32), ikm, "sha256")
    out, block = b"", b""
    for i in range(1, -(-length // 32) + 1):
        block = hmac.digest(prk, block + info + bytes((i,)), "sha256")
        out += block
    return out[:length]


def _hkdf(ikm: bytes, info: bytes, length: int) -> bytes:
    return hkdf_sha256(ikm, _SALT, info, length)


def purpose_key(emsk: bytes, purpose: str, length: int = 32) -> bytes:
    """Key for one named purpose ("crs-report", "sp-root", ...) from the EMSK."""
    if len(emsk) < 32:
        raise ValueError("EMSK too short (need at least 32 bytes)")
    if not purpose or not 1 <= length <= 255 * 32:
        raise ValueError("purpose must be non-empty and length 1..8160")
    return _hkdf(emsk, b"purpose:" + purpose.encode(), length)


def isr_id(emsk: bytes) -> str:
    """The ISR-ID both the terminal and the EAC compute, so it is never sent in clear
    during authentication. 96 bits, hex."""
    return "isr-" + purpose_key(emsk, "isr-id", 12).hex()


def sp_service_key_from_root(sp_root: bytes, isr: str, sp_name: str, service: str,
                             length: int = 32) -> bytes:
    """The SS-SP derived key from the "sp-root" key (what the EAC stores)."""
    if not sp_name or not service:
        raise ValueError("SP name and service must be non-empty")
    info = b"sp-service\x00" + b"\x00".join(x.encode() for x in (isr, sp_name, service))
    return hkdf_sha256(sp_root, b"crs-x1124-sp-v1", info, length)


def sp_service_key(emsk: bytes, isr: str, sp_name: str, service: str) -> bytes:
    """Derived key for one (SS session, SP, service): differs per SP and per service."""
    return sp_service_key_from_root(purpose_key(emsk, "sp-root"), isr, sp_name, service)


_RADIUS_SALT = b"crs-x1124-radius-msk-v1"


def radius_key_root(msk: bytes) -> bytes:
    """With a RADIUS back end the EAC gets only the MSK (MS-MPPE-Recv-Key || Send-Key, RFC
    2548/5216): RADIUS does not export the EMSK. The key root that takes the EMSK's place
    (ISR-ID and every purpose key come from it as from an EMSK) is HKDF-SHA256 of the MSK
    with its own salt, so it never equals a key the internal server derives, and a terminal
    that knows its MSK computes the same (docs/authentication.md)."""
    if len(msk) < 32:
        raise ValueError("MSK too short (need at least 32 bytes)")
    return hkdf_sha256(msk, _RADIUS_SALT, b"emsk-substitute", 64)
