"""Our own small supplicant (peer) state machine, pure: frames in, frames and keys out.

Used by terminals that run our stack instead of wpa_supplicant, and by tests to drive the
authenticator end to end. On EAP-PSK success it yields the keys the terminal needs later:
MSK, EMSK, the ISR-ID and the CRS report key (same functions as the EAC: controller.admission.keys).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from .eap_md5 import md5_response, md5_value
from .eap_psk import PskPeer, key_setup
from .eapol import (
    PAE_GROUP_ADDR,
    EapCode,
    EapolType,
    EapType,
    MalformedFrame,
    build_eap,
    build_eap_frame,
    build_frame,
    parse_frame,
)
from .keys import isr_id, purpose_key


@dataclass(frozen=True)
class PeerKeys:
    msk: bytes
    emsk: bytes
    isr_id: str
    crs_report_key: bytes

    def as_json(self) -> dict:
        return {"msk": self.msk.hex(), "emsk": self.emsk.hex(), "isr_id": self.isr_id,
                "crs_report_key": self.crs_report_key.hex()}


@dataclass
class PeerStep:
    frames: list[bytes] = field(default_factory=list)
    status: str = "running"          # running | success | failure
    keys: PeerKeys | None = None
    note: str = ""


class Supplicant:
    """Peer side. Give ``psk`` (16 bytes) for EAP-PSK and/or ``md5_secret`` for legacy MD5.

    ``psk_id_p`` is for attack tests only: send it as EAP-PSK ID_P instead of ``identity``
    (an honest peer never does; the authenticator must refuse it at PSK-2)."""

    def __init__(self, identity: str, mac: str, psk: bytes | None = None,
                 md5_secret: bytes | None = None, rng: Callable[[int], bytes] = os.urandom,
                 psk_id_p: str | None = None):
        if psk is None and md5_secret is None:
            raise ValueError("a supplicant needs a PSK or an MD5 secret")
        self.identity = identity
        self.psk_id_p = identity if psk_id_p is None else psk_id_p
        self.mac = mac.lower()
        self.md5_secret = md5_secret
        self.rng = rng
        self._ak_kdk = key_setup(psk) if psk is not None else None
        self.peer: PskPeer | None = None
        self.authenticator: str = PAE_GROUP_ADDR
        self.pending: PeerKeys | None = None
        self.status = "idle"
        self.keys: PeerKeys | None = None

    def start(self) -> bytes:
        """EAPOL-Start to the PAE group address (also how a re-authentication is asked for)."""
        self.peer, self.pending, self.status = None, None, "running"
        return build_frame(PAE_GROUP_ADDR, self.mac, EapolType.START)

    def logoff(self) -> bytes:
        self.status, self.keys = "idle", None
        return build_frame(self.authenticator, self.mac, EapolType.LOGOFF)

    def handle(self, frame: bytes) -> PeerStep:
        """One received frame; frames not for us, or malformed, are ignored with a note."""
        try:
            f = parse_frame(frame)
        except MalformedFrame as exc:
            return PeerStep(note=f"malformed: {exc.reason}", status=self.status)
        if f.dst != self.mac or f.eap is None:
            return PeerStep(note="not for us", status=self.status)
        self.authenticator = f.src
        eap = f.eap
        if eap.code == EapCode.SUCCESS:
            if self.pending is None and self.md5_secret is None:
                return PeerStep(note="Success before the method finished: ignored",
                                status=self.status)
            self.status, self.keys = "success", self.pending
            return PeerStep(status="success", keys=self.pending)
        if eap.code == EapCode.FAILURE:
            self.status, self.pending = "failure", None
            return PeerStep(status="failure")
        if eap.code != EapCode.REQUEST:
            return PeerStep(note="unexpected EAP code", status=self.status)
        self.status = "running"
        if eap.type == EapType.IDENTITY:
            self.peer, self.pending = None, None
            return self._reply(build_eap(EapCode.RESPONSE, eap.identifier, EapType.IDENTITY,
                                         self.identity.encode()))
        if eap.type == EapType.PSK and self._ak_kdk is not None:
            if self.peer is None or (eap.data[:1] and eap.data[0] >> 6 == 0):
                self.peer = PskPeer(self.psk_id_p.encode(), *self._ak_kdk, rng=self.rng)
            res = self.peer.process(f.body)
            if res.success:
                self.pending = PeerKeys(res.msk, res.emsk, isr_id(res.emsk),
                                        purpose_key(res.emsk, "crs-report"))
            step = self._reply(res.reply) if res.reply else PeerStep(note=res.reason)
            if res.done and not res.success:
                step.note = res.reason
            return step
        if eap.type == EapType.MD5_CHALLENGE and self.md5_secret is not None:
            try:
                challenge, _ = md5_value(eap.data)
            except ValueError as exc:
                return PeerStep(note=str(exc))
            value = md5_response(eap.identifier, self.md5_secret, challenge)
            return self._reply(build_eap(EapCode.RESPONSE, eap.identifier, EapType.MD5_CHALLENGE,
                                         bytes([len(value)]) + value))
        if eap.type == EapType.NOTIFICATION:
            return self._reply(build_eap(EapCode.RESPONSE, eap.identifier, EapType.NOTIFICATION))
        # Unsupported method: Nak with what we can do (RFC 3748 §5.3.1).
        mine = bytes([t for t, ok in ((EapType.PSK, self._ak_kdk),
                                      (EapType.MD5_CHALLENGE, self.md5_secret))
                      if ok is not None and t != eap.type]) or b"\x00"
        return self._reply(build_eap(EapCode.RESPONSE, eap.identifier, EapType.NAK, mine))

    def _reply(self, eap: bytes) -> PeerStep:
        return PeerStep(frames=[build_eap_frame(self.authenticator, self.mac, eap)],
                        status=self.status)
