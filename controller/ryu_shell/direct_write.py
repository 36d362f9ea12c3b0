"""A switch's messages written on its connection at once, when nothing is queued before
them, instead of through Ryu's send queue and the greenlet that empties it.

Ryu queues every buffer for a switch and a greenlet per switch writes it later: after the
hub's next turn, one switch after another. An admission writes to every switch of the
network (the terminal's place in forwarding, its table-0 flows at its edge switch): on
2 vCPUs the last of seven writes left 0.45 ms after the first, and the first 0.17 ms after
the controller had the bytes (a perf trace of `crs bench auth`, docs/benchmarks.md,
2026-12-02). Written here, they leave as they are made.

Order and integrity come first. A write goes directly only when Ryu's queue for that switch
is empty, no other green thread waits to queue (Ryu's send takes a fair semaphore first: a
sender woken but not yet run would otherwise be overtaken, and the tail of a write cut short
would queue behind it, splitting the message) and its greenlet is not inside a write
(`Tracked` wraps the connection's socket and says so: a write that found the socket full
yields with the rest of its buffer still to go, and bytes written meanwhile would land
inside it). The socket is Ryu's own
non-blocking one: what the kernel does not take at once is queued through Ryu as before,
so it leaves next and whole, and any error is left to Ryu's writer to meet and handle (it
closes the connection as it would have); TLS connections go through Ryu whole. Until the
tracked socket has carried one queued write, the writer may still be in a write that began
before it was wrapped: nothing is written directly then.
"""
from __future__ import annotations

import ssl
from typing import Any


class Tracked:
    """Ryu's socket for one switch, saying whether Ryu's writer is inside `sendall`."""

    def __init__(self, sock: Any):
        self._sock = sock
        self.sending = False
        self.ready = False        # one queued write went through here since it was wrapped

    def sendall(self, data: bytes, *args: Any) -> Any:
        self.sending = True
        try:
            return self._sock.sendall(data, *args)
        finally:
            self.sending = False
            self.ready = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def track(dp: Any) -> None:
    """Wrap a connected switch's socket (once); a framework whose datapath has no socket or
    send queue is left alone (everything goes through its queue)."""
    sock = getattr(dp, "socket", None)
    if sock is None or isinstance(sock, Tracked) or not hasattr(dp, "send_q"):
        return
    dp.socket = Tracked(sock)


def write(dp: Any, data: bytes) -> bool:
    """Write `data` to the switch now if that keeps the connection's order; else (or for
    what the kernel did not take) queue it through Ryu. False: the connection is closing
    and nothing was sent (as Ryu's `send`)."""
    sock, q = getattr(dp, "socket", None), getattr(dp, "send_q", None)
    if q is None:
        return bool(dp.send(data))        # (closing: Ryu discards it and says so)
    waiting = getattr(getattr(dp, "_send_q_sem", None), "_waiters", None)
    if isinstance(sock, Tracked) and sock.ready and not sock.sending and q.empty() and \
            waiting is not None and not waiting:
        raw = getattr(sock._sock, "fd", None)    # eventlet's own non-blocking socket
        # (TLS: a record cut short must be finished with the same bytes: Ryu's writer)
        if raw is not None and not isinstance(sock._sock, ssl.SSLSocket):
            try:
                n = raw.send(data)
            except OSError:     # full (EAGAIN), or broken: Ryu's writer meets it and closes
                n = 0
            if n == len(data):
                return True
            data = data[n:]
    return bool(dp.send(data))
