"""SS <-> SP mutual challenge-response with the X.1124 derived key (HMAC-SHA256).

Each side contributes a fresh nonce; each proves knowledge of the derived key by a MAC over
both nonces and the context, with its role in the MAC so a proof cannot be reflected back.
Flow: SS -> SP: isr_id, service, nonce_ss.  SP -> SS: nonce_sp, proof("sp").
SS checks it, SS -> SP: proof("ss"); SP checks it.
"""
from __future__ import annotations

import hashlib
import hmac
import os

NONCE_LEN = 16
ROLES = ("ss", "sp")


def new_nonce() -> bytes:
    return os.urandom(NONCE_LEN)


def proof(key: bytes, role: str, nonce_ss: bytes, nonce_sp: bytes, isr_id: str,
          sp_name: str, service: str) -> bytes:
    """The MAC one side sends: role-bound, over both nonces and the (ISR-ID, SP, service)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if len(nonce_ss) < NONCE_LEN or len(nonce_sp) < NONCE_LEN:
        raise ValueError(f"nonces must be at least {NONCE_LEN} bytes")
    if nonce_ss == nonce_sp:
        raise ValueError("the two nonces must differ (reflection)")
    msg = b"\x00".join([b"x1124-mutual-v1", role.encode(), nonce_ss, nonce_sp,
                        isr_id.encode(), sp_name.encode(), service.encode()])
    return hmac.new(key, msg, hashlib.sha256).digest()


def verify(key: bytes, role: str, nonce_ss: bytes, nonce_sp: bytes, isr_id: str,
           sp_name: str, service: str, received: bytes) -> bool:
    """Constant-time check of the other side's proof; bad inputs give False, not errors."""
    try:
        expect = proof(key, role, nonce_ss, nonce_sp, isr_id, sp_name, service)
    except (ValueError, TypeError):
        return False
    return isinstance(received, bytes) and hmac.compare_digest(expect, received)
