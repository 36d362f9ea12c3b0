"""The service port moves with leadership (`ha.service_port`).

Terminals and service providers reach the controller's HTTP services (CRSAP reports, the
EAC's inquiries) at one address and port, whichever controller leads. On one host (the
emulation, or controllers sharing a machine) only the leader listens on that port: it opens
it when it takes over and closes it when it steps down; a new leader that finds the port
still held (a deposed leader not yet stepped down) retries until it is free. Across hosts
the service IP address must follow the leader as well (docs/scale-out.md: a VRRP daemon
whose health check asks `/crs/v1/status` for `ha.role`).

The socket is opened without SO_REUSEPORT (eventlet's default would set it): with it two
controllers could both listen, and the kernel would split terminals between them.
"""
from __future__ import annotations

import logging
import socket
from typing import Any, Callable

from controller.ryu_shell.framework import hub

log = logging.getLogger("crs.ha")

RETRY_S = 0.05


class ServicePort:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        # set by the launcher once the REST server exists: () -> httpserver.Server
        self.make_server: Callable[[], Any] | None = None
        self._want = False
        self._thread: Any = None
        self._server: Any = None
        self.opened = 0

    @property
    def listening(self) -> bool:
        return self._server is not None

    def open(self) -> None:
        """Listen as soon as the port is free (and the REST server is up)."""
        self._want = True
        if self._thread is None:
            self._thread = hub.spawn(self._run)

    def close(self) -> None:
        """Stop listening now (connections already open are answered as a standby)."""
        self._want = False
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            log.info("service port %d closed", self.port)

    def status(self) -> dict[str, Any]:
        return {"port": self.port, "listening": self.listening}

    def _run(self) -> None:
        try:
            waited = False
            while self._want:
                sock = self._bind() if self.make_server is not None else None
                if sock is None:
                    if not waited:
                        log.info("service port %d busy: waiting for it", self.port)
                        waited = True
                    hub.sleep(RETRY_S)
                    continue
                self._server = server = self.make_server()
                self.opened += 1
                log.info("listening on the service port %d", self.port)
                if not self._want:          # stepped down while binding
                    self.close()
                server.serve(sock)          # returns when closed
                waited = False
        finally:
            self._thread = None

    def _bind(self) -> socket.socket | None:
        import eventlet
        try:
            return eventlet.listen((self.host, self.port), reuse_addr=True, reuse_port=False,
                                   backlog=1024)
        except OSError:
            return None
