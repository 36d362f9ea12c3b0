"""The agent's kept-alive POSTs: one connection for many reports, and a new one, once, when
the server closed the old one while it was idle."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controller.httpclient import Poster


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: list = []
    drop_after_answer = False

    def setup(self):
        super().setup()
        Handler.connections.append(self.client_address)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        out = b"got " + body
        self.send_response(200 if body != b"bad" else 409)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
        if Handler.drop_after_answer:      # as a server whose idle timeout ran out
            self.close_connection = True

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    Handler.connections, Handler.drop_after_answer = [], False
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_many_posts_one_connection_and_statuses_as_they_are(server):
    p = Poster(f"http://127.0.0.1:{server.server_address[1]}/crsap/v1/messages", 5)
    assert [p.post(b"r%d" % i, 100) for i in range(5)] == [(200, b"got r%d" % i)
                                                           for i in range(5)]
    assert p.post(b"bad", 100) == (409, b"got bad")
    assert len(Handler.connections) == 1
    p.close()


def test_a_connection_the_server_closed_is_replaced_once(server):
    p = Poster(f"http://127.0.0.1:{server.server_address[1]}/x", 5)
    Handler.drop_after_answer = True
    assert p.post(b"a", 100) == (200, b"got a")
    assert p.post(b"b", 100) == (200, b"got b")        # on a new connection
    assert len(Handler.connections) == 2
    server.shutdown()
    server.server_close()
    with pytest.raises(OSError):
        p.post(b"c", 100)                               # nobody there: an error, no loop


def test_only_plain_http_urls():
    with pytest.raises(ValueError):
        Poster("https://scs/x", 1)
