"""EAP-PSK (RFC 4764): key hierarchy, AES-CMAC/EAX and the four messages, server and peer.

Chosen because it gives mutual authentication and an MSK/EMSK from a 16-byte PSK with AES
only, and wpa_supplicant speaks it. Both sides are pure state objects working on EAP packet
bytes (the EAP header is associated data of the protected channel, so methods see it).
Byte layouts follow RFC 4764 §5 as implemented by hostapd (interop target):

  PSK-1 (req)  Flags(T=0) | RAND_S(16) | ID_S
  PSK-2 (resp) Flags(T=1) | RAND_S | RAND_P(16) | MAC_P(16) | ID_P
  PSK-3 (req)  Flags(T=2) | RAND_S | MAC_S(16) | PCHANNEL
  PSK-4 (resp) Flags(T=3) | RAND_S | PCHANNEL
  PCHANNEL = Nonce(4, big-endian) | Tag(16) | EAX-encrypted(R flag<<6 | E<<5 ...)
  EAX nonce = 12 zero bytes | Nonce; header (AD) = first 22 bytes of the EAP packet.
"""
from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field
from typing import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .eapol import Eap, EapCode, EapType, MalformedFrame, build_eap, parse_eap

BLOCK = 16
RAND_LEN = MAC_LEN = TEK_LEN = PSK_LEN = 16
MSK_LEN = EMSK_LEN = 64
HDR_AD_LEN = 22                    # Code, Id, Length, Type, Flags, RAND_S
R_CONT, R_DONE_SUCCESS, R_DONE_FAILURE = 1, 2, 3
E_FLAG = 0x20
MAX_ID_LEN = 1024


class PskError(Exception):
    """A PSK message that is invalid for the current state (reason in the text)."""


# --- primitives ---------------------------------------------------------------------

def aes_block(key: bytes, block: bytes) -> bytes:
    """One AES-128 block encryption (ECB on exactly one block): the RFC's E(K, x)."""
    if len(key) != 16 or len(block) != BLOCK:
        raise ValueError("AES-128 needs a 16-byte key and a 16-byte block")
    return aes_blocks(key, block)


_MASK = (1 << 128) - 1


def _dbl(x: int) -> int:
    """Doubling in GF(2^128) (RFC 4493's subkey step), without a branch on the secret."""
    return ((x << 1) & _MASK) ^ (0x87 * (x >> 127))


