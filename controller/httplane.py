"""The CRSAP lane of the REST server: every connection's reports served by one green thread.

Terminals post reports many times a second on keep-alive connections. Served one green thread
per connection, each report costs a wake-up of its thread, a hand-off to the group commit and
a wake-up back (eventlet's hub is Python: these switches cost more than the report's SCS
work). Here one green thread waits on one epoll set holding every connection it serves:
whatever requests are complete when it wakes go to `batch` together (one call, so one store
transaction: the group commit), and their answers go out in one pass. The REST API stays
where it is: a connection whose request is not for the lane (another path or method) is
handed, with what was read of it, to the server's ordinary per-connection thread.

The guards are those of `controller.httpserver` (the server's accept loop applies the
connection caps before a connection gets here): request heads of at most MAX_HEAD bytes,
bodies only with a Content-Length of at most `max_body` (no chunked uploads: 411), a request
must arrive within REQUEST_DEADLINE_S once begun, a connection idle (or not reading its
answers) for the socket timeout is closed, no traceback to clients. A connection is read only
when it has no request in progress, nothing left to send and less than one largest request
already buffered; its buffered requests are served one per turn, from a read offset (no copy
of the rest per request), so a client that pipelines holds at most one largest request plus
one read here, however fast it sends and reads.
"""
from __future__ import annotations

import errno
import logging
import time
from typing import Any, Callable

from controller import httpserver as hs

log = logging.getLogger("crs.http")
MAX_BATCH = 256             # requests handed to `batch` in one call at most
SCAN_S = 0.25               # how often deadlines and idle connections are checked
Batch = Callable[[list[bytes]], list[tuple[int, bytes]]]
_HEADS: dict[tuple[int, bool], bytes] = {}


def answer_head(status: int, length: int, close: bool) -> bytes:
    """The status line and headers of a lane answer (JSON), built once per status."""
    head = _HEADS.get((status, close))
    if head is None:
        head = _HEADS[(status, close)] = hs.response(
            status, [("Content-Type", "application/json")], b"", close).replace(
            b"Content-Length: 0", b"Content-Length: %d")
    return head % length


class _Conn:
    __slots__ = ("sock", "raw", "source", "buf", "pos", "out", "busy", "close", "last",
                 "began", "mask")

    def __init__(self, sock: Any, source: str, now: float):
        self.sock, self.raw, self.source = sock, sock.fd, source   # green, and the OS socket
        self.buf, self.pos, self.out = b"", 0, b""     # requests read; next one at pos
        self.busy = self.close = False
        self.last, self.began = now, None       # last progress; start of the request
        self.mask = 0                           # what epoll waits for on it


