"""The REST port's HTTP/1.1 server (eventlet green threads), in place of eventlet.wsgi.

Terminals post their X.1125 reports here many times a second; eventlet.wsgi's request parsing
(http.server and email.parser) and the WSGI stack behind it (Routes, WebOb) cost more than
evaluating the report. So a request whose (method, path) has a fast handler is answered by
that handler straight from the bytes read; every other request becomes a WSGI call to the
application (the operator API, the EAC) exactly as before.

What the server guards, as before (controller.restguard): a per-source connection cap
(refused with a short 503), a timeout on every socket operation (idle keep-alive connections
and stalled requests are closed), request heads of at most MAX_HEAD bytes, bodies only with a
Content-Length of at most `max_body` bytes (no chunked uploads: 411), no tracebacks to
clients (a failing handler is a 500 with an empty body, logged here).
"""
from __future__ import annotations

import io
import logging
import re
import socket
import sys
import time
from http import HTTPStatus
from typing import Any, Callable

from controller import restguard

log = logging.getLogger("crs.http")
MAX_HEAD = 8192
MAX_HEADERS = 64
MAX_CONNECTIONS = 1024     # open at once, all sources together (eventlet.wsgi's pool size)
REQUEST_DEADLINE_S = 30.0  # a request's head and body must arrive within this, in all
_LENGTH = re.compile(r"[0-9]{1,10}")
# what a connection beyond its source's cap gets before it is closed
_REFUSED_BODY = b'{"error": "too many open connections from your address"}\n'
FULL_COUNTER = "rest_conn_refused_server_full"
REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
           % (len(_REFUSED_BODY), _REFUSED_BODY))
# (status, content type, body) of a fast handler; None: not handled, go to the WSGI app
FastAnswer = tuple[int, str, bytes]
Fast = Callable[[str, str, dict[str, str], bytes], "FastAnswer | None"]


