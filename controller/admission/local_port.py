"""EAPOL through the switch's LOCAL port instead of packet-ins (`admission.eapol_transport:
local`), the transport Faucet uses for chewie: it skips OpenFlow's packet-in and packet-out
legs and their encoding in both directions, most of an EAP exchange's time outside the core.

The switch tells the controller which port a frame came from; the terminal never can. An
edge port's EAPOL to the PAE group address or to the authenticator is metered, its
destination rewritten to a port MAC (locally administered, unicast: 0e:KK:PP:PP:PP:PP, K
which of the two destinations, P the switch port) and sent out of LOCAL, where the
controller reads it with a raw socket. Anything the terminal writes into those bytes is
overwritten by the switch; EAPOL to any other destination still arrives as a packet-in (and
is refused there). The controller answers with the port MAC as source; table 0 takes only
such frames from LOCAL, puts the authenticator's MAC back and sends each out of the one port
its source names. Every other frame from LOCAL is dropped.

With `admission.eapol_transport: port` the controller also reads each edge port's own host
interface (the switch's end of the terminal's link, as hostapd reads its port), which skips
the switch in both directions: `from_port` turns what it reads there into the frame the
switch would have written into LOCAL, so the core sees one transport, and `for_port` turns an
answer back. The switch drops such a port's EAPOL (`direct_flow`) so that it is not read
twice.

The LOCAL port must not be a flood target (`ovs-ofctl -O OpenFlow10 mod-port BR BR
no-flood`) and its host interface must not hand frames to the host's IP stack; `crs net up`
does both (`controller.emulation.net`).
"""
from __future__ import annotations

from controller.admission.eapol import PAE_GROUP_ADDR
from controller.openflow.ofmsg import (
    ETH_TYPE_EAPOL,
    OFPP_LOCAL,
    Apply,
    Message,
    Meter,
    Output,
    SetField,
)
from controller.openflow.tables import ADMISSION, Priority

PREFIX = 0x0E
TO_GROUP, TO_AUTHENTICATOR = 0, 1      # which destination the terminal used
MAX_PORT = 0xFFFFFF00                  # OF1.3 physical ports are below this


def port_mac(port: int, kind: int = TO_GROUP) -> str:
    b = bytes((PREFIX, kind)) + port.to_bytes(4, "big")
    return ":".join(f"{x:02x}" for x in b)


def flows(port: int, meter: int, auth_mac: str) -> list[Message]:
    """One edge port's EAPOL both ways: its frames to the two EAPOL destinations out of
    LOCAL with the port in the destination, and the controller's answers from LOCAL back
    to it (only those whose source names this port)."""
    out: list[Message] = []
    for kind, dst in ((TO_GROUP, PAE_GROUP_ADDR), (TO_AUTHENTICATOR, auth_mac)):
        out.append(ADMISSION.flow(
            Priority.ADM_CONTROL + 2,
            {"in_port": port, "eth_type": ETH_TYPE_EAPOL, "eth_dst": dst},
            [Meter(meter), Apply((SetField("eth_dst", port_mac(port, kind)),
                                  Output(OFPP_LOCAL)))]))
    out.append(ADMISSION.flow(
        Priority.ADM_CONTROL + 2,
        {"in_port": OFPP_LOCAL, "eth_type": ETH_TYPE_EAPOL, "eth_src": port_mac(port)},
        [Apply((SetField("eth_src", auth_mac), Output(port)))]))
    return out


def direct_flow(port: int) -> Message:
    """An edge port whose own interface the controller reads: its EAPOL stops at the
    switch (above `flows`, which stay for the answers a fallback sends through LOCAL)."""
    return ADMISSION.flow(Priority.ADM_CONTROL + 3,
                          {"in_port": port, "eth_type": ETH_TYPE_EAPOL}, [])


def direct_flow_delete(port: int) -> Message:
    return ADMISSION.delete_match({"in_port": port, "eth_type": ETH_TYPE_EAPOL},
                                  Priority.ADM_CONTROL + 3)


def base_flows() -> list[Message]:
    """From LOCAL, only the answers of `flows` pass: the rest (the host's own frames on
    that interface, a stale answer for a port gone) is dropped, never seen as EAPOL from
    a port called LOCAL."""
    return [ADMISSION.flow(Priority.ADM_CONTROL + 1, {"in_port": OFPP_LOCAL}, [])]


def from_switch(data: bytes, auth_mac: bytes) -> tuple[int, bytes] | None:
    """(port, the frame as the terminal sent it) for a frame read from LOCAL, or None if
    the switch did not write it (not EAPOL, not a port MAC: never trusted)."""
    if len(data) < 14 or data[12:14] != b"\x88\x8e" or data[0] != PREFIX:
        return None
    kind, port = data[1], int.from_bytes(data[2:6], "big")
    if kind not in (TO_GROUP, TO_AUTHENTICATOR) or not 0 < port < MAX_PORT:
        return None
    dst = _GROUP if kind == TO_GROUP else auth_mac
    return port, dst + data[6:]


def to_switch(data: bytes, port: int) -> bytes:
    """An authenticator's frame for `port`, as written into LOCAL: its source names the
    port (table 0 puts the authenticator's MAC back)."""
    return data[:6] + bytes((PREFIX, TO_GROUP)) + port.to_bytes(4, "big") + data[12:]


_GROUP = bytes.fromhex(PAE_GROUP_ADDR.replace(":", ""))


def from_port(data: bytes, port: int, auth_mac: bytes) -> bytes | None:
    """A frame read on edge port `port`'s own interface, as the switch's `flows` would have
    written it into LOCAL (the port in its destination); None for what those flows would
    not forward there: not EAPOL, or not to the PAE group address or the authenticator.
    `port` is the interface's, never anything in the frame."""
    if len(data) < 14 or data[12:14] != b"\x88\x8e" or not 0 < port < MAX_PORT:
        return None
    dst = data[:6]
    kind = TO_GROUP if dst == _GROUP else TO_AUTHENTICATOR if dst == auth_mac else None
    if kind is None:
        return None
    return bytes((PREFIX, kind)) + port.to_bytes(4, "big") + data[6:]


def answer_port(data: bytes) -> int | None:
    """The port an answer made for LOCAL (`to_switch`) is for."""
    if len(data) < 14 or data[6] != PREFIX or data[7] != TO_GROUP:
        return None
    port = int.from_bytes(data[8:12], "big")
    return port if 0 < port < MAX_PORT else None


def for_port(data: bytes, auth_mac: bytes) -> bytes:
    """An answer made for LOCAL as written on the port itself: the authenticator's MAC as
    its source, as the switch's return flow would have put it."""
    return data[:6] + auth_mac + data[12:]