class Aes:
    """One AES-128 key with its cipher context set up once: E(K, x), AES-CMAC (= OMAC1),
    EAX's OMAC^t and CTR, all from the same ECB context. Setting up an OpenSSL 3 context
    costs more than the blocks of a whole EAP-PSK message, and a CMAC or CTR object is one
    more context each, every time: the server's PSK-2 took five CMACs and a CTR (six
    contexts), so each key now has one, and the chaining is done here a block at a time.
    ECB carries nothing from one call to the next, which is what makes that sound."""

    __slots__ = ("_key", "_enc", "_k1", "_k2", "_omac0")

    def __init__(self, key: bytes):
        if len(key) != 16:
            raise ValueError("AES-128 needs a 16-byte key")
        self._key = key
        self._enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        # L = E(K, 0) for the subkeys, and EAX's chain after the block [t]_16 for t = 0, 1, 2
        # ([0]_16 is 0): independent blocks, so one call
        e = self._enc.update(bytes(2 * BLOCK - 1) + b"\x01" + bytes(BLOCK - 1) + b"\x02")
        l_, one, two = (int.from_bytes(e[i:i + BLOCK], "big") for i in range(0, 3 * BLOCK, BLOCK))
        self._k1 = _dbl(l_)
        self._k2 = _dbl(self._k1)
        self._omac0 = (l_, one, two)

    def blocks(self, data: bytes) -> bytes:
        """E(K, x) of each 16-byte block of `data`."""
        if len(data) % BLOCK:
            raise ValueError("AES blocks are 16 bytes")
        return self._enc.update(data)

    def _chain(self, x: int, data: bytes) -> bytes:
        """CMAC's CBC chain from state `x` over `data` (non-empty, or `x` is 0), last block
        padded and masked with a subkey (RFC 4493 §2.4)."""
        n = max(1, -(-len(data) // BLOCK))
        enc = self._enc.update
        if n > _LONG:
            # a long message (an ID_P of up to MAX_ID_LEN, a forged channel): its chain in
            # one CBC pass in OpenSSL, as a block at a time here costs ~1.3 us a block
            head = (x ^ int.from_bytes(data[:BLOCK], "big")).to_bytes(BLOCK, "big")
            cbc = Cipher(algorithms.AES(self._key), modes.CBC(bytes(BLOCK))).encryptor()
            x = int.from_bytes(cbc.update(head + data[BLOCK:(n - 1) * BLOCK])[-BLOCK:], "big")
            n, data = 1, data[(n - 1) * BLOCK:]
        for i in range(0, (n - 1) * BLOCK, BLOCK):
            x = int.from_bytes(enc((x ^ int.from_bytes(data[i:i + BLOCK], "big"))
                                   .to_bytes(BLOCK, "big")), "big")
        last = data[(n - 1) * BLOCK:]
        if len(last) == BLOCK:
            m = int.from_bytes(last, "big") ^ self._k1
        else:
            m = int.from_bytes(last + b"\x80" + bytes(BLOCK - 1 - len(last)), "big") ^ self._k2
        return enc((x ^ m).to_bytes(BLOCK, "big"))

    def cmac(self, data: bytes) -> bytes:
        """AES-CMAC (RFC 4493) of `data`."""
        return self._chain(0, data)

    def omac(self, t: int, data: bytes) -> bytes:
        """EAX's OMAC^t(data) = CMAC([t]_16 || data), t in 0, 1, 2 (the chain after [t]_16
        is kept)."""
        if not data:
            return self._chain(0, bytes(BLOCK - 1) + bytes([t]))
        return self._chain(self._omac0[t], data)

    def ctr(self, counter: bytes, data: bytes) -> bytes:
        """AES-CTR from a 16-byte initial counter (incremented as one 128-bit number)."""
        if not data:
            return b""
        c = int.from_bytes(counter, "big")
        n = -(-len(data) // BLOCK)
        stream = self._enc.update(b"".join(((c + i) & _MASK).to_bytes(BLOCK, "big")
                                           for i in range(n)))
        return _xor(data, stream[:len(data)])

    def eax_encrypt(self, nonce: bytes, header: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
        """EAX (Bellare-Rogaway-Wagner): (ciphertext, 16-byte tag)."""
        n = self.omac(0, nonce)
        h = self.omac(1, header)
        ct = self.ctr(n, plaintext)
        return ct, _xor(_xor(n, h), self.omac(2, ct))

    def eax_decrypt(self, nonce: bytes, header: bytes, ciphertext: bytes, tag: bytes) -> bytes:
        """Verify the EAX tag (constant time) and decrypt; InvalidSignature if it does not."""
        n = self.omac(0, nonce)
        expect = _xor(_xor(n, self.omac(1, header)), self.omac(2, ciphertext))
        if len(tag) != BLOCK or not hmac.compare_digest(expect, tag):
            raise InvalidSignature("EAX tag mismatch")
        return self.ctr(n, ciphertext)


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


_LONG = 8           # blocks: a longer CMAC chain runs in OpenSSL (CBC)
_KEPT: dict[bytes, Aes] = {}
_KEPT_MAX = 4096    # subscribers' KDK contexts kept


def kept(key: bytes) -> Aes:
    """The context of a subscriber's KDK, kept from one of its authentications to the next
    (least recently used goes first); used only once MAC_P (or, on the peer, MAC_S) has
    shown the other side knows the key, so no one else can fill it or time it. Never a
    PSK, an AK (`_aes`) or a session's TEK (those live as long as their exchange)."""
    aes = _KEPT.pop(key, None)
    if aes is None:
        if len(_KEPT) >= _KEPT_MAX:
            del _KEPT[next(iter(_KEPT))]
        aes = Aes(key)
    _KEPT[key] = aes
    return aes


def aes_blocks(key: bytes, *blocks: bytes, keep: bool = False) -> bytes:
    """E(K, x) of each block (`keep`: with the key's kept context)."""
    if len(key) != 16 or any(len(b) != BLOCK for b in blocks):
        raise ValueError("AES-128 needs a 16-byte key and 16-byte blocks")
    if keep:
        return kept(key).blocks(b"".join(blocks))
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(b"".join(blocks)) + enc.finalize()


def _xor_last(block: bytes, c: int) -> bytes:
    return block[:-1] + bytes([block[-1] ^ c])


def key_setup(psk: bytes) -> tuple[bytes, bytes]:
    """RFC 4764 §3.1: AK, KDK from the PSK (one-way; store these, not the PSK)."""
    if len(psk) != PSK_LEN:
        raise ValueError("the EAP-PSK PSK is exactly 16 bytes")
    b = aes_block(psk, bytes(BLOCK))
    out = aes_blocks(psk, _xor_last(b, 1), _xor_last(b, 2))
    return out[:BLOCK], out[BLOCK:]


def derive_keys(kdk: bytes, rand_p: bytes) -> tuple[bytes, bytes, bytes]:
    """RFC 4764 §3.2: TEK (16), MSK (64), EMSK (64) from KDK and RAND_P (counters 1..9)."""
    b = aes_blocks(kdk, rand_p, keep=True)
    out = aes_blocks(kdk, *(_xor_last(b, i) for i in range(1, 10)), keep=True)
    return out[:16], out[16:80], out[80:144]


def mac_p(ak: bytes | Aes, id_p: bytes, id_s: bytes, rand_s: bytes, rand_p: bytes) -> bytes:
    return _aes(ak).cmac(id_p + id_s + rand_s + rand_p)


def mac_s(ak: bytes | Aes, id_s: bytes, rand_p: bytes) -> bytes:
    return _aes(ak).cmac(id_s + rand_p)


def _aes(key: bytes | Aes) -> Aes:
    """The AK's context for this exchange. Never kept across exchanges: MAC_P is checked
    before anything shows the peer knows the key, and a kept AK would make a forged PSK-2
    answer faster for a subscriber who authenticated lately (a timing oracle) and let
    anyone fill the cache with identities a template accepts."""
    return key if isinstance(key, Aes) else Aes(key)


def _nonce16(n: int) -> bytes:
    return bytes(12) + n.to_bytes(4, "big")


def _flags(t: int) -> int:
    return (t & 3) << 6


def _psk_body(eap: Eap, code: int, t: int, minimum: int) -> bytes:
    if eap.code != code or eap.type != EapType.PSK:
        raise PskError("not an EAP-PSK packet of the expected code")
    if len(eap.data) < minimum:
        raise PskError(f"EAP-PSK message T={t} too short ({len(eap.data)} < {minimum})")
    if eap.data[0] >> 6 != t:
        raise PskError(f"unexpected EAP-PSK T={eap.data[0] >> 6} (expected {t})")
    return eap.data


@dataclass
class PskResult:
    """Outcome of one processing step: a reply EAP packet to send (or None), and when
    ``done``, whether it succeeded and the keys. ``reason`` explains failures and drops."""

    reply: bytes | None = None
    done: bool = False
    success: bool = False
    msk: bytes = b""
    emsk: bytes = b""
    id_p: bytes = b""
    reason: str = ""
    id_mismatch: bool = False       # PSK-2's ID_P is not the EAP identity (server side)


def _show(identity: bytes) -> str:
    """An identity from the wire, printable in a log line (repr of its text, shortened)."""
    return repr(identity[:64].decode(errors="replace"))


Lookup = Callable[[bytes], "tuple[bytes, bytes] | None"]


@dataclass
class PskServer:
    """Server side (the EAC). ``lookup(id_p) -> (ak, kdk) | None`` gives stored credentials.

    ``expected_id_p`` is the identity the peer gave in EAP-Response/Identity: a PSK-2 whose
    ID_P differs fails at once, before any key is looked up and before PSK-3 could tell the
    peer DONE_SUCCESS (the identity that got in must be the one whose key proved it)."""

    id_s: bytes
    lookup: Lookup
    rng: Callable[[int], bytes] = os.urandom
    expected_id_p: bytes | None = None
    state: str = "init"
    rand_s: bytes = b""
    rand_p: bytes = b""
    id_p: bytes = b""
    _keys: tuple[bytes, bytes, bytes] | None = field(default=None, repr=False)
    _tek: Aes | None = field(default=None, repr=False)      # PSK-3 and PSK-4's channel

    def first(self, identifier: int) -> bytes:
        """PSK-1: Flags T=0, RAND_S, ID_S."""
        self.rand_s = self.rng(RAND_LEN)
        self.state = "sent1"
        return build_eap(EapCode.REQUEST, identifier, EapType.PSK,
                         bytes([_flags(0)]) + self.rand_s + self.id_s)

    def process(self, packet: bytes, next_identifier: int, accept: bool = True) -> PskResult:
        """Handle PSK-2 (-> PSK-3 or failure) or PSK-4 (-> done). ``accept=False`` makes
        PSK-3 carry DONE_FAILURE (authenticated but not authorised)."""
        try:
            eap = parse_eap(packet)
            if self.state == "sent1":
                return self._on_2(eap, packet, next_identifier, accept)
            if self.state in ("sent3", "sent3_reject"):
                return self._on_4(eap, packet)
            return PskResult(reason=f"unexpected message in state {self.state}")
        except (MalformedFrame, PskError) as exc:
            return PskResult(reason=str(exc))

    def _on_2(self, eap: Eap, packet: bytes, ident: int, accept: bool) -> PskResult:
        d = _psk_body(eap, EapCode.RESPONSE, 1, 1 + 3 * BLOCK + 1)
        rand_s, rand_p, mac, id_p = d[1:17], d[17:33], d[33:49], d[49:]
        if rand_s != self.rand_s:
            return PskResult(reason="PSK-2 RAND_S does not match ours (stale or replayed)")
        if len(id_p) > MAX_ID_LEN:
            self.state = "failed"
            return PskResult(done=True, reason="ID_P too long")
        if self.expected_id_p is not None and id_p != self.expected_id_p:
            self.state = "failed"
            return PskResult(done=True, id_p=id_p, id_mismatch=True,
                             reason=f"ID_P {_show(id_p)} differs from the EAP identity "
                                    f"{_show(self.expected_id_p)}")
        creds = self.lookup(id_p)
        if creds is None:
            self.state = "failed"
            return PskResult(done=True, id_p=id_p, reason="unknown ID_P")
        ak, kdk = creds
        ak = Aes(ak)        # MAC_P, then MAC_S with the same context
        if not hmac.compare_digest(mac, mac_p(ak, id_p, self.id_s, rand_s, rand_p)):
            self.state = "failed"
            return PskResult(done=True, id_p=id_p, reason="invalid MAC_P")
        self.rand_p, self.id_p = rand_p, id_p
        self._keys = derive_keys(kdk, rand_p)
        self._tek = Aes(self._keys[0])
        head = bytes([_flags(2)]) + rand_s + mac_s(ak, self.id_s, rand_p)
        r = R_DONE_SUCCESS if accept else R_DONE_FAILURE
        plain = bytes([r << 6])
        length = 4 + 1 + len(head) + 4 + BLOCK + len(plain)
        ad = bytes([EapCode.REQUEST, ident]) + length.to_bytes(2, "big") + bytes([EapType.PSK]) \
            + head[:17]
        ct, tag = self._tek.eax_encrypt(_nonce16(0), ad, plain)
        reply = build_eap(EapCode.REQUEST, ident, EapType.PSK,
                          head + (0).to_bytes(4, "big") + tag + ct)
        self.state = "sent3" if accept else "sent3_reject"
        return PskResult(reply=reply, id_p=id_p)

    def _on_4(self, eap: Eap, packet: bytes) -> PskResult:
        d = _psk_body(eap, EapCode.RESPONSE, 3, 1 + BLOCK + 4 + BLOCK + 1)
        if d[1:17] != self.rand_s:
            return PskResult(reason="PSK-4 RAND_S does not match ours")
        nonce = int.from_bytes(d[17:21], "big")
        if nonce != 1:
            return PskResult(reason=f"PSK-4 nonce {nonce} is not the server nonce + 1")
        tag, ct = d[21:37], d[37:]
        assert self._keys is not None and self._tek is not None
        try:
            plain = self._tek.eax_decrypt(_nonce16(nonce), packet[:HDR_AD_LEN], ct, tag)
        except InvalidSignature:
            self.state = "failed"
            return PskResult(done=True, id_p=self.id_p, reason="PSK-4 PCHANNEL does not verify")
        r = plain[0] >> 6
        if self.state == "sent3_reject" or r != R_DONE_SUCCESS or plain[0] & E_FLAG:
            self.state = "failed"
            return PskResult(done=True, id_p=self.id_p, reason=f"peer or server ended with R={r}")
        self.state = "success"
        _, msk, emsk = self._keys
        return PskResult(done=True, success=True, msk=msk, emsk=emsk, id_p=self.id_p)


@dataclass
class PskPeer:
    """Peer side (our supplicant), keyed with AK/KDK (derive them with ``key_setup``)."""

    id_p: bytes
    ak: bytes
    kdk: bytes
    rng: Callable[[int], bytes] = os.urandom
    state: str = "init"
    rand_p: bytes = b""
    id_s: bytes = b""

    def process(self, packet: bytes) -> PskResult:
        """Handle PSK-1 (-> PSK-2) or PSK-3 (-> PSK-4, done, keys if DONE_SUCCESS)."""
        try:
            eap = parse_eap(packet)
            if self.state == "init":
                return self._on_1(eap)
            if self.state == "sent2":
                return self._on_3(eap, packet)
            return PskResult(reason=f"unexpected message in state {self.state}")
        except (MalformedFrame, PskError) as exc:
            return PskResult(reason=str(exc))

    def _on_1(self, eap: Eap) -> PskResult:
        d = _psk_body(eap, EapCode.REQUEST, 0, 1 + BLOCK)
        rand_s, self.id_s = d[1:17], d[17:]
        self.rand_p = self.rng(RAND_LEN)
        m = mac_p(self.ak, self.id_p, self.id_s, rand_s, self.rand_p)
        self.state = "sent2"
        return PskResult(reply=build_eap(EapCode.RESPONSE, eap.identifier, EapType.PSK,
                                         bytes([_flags(1)]) + rand_s + self.rand_p + m + self.id_p))

    def _on_3(self, eap: Eap, packet: bytes) -> PskResult:
        d = _psk_body(eap, EapCode.REQUEST, 2, 1 + 2 * BLOCK + 4 + BLOCK + 1)
        rand_s, ms = d[1:17], d[17:33]
        if not hmac.compare_digest(ms, mac_s(self.ak, self.id_s, self.rand_p)):
            self.state = "failed"
            return PskResult(done=True, reason="invalid MAC_S: the server does not know our key")
        tek_key, msk, emsk = derive_keys(self.kdk, self.rand_p)
        tek = Aes(tek_key)
        nonce = int.from_bytes(d[33:37], "big")
        try:
            plain = tek.eax_decrypt(_nonce16(nonce), packet[:HDR_AD_LEN], d[53:], d[37:53])
        except InvalidSignature:
            return PskResult(reason="PSK-3 PCHANNEL does not verify (ignored)")
        r = plain[0] >> 6
        ok = r == R_DONE_SUCCESS and not plain[0] & E_FLAG
        out = bytes([(R_DONE_SUCCESS if ok else R_DONE_FAILURE) << 6])
        n2 = (nonce + 1) & 0xFFFFFFFF
        length = 4 + 1 + 1 + BLOCK + 4 + BLOCK + len(out)
        ad = bytes([EapCode.RESPONSE, eap.identifier]) + length.to_bytes(2, "big") \
            + bytes([EapType.PSK, _flags(3)]) + rand_s
        ct, tag = tek.eax_encrypt(_nonce16(n2), ad, out)
        reply = build_eap(EapCode.RESPONSE, eap.identifier, EapType.PSK,
                          bytes([_flags(3)]) + rand_s + n2.to_bytes(4, "big") + tag + ct)
        self.state = "success" if ok else "failed"
        if not ok:
            return PskResult(reply=reply, done=True, reason=f"server sent R={r}")
        return PskResult(reply=reply, done=True, success=True, msk=msk, emsk=emsk, id_p=self.id_p)
