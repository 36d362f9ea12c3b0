"""Inter-switch link discovery by LLDP, for networks without a topology file.

Without a file the controller must still tell a switch-to-switch port from a terminal's
port: a terminal is connected where its frames first arrive, and its restrictions are
written on that port, so a trunk taken for an edge would cut the network and an edge taken
for a trunk would set a terminal free. The controller sends an LLDP frame out of every port
that comes up, naming (dpid, port); where one arrives on another switch, both ports are
inter-switch.

Terminals receive those frames too and can send anything back, so each one carries a
timestamp and an HMAC under a secret of this controller process: a forged frame, one older
than `max_age_s`, or one looped back into its own switch is refused and counted. Within
`max_age_s` two colluding terminals could still relay a genuine frame between their ports;
so a port is never made inter-switch here: `owners.standalone` decides (never a port that
carries a terminal). Links outlive a switch's disconnection: only a port seen down ends one.
"""
from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field

LLDP_DST = bytes.fromhex("0180c200000e")
ETH_TYPE_LLDP = 0x88CC
_OUI = bytes.fromhex("0226e1")       # an organisation-specific TLV of ours (not registered)


def _tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!H", kind << 9 | len(value)) + value


def _tlvs(payload: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i + 2 <= len(payload):
        (head,) = struct.unpack("!H", payload[i:i + 2])
        kind, length = head >> 9, head & 0x1FF
        if kind == 0 or i + 2 + length > len(payload):
            break
        out.setdefault(kind, payload[i + 2:i + 2 + length])
        i += 2 + length
    return out


@dataclass
class Links:
    secret: bytes
    src_mac: bytes = bytes.fromhex("0200000000fe")
    max_age_s: float = 5.0
    # (dpid, port) -> the (dpid, port) at the other end
    peer: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)

    def probe(self, dpid: int, port: int, now: float) -> bytes:
        """The LLDP frame to send out of (dpid, port)."""
        ms = int(now * 1000)
        body = struct.pack("!QIQ", dpid, port, ms)
        tag = hmac.new(self.secret, body, hashlib.sha256).digest()[:16]
        return (LLDP_DST + self.src_mac + struct.pack("!H", ETH_TYPE_LLDP)
                + _tlv(1, b"\x07" + f"dpid:{dpid:016x}".encode())
                + _tlv(2, b"\x07" + str(port).encode())
                + _tlv(3, struct.pack("!H", 120))
                + _tlv(127, _OUI + b"\x01" + body + tag) + _tlv(0, b""))

    def heard(self, dpid: int, port: int, frame: bytes, now: float
              ) -> tuple[tuple[int, int] | None, str]:
        """An LLDP frame arrived at (dpid, port): (the far end, "ours") for one of ours,
        else (None, why it was refused). Nothing is recorded: the caller decides (`add`)."""
        if len(frame) < 14 or frame[12:14] != struct.pack("!H", ETH_TYPE_LLDP):
            return None, "not_lldp"
        org = _tlvs(frame[14:]).get(127, b"")
        if len(org) != 4 + 20 + 16 or org[:4] != _OUI + b"\x01":
            return None, "foreign"
        body, tag = org[4:24], org[24:]
        if not hmac.compare_digest(tag, hmac.new(self.secret, body, hashlib.sha256)
                                   .digest()[:16]):
            return None, "forged"
        far_dpid, far_port, ms = struct.unpack("!QIQ", body)
        if not now - self.max_age_s <= ms / 1000 <= now + 1.0:
            return None, "stale"
        if far_dpid == dpid:
            return None, "looped"       # back into its own switch: no inter-switch link
        return (far_dpid, far_port), "ours"

    def add(self, here: tuple[int, int], far: tuple[int, int]) -> list[tuple[int, int]]:
        """Record the link here-far; returns the ports that became inter-switch (none when
        it was known), after forgetting a link either end had before."""
        if self.peer.get(here) == far and self.peer.get(far) == here:
            return []
        for a in (here, far):
            self.port_down(*a)
        self.peer[here], self.peer[far] = far, here
        return [here, far]

    def trunk(self, dpid: int, port: int) -> bool:
        return (dpid, port) in self.peer

    def port_down(self, dpid: int, port: int) -> list[tuple[int, int]]:
        """Forget the link on (dpid, port); returns the ports that stopped being
        inter-switch."""
        far = self.peer.pop((dpid, port), None)
        if far is None:
            return []
        if self.peer.get(far) == (dpid, port):
            del self.peer[far]
            return [(dpid, port), far]
        return [(dpid, port)]
