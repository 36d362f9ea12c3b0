"""The EAC (X.1124 §8.2-8.5): SS sessions by ISR-ID, SP logins by IAC-ID, key inquiry.

Pure: time is a parameter and state lives behind the ``SessionStore`` protocol (in memory
here, SQLite in the controller). The EAC keeps per SS session only the "sp-root" key
derived from the EMSK, never the EMSK itself, and hands an SP only the key for one
(ISR-ID, SP, service), after checking in the order of §8.4: IAC-ID valid, SP entitled to
the service, ISR-ID valid, SS entitled to the service.

SP login challenges are asked for without authentication (``POST /eac/v1/sp/challenge``
from anywhere, terminals included), so issuing one must cost the EAC no memory: a challenge
carries its SP name binding and expiry under a MAC only this EAC knows (``_challenge_key``),
and is checked, not looked up, at login. Only challenges spent by a *successful* login (an SP
key holder's) are remembered, until they expire, to make them single-use; that table is
bounded in total and per SP (expired entries are dropped first, a full table refuses the
login with ``challenge_table_full``). ``counters`` counts issued, refused, expired, invalid
and reused challenges for ``crs status``.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from controller.records import SpRecord, SsRecord

from .authenticator import Session
from .authorization import Authorization
from .keys import purpose_key, sp_service_key_from_root

REASONS = ("unknown_isr_id", "expired_isr_id", "unknown_iac_id", "expired_iac_id",
           "sp_not_entitled", "ss_not_entitled", "unknown_sp", "bad_sp_proof",
           "unknown_challenge", "no_keys", "challenge_table_full")
NONCE_LEN = 16
TAG_LEN = 16
CHALLENGE_LEN = NONCE_LEN + 8 + TAG_LEN     # random | expiry (ms, big-endian) | MAC
UNKNOWN_CHALLENGE = "challenge unknown, used, expired or for another SP"


class SessionStore(Protocol):
    def put_ss(self, rec: SsRecord) -> None: ...
    def get_ss(self, isr_id: str) -> SsRecord | None: ...
    def drop_ss(self, isr_id: str) -> None: ...
    def put_sp(self, rec: SpRecord) -> None: ...
    def get_sp(self, iac_id: str) -> SpRecord | None: ...
    def purge(self, now: float) -> int: ...


@dataclass
class MemoryStore:
    """In-memory SessionStore (tests, and the reference for the SQLite one)."""

    ss: dict[str, SsRecord] = field(default_factory=dict)
    sp: dict[str, SpRecord] = field(default_factory=dict)

    def put_ss(self, rec: SsRecord) -> None:
        self.ss[rec.isr_id] = rec

    def get_ss(self, isr_id: str) -> SsRecord | None:
        return self.ss.get(isr_id)

    def drop_ss(self, isr_id: str) -> None:
        self.ss.pop(isr_id, None)

    def put_sp(self, rec: SpRecord) -> None:
        self.sp[rec.iac_id] = rec

    def get_sp(self, iac_id: str) -> SpRecord | None:
        return self.sp.get(iac_id)

    def purge(self, now: float) -> int:
        """Forget records expired for good (kept a while so refusals can say "expired")."""
        old_ss = [k for k, r in self.ss.items() if r.expires + 3600 < now]
        old_sp = [k for k, r in self.sp.items() if r.expires + 3600 < now]
        for k in old_ss:
            del self.ss[k]
        for k in old_sp:
            del self.sp[k]
        return len(old_ss) + len(old_sp)


@dataclass(frozen=True)
class Refusal:
    reason: str          # one of REASONS
    detail: str = ""


@dataclass(frozen=True)
class SpLogin:
    iac_id: str
    expires: float
    eac_proof: bytes     # the EAC's proof to the SP (mutual)
    session_key: bytes   # what the SP derives too (sp_session_key); returned for tests


@dataclass(frozen=True)
class Grant:
    key: bytes
    expires: float
    isr_id: str
    identity: str
    group: str
    sp_name: str
    service: str


def sp_proof(sp_key: bytes, role: str, sp_name: str, nonce_eac: bytes, nonce_sp: bytes) -> bytes:
    """SP<->EAC login proof; role "sp" (SP proves) or "eac" (EAC proves back)."""
    msg = b"\x00".join([b"x1124-sp-login-v1", role.encode(), sp_name.encode(), nonce_eac, nonce_sp])
    return hmac.new(sp_key, msg, hashlib.sha256).digest()


def sp_session_key(sp_key: bytes, sp_name: str, nonce_eac: bytes, nonce_sp: bytes) -> bytes:
    """SP-EAC key of one login (both sides compute it; it seals inquiry answers)."""
    return sp_proof(sp_key, "session-key", sp_name, nonce_eac, nonce_sp)


def seal_grant(session_key: bytes, iac_id: str, grant: Grant) -> bytes:
    """AES-GCM-protect the derived key for transport to the SP (nonce || ciphertext)."""
    nonce = os.urandom(12)
    return nonce + AESGCM(session_key).encrypt(nonce, grant.key, _grant_ad(iac_id, grant))


def open_grant(session_key: bytes, iac_id: str, grant_meta: Grant, sealed: bytes) -> bytes | None:
    """SP side: recover the derived key; None if it was tampered with or is for another login."""
    try:
        return AESGCM(session_key).decrypt(sealed[:12], sealed[12:], _grant_ad(iac_id, grant_meta))
    except (InvalidTag, ValueError):
        return None


def _ms(t: float) -> int:
    """Time in whole milliseconds (a challenge carries its expiry so, 8 bytes big-endian)."""
    return max(0, int(t * 1000))


def _grant_ad(iac_id: str, g: Grant) -> bytes:
    return "\x00".join([iac_id, g.isr_id, g.sp_name, g.service, repr(g.expires)]).encode()


class Eac:
    """Entity authentication centre (see module doc)."""

    def __init__(self, store: SessionStore, credentials, authorization: Authorization,
                 iac_lifetime_s: float = 3600.0, challenge_lifetime_s: float = 30.0,
                 rng: Callable[[int], bytes] = os.urandom, max_spent: int = 4096,
                 max_spent_per_sp: int = 256, grant_s: float = 5.0):
        """`grant_s`: how long an SP may use a key it obtained before asking again. The
        EAC pushes nothing to SPs: a Logoff, expiry or revocation reaches every SP within
        `grant_s`, when its next inquiry for the terminal is refused (X.1124 8.3/8.4)."""
        self.store = store
        self.grant_s = grant_s
        self.creds = credentials
        self.authz = authorization
        self.iac_lifetime_s = iac_lifetime_s
        self.challenge_lifetime_s = challenge_lifetime_s
        self.rng = rng
        self.max_spent, self.max_spent_per_sp = max_spent, max_spent_per_sp
        self._challenge_key = rng(32)       # per process: a restart voids open challenges
        self._spent: dict[bytes, tuple[str, float]] = {}    # challenge -> (SP, expiry)
        self._spent_per_sp: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()

    # --- SS side (8.2 / 8.3) ------------------------------------------------------------

    def register(self, session: Session) -> SsRecord | Refusal:
        """Record an SS session after EAP success (Admit). Re-authentication registers the
        new ISR-ID; the caller drops the old one with ``revoke``. MD5 sessions have no keys."""
        if not session.emsk or not session.isr_id:
            return Refusal("no_keys",
                           f"{session.identity} authenticated by {session.method}: no EMSK")
        rec = SsRecord(session.isr_id, session.identity, session.group,
                       purpose_key(session.emsk, "sp-root"), session.expires)
        self.store.put_ss(rec)
        return rec

    def revoke(self, isr_id: str) -> None:
        self.store.drop_ss(isr_id)

    # --- SP side (8.2) -------------------------------------------------------------------

    def sp_challenge(self, sp_name: str, now: float) -> bytes | Refusal:
        """Step 1 of SP login: a one-time EAC nonce bound to the SP name and an expiry.
        Stateless (see module doc): anyone may ask, so asking must not grow any table."""
        if sp_name not in self.creds.service_providers:
            self.counters["eac_sp_challenge_refused"] += 1
            return Refusal("unknown_sp", sp_name)
        body = self.rng(NONCE_LEN) + _ms(now + self.challenge_lifetime_s).to_bytes(8, "big")
        self.counters["eac_sp_challenge_issued"] += 1
        return body + self._challenge_tag(sp_name, body)

    def spent_challenges(self) -> int:
        """Size of the only challenge state the EAC keeps (spent, not yet expired)."""
        return len(self._spent)

    def _challenge_tag(self, sp_name: str, body: bytes) -> bytes:
        msg = b"x1124-sp-challenge-v1\x00" + sp_name.encode() + b"\x00" + body
        return hmac.new(self._challenge_key, msg, hashlib.sha256).digest()[:TAG_LEN]

    def _challenge_problem(self, sp_name: str, nonce: bytes, now: float) -> str | None:
        """Counter name for a challenge that cannot be used for this SP now, or None."""
        body, tag = nonce[:-TAG_LEN], nonce[-TAG_LEN:]
        if len(nonce) != CHALLENGE_LEN or not hmac.compare_digest(
                tag, self._challenge_tag(sp_name, body)):
            return "eac_sp_challenge_invalid"       # not ours, altered, or for another SP
        if int.from_bytes(body[NONCE_LEN:], "big") <= _ms(now):
            return "eac_sp_challenge_expired"
        if nonce in self._spent:
            return "eac_sp_challenge_reused"
        return None

    def _spend(self, sp_name: str, nonce: bytes, now: float) -> bool:
        """Remember a challenge a successful login used; False when the table is full."""
        for n, (sp, _) in [(n, v) for n, v in self._spent.items() if v[1] <= now]:
            del self._spent[n]
            self._spent_per_sp[sp] -= 1
            self.counters["eac_sp_challenge_spent_expired"] += 1
        if (len(self._spent) >= self.max_spent
                or self._spent_per_sp[sp_name] >= self.max_spent_per_sp):
            return False
        self._spent[nonce] = (sp_name, int.from_bytes(nonce[NONCE_LEN:-TAG_LEN], "big") / 1000)
        self._spent_per_sp[sp_name] += 1
        return True

    def sp_authenticate(self, sp_name: str, nonce_eac: bytes, nonce_sp: bytes, proof: bytes,
                        now: float) -> SpLogin | Refusal:
        """Step 2: check the SP's proof over both nonces; issue an IAC-ID with a lifetime."""
        sp = self.creds.service_providers.get(sp_name)
        if sp is None:
            return Refusal("unknown_sp", sp_name)
        problem = self._challenge_problem(sp_name, nonce_eac, now)
        if problem is not None:
            self.counters[problem] += 1
            return Refusal("unknown_challenge", UNKNOWN_CHALLENGE)
        if len(nonce_sp) < NONCE_LEN or nonce_sp == nonce_eac:
            return Refusal("bad_sp_proof", "SP nonce too short or reflected")
        if not hmac.compare_digest(proof, sp_proof(sp.key, "sp", sp_name, nonce_eac, nonce_sp)):
            self.counters["eac_sp_login_bad_proof"] += 1
            return Refusal("bad_sp_proof", sp_name)
        if not self._spend(sp_name, nonce_eac, now):
            self.counters["eac_sp_challenge_table_full"] += 1
            return Refusal("challenge_table_full",
                           f"more than {self.max_spent_per_sp} logins of {sp_name} (or "
                           f"{self.max_spent} in all) in {self.challenge_lifetime_s:g} s; "
                           "retry later")
        self.counters["eac_sp_login"] += 1
        iac = "iac-" + self.rng(12).hex()
        key = sp_session_key(sp.key, sp_name, nonce_eac, nonce_sp)
        rec = SpRecord(iac, sp_name, key, now + self.iac_lifetime_s)
        self.store.put_sp(rec)
        return SpLogin(iac, rec.expires, sp_proof(sp.key, "eac", sp_name, nonce_eac, nonce_sp), key)

    # --- 8.4 authentication inquiry ----------------------------------------------------------

    def inquire(self, iac_id: str, isr_id: str, service: str, now: float) -> Grant | Refusal:
        """Derived key for (ISR-ID, SP, service) with its lifetime, or a refusal reason."""
        sp_rec = self.store.get_sp(iac_id)
        if sp_rec is None:
            return Refusal("unknown_iac_id")
        if now >= sp_rec.expires:
            return Refusal("expired_iac_id")
        sp = self.creds.service_providers.get(sp_rec.sp_name)
        if sp is None or service not in sp.services:
            return Refusal("sp_not_entitled", f"{sp_rec.sp_name} does not offer {service!r}")
        ss = self.store.get_ss(isr_id)
        if ss is None:
            return Refusal("unknown_isr_id")
        if now >= ss.expires:
            return Refusal("expired_isr_id")
        if not self.authz.entitled(ss.group, sp_rec.sp_name, service):
            return Refusal("ss_not_entitled",
                           f"group {ss.group} may not use {sp_rec.sp_name}/{service}")
        key = sp_service_key_from_root(ss.sp_root, isr_id, sp_rec.sp_name, service)
        return Grant(key, min(ss.expires, sp_rec.expires, now + self.grant_s), isr_id,
                     ss.identity, ss.group, sp_rec.sp_name, service)
