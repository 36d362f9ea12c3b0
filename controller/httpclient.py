"""POSTs on one kept-alive HTTP connection (the agent's reports to the SCS).

A new TCP connection per report costs a handshake through the network and urllib's set-up
on both ends: most of a report's round trip. The connection is kept; when the server has
closed it meanwhile (idle timeout, restart), the request is sent once more on a new one.
Sending a CRSAP message twice is harmless: a copy that arrives twice is refused as a replay.
"""
from __future__ import annotations

import http.client
import urllib.parse


class Poster:
    def __init__(self, url: str, timeout_s: float):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"not an http:// URL: {url!r}")
        self.host, self.port = u.hostname, u.port or 80
        self.path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, max_answer: int,
             content_type: str = "application/json") -> tuple[int, bytes]:
        """(status, answer body up to `max_answer` + 1 bytes); OSError or HTTPException if
        the server cannot be reached."""
        for attempt in (0, 1):
            reused = self._conn is not None
            conn = self._conn or http.client.HTTPConnection(self.host, self.port,
                                                            timeout=self.timeout_s)
            self._conn = conn
            try:
                conn.request("POST", self.path, body, {"Content-Type": content_type})
                resp = conn.getresponse()
                answer = resp.read(max_answer + 1)
                if resp.will_close or len(answer) > max_answer:
                    self.close()
                return resp.status, answer
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError) as exc:
                self.close()
                if not reused or attempt:
                    raise OSError(f"connection to {self.host}:{self.port} lost: {exc}") \
                        from None
            except (OSError, http.client.HTTPException):
                self.close()
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
