"""The shell's side of the RADIUS back end (`controller.admission.radius`): one UDP socket,
the datagrams the core asks for written to it, a green thread reading answers into the core.

The socket is bound to an ephemeral port on all addresses; which answers count (from a
configured server, for an outstanding request, authentic) is decided in the pure client.
"""
from __future__ import annotations

import logging
import socket
from typing import Callable

from controller.ryu_shell.framework import hub

log = logging.getLogger("crs.radius")
MAX_DATAGRAM = 4096


class RadiusIo:
    """`handle(host, port, data)` runs for every datagram read."""

    def __init__(self, handle: Callable[[str, int, bytes], None]):
        self.handle = handle
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 0))
        hub.spawn(self._read)
        log.info("RADIUS client on UDP port %d", self.sock.getsockname()[1])

    def send(self, host: str, port: int, data: bytes) -> None:
        """Write without yielding; a datagram lost here is resent on the client's timer."""
        try:
            getattr(self.sock, "fd", self.sock).sendto(data, socket.MSG_DONTWAIT, (host, port))
        except OSError as exc:
            log.info("RADIUS datagram to %s:%d not sent: %s", host, port, exc)

    def _read(self) -> None:
        while True:
            try:
                data, (host, port) = self.sock.recvfrom(MAX_DATAGRAM)
            except OSError as exc:      # e.g. ICMP port unreachable from a server that is down
                log.debug("RADIUS socket: %s", exc)
                continue
            try:
                self.handle(host, port, data)
            except Exception:   # a bug on one datagram must not stop the reader
                log.exception("RADIUS datagram from %s:%d failed", host, port)
