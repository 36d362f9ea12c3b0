"""The launcher's REST server on real eventlet sockets (no Ryu): the per-source cap holds on
eventlet's accept path, freed slots come back, idle connections time out, and a failing
handler gives a 500 without a traceback."""
import socket as std_socket
import time
import types
import warnings
from collections import Counter

import pytest

with warnings.catch_warnings():      # eventlet 0.33 still imports distutils' version classes
    warnings.simplefilter("ignore", DeprecationWarning)
    import eventlet
    from eventlet.green import socket

from controller import httplane
from controller import httpserver as hs
from controller.httpserver import Server
from controller.restguard import REFUSED_COUNTER, SourceCap


def app(environ, start_response):
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("secret internals")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


@pytest.fixture
def server():
    """The REST server on a loopback port; loopback capped at 3 so the test can play a
    terminal."""
    counters = Counter()
    cap = SourceCap(per_source=3, per_loopback=3, counters=counters)
    sock = eventlet.listen(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    gt = eventlet.spawn(Server(app, cap, 0.5).serve, sock)
    eventlet.sleep(0)
    yield port, cap, counters
    gt.kill()


def connect(port):
    s = socket.socket()
    s.settimeout(3)
    s.connect(("127.0.0.1", port))
    return s


def get(port, path="/"):
    s = connect(port)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out


def wait_for(cond, timeout=3.0):
    with eventlet.Timeout(timeout):
        while not cond():
            eventlet.sleep(0.01)


def test_idle_connections_beyond_the_cap_are_refused_and_counted(server):
    port, cap, counters = server
    held = [connect(port) for _ in range(3)]
    wait_for(lambda: cap.open("127.0.0.1") == 3)
    out = get(port)
    assert out.startswith(b"HTTP/1.1 503") and b"too many" in out
    assert counters[REFUSED_COUNTER] == 1
    for s in held:
        s.close()
    wait_for(lambda: cap.open("127.0.0.1") == 0)
    assert get(port).endswith(b"ok")


def test_idle_connections_are_closed_after_the_socket_timeout(server):
    port, cap, _ = server
    held = [connect(port) for _ in range(3)]
    held[0].sendall(b"GET / HTT")                    # a stalled request line
    wait_for(lambda: cap.open("127.0.0.1") == 3)
    for s in held:
        assert s.recv(100) == b""                    # closed by the server (0.5 s timeout)
        s.close()
    wait_for(lambda: cap.open("127.0.0.1") == 0)
    assert get(port).endswith(b"ok")


def test_a_failing_handler_answers_500_without_a_traceback(server):
    port, _, _ = server
    out = get(port, "/boom")
    assert out.startswith(b"HTTP/1.1 500")
    assert b"Traceback" not in out and b"secret internals" not in out


def echo(environ, start_response):
    body = environ["wsgi.input"].read()
    out = (f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {environ['QUERY_STRING']} "
           f"{environ['REMOTE_ADDR']} {environ.get('HTTP_X_THING', '-')} "
           f"{environ['CONTENT_TYPE']} ").encode() + body
    start_response("201 Created", [("Content-Type", "text/plain"),
                                   ("Content-Length", str(len(out)))])
    return [out]


@pytest.fixture(params=["thread", "lane"])
def fast_server(request):
    """The REST server with a fast handler for POST /fast (the CRSAP path's way): on each
    connection's own thread, or in the lane that batches every connection's requests."""
    calls = []

    def fast(method, path, headers, body):
        if path != "/fast" or method != "POST":
            return None
        calls.append(body)
        return 202, "application/json", b'{"n": %d}' % len(calls)

    def batch(bodies):
        out = []
        for body in bodies:
            calls.append(body)
            out.append((202, b'{"n": %d}' % len(calls)))
        return out
    cap = SourceCap(per_source=3, per_loopback=3)
    sock = eventlet.listen(("127.0.0.1", 0))
    lane = ("/fast", batch) if request.param == "lane" else None
    srv = Server(echo, cap, 0.5, fast, lane=lane)
    gt = eventlet.spawn(srv.serve, sock)
    eventlet.sleep(0)
    yield sock.getsockname()[1], calls
    gt.kill()
    assert srv.lane is None or not srv.lane.again


def exchange(port, raw: bytes, responses: int = 1) -> bytes:
    """Send raw bytes on one connection; read until `responses` answers came or it closed."""
    s = connect(port)
    s.sendall(raw)
    out = b""
    while out.count(b"HTTP/1.1 ") < responses or not _complete(out):
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out


def _complete(out: bytes) -> bool:
    head, sep, body = out.rpartition(b"\r\n\r\n")
    n = [int(x.split(b":")[1]) for x in head.split(b"\r\n") if x.lower().startswith(
        b"content-length")]
    return bool(sep) and bool(n) and len(body) >= n[-1]


def test_fast_requests_and_wsgi_requests_share_one_keep_alive_connection(fast_server):
    port, calls = fast_server
    raw = (b"POST /fast HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
           b"POST /fast HTTP/1.1\r\nContent-Length: 3\r\n\r\nbye"
           b"POST /other?x=1 HTTP/1.1\r\nContent-Type: application/json\r\nX-Thing: 7\r\n"
           b"Content-Length: 2\r\n\r\n{}")
    out = exchange(port, raw, 3)
    assert out.count(b"HTTP/1.1 202 Accepted") == 2 and b'{"n": 2}' in out
    assert calls == [b"hello", b"bye"]
    assert b"HTTP/1.1 201 Created" in out
    assert out.endswith(b"POST /other x=1 127.0.0.1 7 application/json {}")
    # a GET on the fast path is not the fast handler's: the application answers it
    assert exchange(port, b"GET /fast HTTP/1.0\r\n\r\n").endswith(b"GET /fast  127.0.0.1 -  ")


def test_malformed_or_oversized_requests_get_a_status_and_a_close(fast_server):
    port, calls = fast_server
    cases = {
        b"POST /fast HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n":
            b"411",
        b"POST /fast HTTP/1.1\r\nContent-Length: 70000\r\n\r\n": b"413",
        b"POST /fast HTTP/1.1\r\nContent-Length: -1\r\n\r\n": b"400",
        b"GARBAGE\r\n\r\n": b"400",
        b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n": b"431",
        b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 70 + b"\r\n": b"431",
    }
    for raw, status in cases.items():
        out = exchange(port, raw)
        assert out.startswith(b"HTTP/1.1 " + status), (raw[:40], out[:60])
        assert b"Connection: close" in out
    # a body shorter than its Content-Length, the client half-closed: 400, not silence
    s = connect(port)
    s.sendall(b"POST /fast HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    s.shutdown(socket.SHUT_WR)
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    s.close()
    assert out.startswith(b"HTTP/1.1 400") and b"incomplete" in out
    assert calls == []


def test_odd_lengths_a_full_server_and_a_slow_drip_are_refused(fast_server, monkeypatch):
    port, calls = fast_server
    # a Content-Length that str.isdigit() accepts but is no number: 400, and no traceback
    out = exchange(port, "POST /fast HTTP/1.1\r\nContent-Length: ²\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 400")
    # a request dripping a byte at a time is cut at the request deadline
    from controller import httpserver
    monkeypatch.setattr(httpserver, "REQUEST_DEADLINE_S", 0.3)
    s = connect(port)
    s.sendall(b"POST /fast HTTP/1.1\r\n")
    got = b""
    for _ in range(20):
        eventlet.sleep(0.1)
        try:
            s.sendall(b"X")
        except OSError:
            break
        try:
            s.settimeout(0.01)
            got += s.recv(100)
        except OSError:
            pass
        if got:
            break
    s.close()
    assert got.startswith(b"HTTP/1.1 408") or got.startswith(b"HTTP/1.1 431"), got
    assert calls == []
    # all sources together: beyond max_connections, a 503 at once
    from collections import Counter
    counters = Counter()
    srv = httpserver.Server(echo, SourceCap(per_source=10, per_loopback=10, counters=counters),
                            2.0, max_connections=2)
    sock = eventlet.listen(("127.0.0.1", 0))
    gt = eventlet.spawn(srv.serve, sock)
    try:
        p2 = sock.getsockname()[1]
        held = [connect(p2) for _ in range(2)]
        wait_for(lambda: srv.open == 2)
        assert get(p2).startswith(b"HTTP/1.1 503")
        assert counters[httpserver.FULL_COUNTER] == 1
        for h in held:
            h.close()
        wait_for(lambda: srv.open == 0)
        assert get(p2).startswith(b"HTTP/1.1 201")
    finally:
        gt.kill()


def test_the_lane_batches_every_connections_requests_and_guards_like_the_threads():
    """Requests complete at one turn go to the batch together; answers return to their own
    connections in order; idle connections are closed after the socket timeout and their
    places under the cap come back; a pipelining client is answered in order."""
    sizes = []

    def batch(bodies):
        sizes.append(len(bodies))
        return [(200, b"<" + body + b">") for body in bodies]
    counters = Counter()
    cap = SourceCap(per_source=20, per_loopback=20, counters=counters)
    sock = eventlet.listen(("127.0.0.1", 0))
    srv = Server(echo, cap, 0.5, None, lane=("/fast", batch))
    gt = eventlet.spawn(srv.serve, sock)
    try:
        port = sock.getsockname()[1]
        clients = [connect(port) for _ in range(10)]
        wait_for(lambda: srv.open == 10)
        for i, s in enumerate(clients):
            s.sendall(b"POST /fast HTTP/1.1\r\nContent-Length: 2\r\n\r\n%02d" % i)
        for i, s in enumerate(clients):
            out = b""
            while not _complete(out):
                out += s.recv(65536)
            assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"<%02d>" % i)
        assert max(sizes) > 1 and sum(sizes) == 10
        # pipelined: every answer, in order
        raw = b"".join(b"POST /fast HTTP/1.1\r\nContent-Length: 3\r\n\r\n%03d" % i
                       for i in range(30))
        out = exchange(port, raw, 30)
        assert [int(x[1:4]) for x in out.split(b"\r\n\r\n")[1:]] == list(range(30))
        # idle: closed after the socket timeout, places freed
        for s in clients:
            assert s.recv(100) == b""
            s.close()
        wait_for(lambda: srv.open == 0 and cap.open("127.0.0.1") == 0)
        assert srv.lane.conns == {}
    finally:
        gt.kill()


# --- the CRSAP lane against clients that pipeline (security review findings) -------------

LANE_REQ = b"POST /crsap/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"


class _LaneServer:
    cap = types.SimpleNamespace(counters={})
    timeout, max_body = 60, 64 * 1024

    def closed(self, source):
        pass


def _lane_pair(lane):
    a, b = std_socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    lane.add(types.SimpleNamespace(fd=a, close=a.close), "x")
    return a, b


def _drain(sock) -> int:
    got = 0
    try:
        while True:
            d = sock.recv(1 << 20)
            if not d:
                return got
            got += len(d)
    except BlockingIOError:
        return got


def test_a_client_pipelining_and_reading_cannot_grow_the_lanes_buffer():
    lane = httplane.Lane(_LaneServer(), "/crsap/v1/messages",
                         lambda bodies: [(400, b'{"e":1}')] * len(bodies))
    a, b = _lane_pair(lane)
    for _ in range(200):
        try:
            b.send(LANE_REQ * 1000)
        except BlockingIOError:
            pass
        _drain(b)
        lane.turn(time.monotonic())
    (c,) = lane.conns.values()
    # at most one largest request plus one read, however much the client pipelines
    assert len(c.buf) - c.pos <= hs.MAX_HEAD + 4 + _LaneServer.max_body + 65536


def test_requests_beyond_one_batch_are_served_next_turn_not_left_behind():
    sizes = []

    def batch(bodies):
        sizes.append(len(bodies))
        return [(400, b'{"e":1}')] * len(bodies)
    lane = httplane.Lane(_LaneServer(), "/crsap/v1/messages", batch)
    pairs = [_lane_pair(lane) for _ in range(httplane.MAX_BATCH + 44)]
    for _, b in pairs[:3]:
        b.send(LANE_REQ * 2)            # pipelined: they stay queued between turns
    lane.turn(time.monotonic())
    for _, b in pairs[3:]:
        b.send(LANE_REQ)
    for _ in range(5):
        lane.turn(time.monotonic())
    assert all(_drain(b) for _, b in pairs[3:])
    assert max(sizes) <= httplane.MAX_BATCH and not any(len(c.buf) > c.pos
                                                         for c in lane.conns.values())


def test_a_pipelined_request_behind_a_slow_answer_is_answered():
    lane = httplane.Lane(_LaneServer(), "/crsap/v1/messages",
                         lambda bodies: [(200, b"x" * 2_000_000)] * len(bodies))
    a, b = _lane_pair(lane)
    b.send(LANE_REQ * 2)
    got = 0
    for _ in range(2000):
        got += _drain(b)
        lane.turn(time.monotonic())
    assert got >= 2 * 2_000_000