class BadRequest(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def parse_head(head: bytes) -> tuple[str, str, str, str, dict[str, str]]:
    """(method, path, query, version, headers with lower-case names) of a request head
    (without its final blank line); BadRequest if it is not HTTP/1.x."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:    # latin-1 decodes every byte; kept for clarity
        raise BadRequest(400, "undecodable request head") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        raise BadRequest(400, "bad request line")
    method, target, version = parts
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest(431, "too many header fields")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "bad header field")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    path, _, query = target.partition("?")
    return method, path, query, version, headers


def body_length(headers: dict[str, str], max_body: int) -> int:
    if "transfer-encoding" in headers:
        raise BadRequest(411, "a body needs a Content-Length (no chunked uploads)")
    raw = headers.get("content-length", "0")
    if not _LENGTH.fullmatch(raw):       # ASCII digits only ("²".isdigit() is true)
        raise BadRequest(400, "bad Content-Length")
    n = int(raw)
    if n > max_body:
        raise BadRequest(413, f"body larger than {max_body} bytes")
    return n


def response(status: int, headers: list[tuple[str, str]], body: bytes, close: bool) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    lines = [f"HTTP/1.1 {status} {phrase}"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in ("content-length",
                                                                    "connection")]
    lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Server:
    """Serves one listening socket. `fast` answers what it can from the raw request; the
    rest goes to the WSGI application `app`."""

    def __init__(self, app: Callable, cap: restguard.SourceCap, socket_timeout_s: float,
                 fast: Fast | None = None, max_body: int = 64 * 1024, server_port: int = 0,
                 max_connections: int = MAX_CONNECTIONS,
                 lane: tuple[str, Callable[[list[bytes]], list[tuple[int, bytes]]]]
                 | None = None, settle: Callable[[], bool] | None = None):
        """`lane`: (path, batch): POSTs to `path` are served by one green thread for all
        connections, the complete ones handed to `batch` together (controller.httplane);
        a connection starts there and moves to its own thread at another request.
        `settle()`: waits before an answer leaves, until what it may tell of is durable
        (the controller: its decisions on disk, `ryu_shell.durable`); False: it is not, and
        503 is answered instead. The lane's `batch` settles its own."""
        self.app, self.cap, self.timeout, self.fast = app, cap, socket_timeout_s, fast
        self.settle = settle
        self.max_body, self.port = max_body, server_port
        self.max_connections, self.open = max_connections, 0
        self._listener: socket.socket | None = None
        self._stopped = False
        self.lane_spec, self.lane = lane, None

    def serve(self, listener: socket.socket) -> None:
        """Accept connections until the process ends, or `stop`."""
        import eventlet
        self._listener = listener
        if self.lane_spec is not None and self.lane is None:
            from controller.httplane import Lane
            self.lane = Lane(self, *self.lane_spec)
            eventlet.spawn(self.lane.run)
        while not self._stopped:
            try:
                conn, addr = listener.accept()
            except OSError as exc:      # e.g. EMFILE: back off instead of spinning
                if self._stopped:
                    return
                log.warning("REST accept failed: %s", exc)
                eventlet.sleep(0.1)
                continue
            if self._stopped:
                conn.close()
                return
            source = str(addr[0]) if isinstance(addr, tuple) else str(addr)
            if self.open >= self.max_connections:   # the process's descriptors are shared
                self.cap.counters[FULL_COUNTER] = self.cap.counters.get(FULL_COUNTER, 0) + 1
                eventlet.spawn(self._refuse, conn)
                continue
            if not self.cap.acquire(source):
                line = self.cap.note_refused(source, time.time())
                if line:
                    log.warning(line)
                eventlet.spawn(self._refuse, conn)
                continue
            self.open += 1
            if self.lane is not None:
                self.lane.add(conn, source)
            else:
                eventlet.spawn(self._connection, conn, source)

    def closed(self, source: str) -> None:
        """A connection from `source` ended: its place under the caps is free."""
        self.open -= 1
        self.cap.release(source)

    def stop(self) -> None:
        """Close the listening socket: `serve` returns (open connections run on)."""
        self._stopped = True
        if self._listener is not None:
            self._listener.close()

    def _refuse(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(self.timeout)
            conn.sendall(REFUSED)
        except OSError:
            pass
        finally:
            conn.close()

    def _connection(self, conn: socket.socket, source: str, buf: bytes = b"") -> None:
        """Serve one connection (`buf`: what was read of it already) until it ends."""
        try:
            conn.settimeout(self.timeout)
            while True:
                req, buf = self._request(conn, buf)
                if req is None:
                    return
                close = self._answer(conn, source, *req)
                if close:
                    return
        except BadRequest as exc:
            try:
                conn.sendall(response(exc.status, [("Content-Type", "text/plain")],
                                      str(exc).encode(), True))
            except OSError:
                pass
        except OSError:        # timeout, reset: the connection ends
            pass
        finally:
            self.closed(source)
            conn.close()

    def _request(self, conn: socket.socket, buf: bytes):
        """The next request on the connection: ((method, path, query, version, headers,
        body), leftover bytes), or (None, b"") when the client closed between requests.
        Each read waits at most the socket timeout, and the whole request once it has
        begun at most REQUEST_DEADLINE_S (a byte every few seconds holds nothing)."""
        data = bytearray(buf)
        deadline = None
        while b"\r\n\r\n" not in data:
            if len(data) > MAX_HEAD:
                raise BadRequest(431, "request head too large")
            chunk = conn.recv(65536)
            if not chunk:
                if data:
                    raise BadRequest(400, "request head incomplete")
                return None, b""
            deadline = deadline or time.monotonic() + REQUEST_DEADLINE_S
            if time.monotonic() > deadline:
                raise BadRequest(408, "request too slow")
            data += chunk
        head, _, rest = bytes(data).partition(b"\r\n\r\n")
        buf = rest
        if len(head) > MAX_HEAD:
            raise BadRequest(431, "request head too large")
        method, path, query, version, headers = parse_head(head)
        n = body_length(headers, self.max_body)
        body = bytearray(buf)
        deadline = deadline or time.monotonic() + REQUEST_DEADLINE_S
        while len(body) < n:
            chunk = conn.recv(max(65536, n - len(body)))
            if not chunk:       # the client stopped sending (half-closed): say so
                raise BadRequest(400, "request body incomplete")
            if time.monotonic() > deadline:
                raise BadRequest(408, "request too slow")
            body += chunk
        return (method, path, query, version, headers, bytes(body[:n])), bytes(body[n:])

    def _answer(self, conn: socket.socket, source: str, method: str, path: str, query: str,
                version: str, headers: dict[str, str], body: bytes) -> bool:
        """Answer one request; True if the connection must close after it."""
        conn_hdr = headers.get("connection", "").lower()
        close = conn_hdr == "close" or (version == "HTTP/1.0" and conn_hdr != "keep-alive")
        try:
            got = self.fast(method, path, headers, body) if self.fast else None
            if got is not None:
                status, ctype, rbody = got
                out = response(status, [("Content-Type", ctype)], rbody, close)
            else:
                out = self._wsgi(source, method, path, query, version, headers, body, close)
        except Exception:
            log.exception("REST %s %r failed", method, path)
            out, close = response(500, [], b"", True), True
        if self.settle is not None and not self.settle():
            out, close = response(503, [("Content-Type", "application/json")],
                                  b'{"error": "the store could not sync"}', True), True
        conn.sendall(out)
        return close

    def _wsgi(self, source: str, method: str, path: str, query: str, version: str,
              headers: dict[str, str], body: bytes, close: bool) -> bytes:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": _wsgi_path(path),
            "QUERY_STRING": query, "SERVER_NAME": "crs", "SERVER_PORT": str(self.port),
            "SERVER_PROTOCOL": version, "REMOTE_ADDR": source,
            "CONTENT_TYPE": headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)) if body else headers.get("content-length", ""),
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for k, v in headers.items():
            if k not in ("content-type", "content-length"):
                environ["HTTP_" + k.upper().replace("-", "_")] = v
        started: list[Any] = []

        def start_response(status: str, hdrs: list[tuple[str, str]], exc_info: Any = None):
            started[:] = [status, hdrs]
            return lambda data: None      # the write() callable: unused by our app
        result = self.app(environ, start_response)
        try:
            data = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        status, hdrs = started
        return response(int(status.split(" ", 1)[0]), hdrs, data, close)


def _wsgi_path(path: str) -> str:
    """PEP 3333: PATH_INFO is the percent-decoded path as latin-1 characters."""
    from urllib.parse import unquote_to_bytes
    return unquote_to_bytes(path).decode("latin-1")
