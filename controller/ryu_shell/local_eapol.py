"""The shell's side of the LOCAL-port EAPOL transport (`controller.admission.local_port`):
one raw socket per switch on its LOCAL port's host interface, a green thread reading it into
the core, and the writes of the core's `LocalFrame`s.

The socket takes every frame of the interface (ETH_P_ALL: protocol-bound sockets are served
after the interface's ingress filter, which drops everything for the host's IP stack) through
a kernel filter that keeps EAPOL only, and never sees its own writes.
"""
from __future__ import annotations

import errno
import logging
import socket
from typing import Callable

from controller.rawsock import PACKET_OUTGOING, bound_socket
from controller.ryu_shell.framework import hub

log = logging.getLogger("crs.local_eapol")
ETH_P_EAPOL = 0x888E


MAX_READ = 64           # frames taken from a socket in one go (then the others get a turn)
REOPEN_S = (0.5, 30.0)  # a failed socket is opened again after 0.5 s, doubling up to 30 s


def _pending(sock: socket.socket) -> list[bytes]:
    """The frames already queued on the socket, without waiting (never yields): frames
    that arrived while the previous ones were handled go to the core together."""
    raw = getattr(sock, "fd", sock)
    out: list[bytes] = []
    while len(out) < MAX_READ:
        try:
            data, addr = raw.recvfrom(2048, socket.MSG_DONTWAIT)
        except OSError:          # nothing more (EAGAIN), or the socket went away
            break
        if addr[2] != PACKET_OUTGOING:
            out.append(data)
    return out


class LocalEapol:
    """Raw sockets by datapath id. `handle(dpid, frames)` runs for the frames of each read
    (one, and those queued behind it)."""

    def __init__(self, handle: Callable[[int, list[bytes]], None]):
        self.handle = handle
        self.socks: dict[int, socket.socket] = {}
        self.names: dict[int, str] = {}     # the interface each connected switch is read on
        # its reopening: one chain of retries per opening (`open` and `close` end the old
        # one), the delay doubling with each failure of that opening's sockets
        self._retry: dict[int, tuple[object, float]] = {}

    def open(self, dpid: int, ifname: str) -> bool:
        """Read `ifname` for switch `dpid` (replacing an earlier socket); False, logged,
        if it cannot be opened (the switch's EAPOL then stays with packet-ins)."""
        self.close(dpid)
        try:
            self._start(dpid, ifname)
        except OSError as exc:
            log.warning("switch %016x: cannot read interface %r (%s): EAPOL stays with "
                        "packet-ins", dpid, ifname, exc)
            return False
        self.names[dpid] = ifname
        self._retry[dpid] = (object(), REOPEN_S[0])
        log.info("switch %016x: EAPOL through its LOCAL port (%s)", dpid, ifname)
        return True

    def _start(self, dpid: int, ifname: str) -> None:
        sock = bound_socket(ifname, ETH_P_EAPOL)
        self.socks[dpid] = sock
        hub.spawn(self._read, dpid, sock)

    def close(self, dpid: int) -> None:
        self.names.pop(dpid, None)
        self._retry.pop(dpid, None)
        sock = self.socks.pop(dpid, None)
        if sock is not None:
            sock.close()

    def _failed(self, dpid: int) -> None:
        """Its socket failed for good: opened again later, once per failure."""
        token, delay = self._retry.get(dpid, (None, REOPEN_S[0]))
        if token is None:
            return
        log.warning("switch %016x: EAPOL socket failed; opening it again in %.1f s", dpid,
                    delay)
        self._retry[dpid] = (token, min(2 * delay, REOPEN_S[1]))
        hub.spawn_after(delay, self._reopen, dpid, token)

    def _reopen(self, dpid: int, token: object) -> None:
        """A socket that failed for good is opened again while its switch is connected
        (its flows still send EAPOL to LOCAL: unread, nobody could authenticate there)."""
        ifname = self.names.get(dpid)
        if ifname is None or self._retry.get(dpid, (None,))[0] is not token or \
                dpid in self.socks:
            return          # the switch went, or was read anew meanwhile
        try:
            self._start(dpid, ifname)
        except OSError as exc:
            log.warning("switch %016x: EAPOL socket not opened again: %s", dpid, exc)
            self._failed(dpid)
            return
        log.info("switch %016x: EAPOL socket on %s opened again", dpid, ifname)

    def can_send(self, dpid: int) -> bool:
        return dpid in self.socks

    def send(self, dpid: int, data: bytes) -> None:
        """Write a frame without ever yielding to other green threads (the caller may be
        inside a core call): a full socket buffer drops it, as a busy link would, and the
        authenticator's retransmission covers it."""
        sock = self.socks.get(dpid)
        if sock is None:
            return
        try:
            getattr(sock, "fd", sock).send(data, socket.MSG_DONTWAIT)
        except OSError as exc:     # buffer full, or the interface went away with its switch
            log.info("switch %016x: EAPOL write failed: %s", dpid, exc)

    def _read(self, dpid: int, sock: socket.socket) -> None:
        while self.socks.get(dpid) is sock:
            try:
                data, addr = sock.recvfrom(2048)
            except OSError as exc:
                if exc.errno == errno.ENETDOWN and self.socks.get(dpid) is sock:
                    hub.sleep(0.1)      # the interface is (still) down: wait for it
                    continue
                if self.socks.get(dpid) is sock:
                    log.warning("switch %016x: EAPOL socket failed: %s", dpid, exc)
                    self.socks.pop(dpid, None)
                    sock.close()
                    self._failed(dpid)
                return
            frames = [] if addr[2] == PACKET_OUTGOING else [data]
            frames += _pending(sock)
            if not frames:
                continue
            try:
                self.handle(dpid, frames)
            except Exception:   # a bug on one frame must not stop the reader
                log.exception("switch %016x: EAPOL frame failed", dpid)
            hub.sleep(0)        # a flood on one switch: the others, OpenFlow, reports go on
