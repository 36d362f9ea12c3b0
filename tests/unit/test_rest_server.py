"""The launcher's REST server on real eventlet sockets (no Ryu): the per-source cap holds on
eventlet's accept path, freed slots come back, idle connections time out, and a failing
handler gives a 500 without a traceback."""
import warnings
from collections import Counter

import pytest

with warnings.catch_warnings():      # eventlet 0.33 still imports distutils' version classes
    warnings.simplefilter("ignore", DeprecationWarning)
    import eventlet
    from eventlet.green import socket

from controller.launcher import serve_rest
from controller.restguard import REFUSED_COUNTER, SourceCap


def app(environ, start_response):
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("secret internals")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


@pytest.fixture
def server():
    """serve_rest on a loopback port; loopback capped at 3 so the test can play a terminal."""
    counters = Counter()
    cap = SourceCap(per_source=3, per_loopback=3, counters=counters)
    sock = eventlet.listen(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    gt = eventlet.spawn(serve_rest, sock, app, cap, 0.5, None)
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