class Lane:
    """Serves `path` (POST) for the connections `server` hands it; see the module text."""

    def __init__(self, server: Any, path: str, batch: Batch):
        from eventlet.patcher import original
        self.server, self.path, self.batch = server, path, batch
        self._select = original("select")       # eventlet's patch removes epoll
        self.ep = self._select.epoll()
        self.conns: dict[int, _Conn] = {}
        self.again: list[_Conn] = []             # complete requests left in their buffer
        self._scan_at = 0.0
        self._batch_cpu = 0.0
        # a connection with this much buffered is not read until it is served down
        self._enough = hs.MAX_HEAD + 4 + server.max_body

    def add(self, sock: Any, source: str) -> None:
        c = _Conn(sock, source, time.monotonic())
        self.conns[c.raw.fileno()] = c
        c.mask = self._select.EPOLLIN
        self.ep.register(c.raw.fileno(), c.mask)

    def run(self) -> None:
        """Wait for readable connections, serve what is complete, for ever."""
        import eventlet
        from eventlet.hubs import trampoline
        while True:
            try:
                if self.again:
                    eventlet.sleep(0)
                else:
                    try:
                        trampoline(self.ep.fileno(), read=True, timeout=SCAN_S,
                                   timeout_exc=TimeoutError)
                    except TimeoutError:
                        pass
                self.turn(time.monotonic())
            except Exception:       # a bug here must not stop every terminal's reports
                log.exception("CRSAP lane turn failed")
                eventlet.sleep(0.01)

    def turn(self, now: float) -> None:
        """One pass: read the ready connections, answer the complete requests together.
        Its CPU time less the batch's is counted (`time_crsap_lane_us`): what the
        transport costs."""
        cpu0, self._batch_cpu = time.thread_time(), 0.0
        try:
            self._turn(now)
        finally:
            counters = self.server.cap.counters
            lane_us = (time.thread_time() - cpu0 - self._batch_cpu) * 1e6
            counters["time_crsap_lane_us"] = counters.get("time_crsap_lane_us", 0) + \
                int(lane_us)

    def _turn(self, now: float) -> None:
        ready, self.again = self.again, []
        queued = {id(c) for c in ready}
        sel = self._select
        for fd, mask in self.ep.poll(0, MAX_BATCH):
            c = self.conns.get(fd)
            if c is None:
                continue
            if mask & sel.EPOLLOUT or (c.out and mask & (sel.EPOLLHUP | sel.EPOLLERR)):
                self._flush(c, now)         # (a peer gone: the send fails, it is closed)
            if mask & (sel.EPOLLIN | sel.EPOLLHUP | sel.EPOLLERR) and not c.busy \
                    and not c.out and len(c.buf) - c.pos < self._enough:
                self._read(c, now)
                if c.raw.fileno() in self.conns and id(c) not in queued:    # (not closed)
                    ready.append(c)
                    queued.add(id(c))
        work: list[tuple[_Conn, bytes]] = []
        for i, c in enumerate(ready):
            if len(work) >= MAX_BATCH:          # the rest keep their turn for the next pass
                self.again.extend(ready[i:])
                break
            if c.raw.fileno() not in self.conns or c.busy or c.out:
                continue
            body = self._request(c, now)
            if body is not None:
                c.busy = True
                work.append((c, body))
        if work:
            self._answer(work, time.monotonic())
        if now >= self._scan_at:
            self._scan_at = now + SCAN_S
            self._expire(now)

    # --- reading ----------------------------------------------------------------------

    def _read(self, c: _Conn, now: float) -> None:
        try:
            chunk = c.raw.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(c)
            return
        if not chunk:
            if len(c.buf) > c.pos:
                self._refuse(c, hs.BadRequest(400, "request incomplete"))
            else:
                self._close(c)
            return
        c.buf = c.buf[c.pos:] + chunk if c.pos else c.buf + chunk
        c.pos = 0
        c.last = now
        if c.began is None:
            c.began = now

    def _request(self, c: _Conn, now: float) -> bytes | None:
        """The body of the next complete request on `c` for this lane; None when it is not
        complete yet, or when the connection was handed on or refused."""
        end = c.buf.find(b"\r\n\r\n", c.pos)
        if end < 0:
            if len(c.buf) - c.pos > hs.MAX_HEAD:
                self._refuse(c, hs.BadRequest(431, "request head too large"))
            return None
        try:
            if end - c.pos > hs.MAX_HEAD:
                raise hs.BadRequest(431, "request head too large")
            method, path, _, version, headers = hs.parse_head(c.buf[c.pos:end])
            n = hs.body_length(headers, self.server.max_body)
        except hs.BadRequest as exc:
            self._refuse(c, exc)
            return None
        if method != "POST" or path != self.path:
            self._hand_on(c)
            return None
        if len(c.buf) < end + 4 + n:
            return None
        body, c.pos = c.buf[end + 4:end + 4 + n], end + 4 + n
        if c.pos == len(c.buf):
            c.buf, c.pos = b"", 0
        conn_hdr = headers.get("connection", "").lower()
        c.close = conn_hdr == "close" or (version == "HTTP/1.0" and conn_hdr != "keep-alive")
        c.began = now if len(c.buf) > c.pos else None
        return body

    # --- answering --------------------------------------------------------------------

    def _answer(self, work: list[tuple[_Conn, bytes]], now: float) -> None:
        cpu0 = time.thread_time()
        try:
            results = self.batch([body for _, body in work])
        except Exception:
            log.exception("CRSAP batch of %d failed", len(work))
            results = [(500, b"")] * len(work)
        self._batch_cpu += time.thread_time() - cpu0
        for (c, _), (status, body) in zip(work, results):
            c.busy = False
            if c.raw.fileno() not in self.conns:
                continue
            close = c.close or status == 500
            c.out = answer_head(status, len(body), close) + body
            c.close = close
            self._flush(c, now)

    def _flush(self, c: _Conn, now: float) -> None:
        try:
            sent = c.raw.send(c.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(c)
            return
        c.out = c.out[sent:]
        if sent:
            c.last = now
        if c.out:                   # the client is not reading: wait until it can take more
            self._wait_for(c, self._select.EPOLLOUT)
        elif c.close:
            self._close(c)
        else:
            self._wait_for(c, self._select.EPOLLIN)
            if len(c.buf) > c.pos and not c.busy:   # a pipelined request is waiting
                self.again.append(c)

    def _wait_for(self, c: _Conn, mask: int) -> None:
        if c.mask != mask:
            c.mask = mask
            self.ep.modify(c.raw.fileno(), mask)

    def _refuse(self, c: _Conn, exc: hs.BadRequest) -> None:
        try:
            c.raw.send(hs.response(exc.status, [("Content-Type", "text/plain")],
                                   str(exc).encode(), True))
        except OSError:
            pass
        self._close(c)

    def _expire(self, now: float) -> None:
        """Close connections idle (or not reading) for the socket timeout, and refuse
        requests that did not arrive within REQUEST_DEADLINE_S."""
        for c in list(self.conns.values()):
            if c.busy:
                continue
            if c.began is not None and now - c.began > hs.REQUEST_DEADLINE_S:
                self._refuse(c, hs.BadRequest(408, "request too slow"))
            elif now - c.last > self.server.timeout:
                self._close(c)

    # --- leaving the lane -------------------------------------------------------------

    def _forget(self, c: _Conn) -> None:
        fd = c.raw.fileno()
        if self.conns.pop(fd, None) is not None:
            try:
                self.ep.unregister(fd)
            except OSError as exc:
                if exc.errno not in (errno.EBADF, errno.ENOENT):
                    raise

    def _close(self, c: _Conn) -> None:
        if c.raw.fileno() not in self.conns:
            return
        self._forget(c)
        self.server.closed(c.source)
        c.sock.close()

    def _hand_on(self, c: _Conn) -> None:
        """Not a request for the lane: the connection goes to its own green thread, with
        the bytes read so far (the server then counts and closes it)."""
        import eventlet
        self._forget(c)
        eventlet.spawn(self.server._connection, c.sock, c.source, c.buf[c.pos:])
