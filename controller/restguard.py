"""Guards of the REST server: a per-source connection cap and the operator token.

Terminals reach the REST port over the emulated network. One terminal must not be able to hold
every connection the server has: X.1125 reports would stop and every terminal would go stale.
Operator calls are served on loopback only, but a web page open in a browser on the controller
host can make that browser POST to loopback (CSRF). So state-changing operator calls need a
JSON content type (a cross-site form cannot send one) and a token that only a process able to
read a 0600 file knows. Pure: no eventlet and no Ryu; the launcher and the Ryu app wire it in.
"""
from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections import Counter
from pathlib import Path
from typing import MutableMapping

from controller.jsonfile import write_text_atomic

TOKEN_NAME = "operator.token"
JSON = "application/json"
REFUSED_COUNTER = "rest_conn_refused_per_source"


# --- the operator token -------------------------------------------------------------------

def token_file(db_path: str, explicit: str | None = None) -> str:
    """Where the operator token lives: `explicit`, else next to the SQLite database, or in
    var/ with a PostgreSQL store (one rule for the controller, which writes it, and the
    `crs` CLI, which reads it)."""
    if explicit:
        return explicit
    if "://" in db_path:        # a PostgreSQL store: the token stays on this host, in var/
        return str(Path("var") / TOKEN_NAME)
    return str(Path(db_path).parent / TOKEN_NAME)


def write_token(path: str, token: str | None = None) -> str:
    """Write `token` (default: a fresh random one) to `path` with mode 0600 and return it.

    Written to a temporary file (mkstemp makes it 0600) and renamed, so no reader ever sees a
    partial token or a moment in which the file is readable by others."""
    token = token or secrets.token_urlsafe(32)
    write_text_atomic(path, token + "\n", 0o600)
    return token


def read_token(path: str) -> str:
    """The token in `path` (OSError if it cannot be read, ValueError if it is empty)."""
    with open(path, encoding="utf-8") as f:
        token = f.read().strip()
    if not token:
        raise ValueError(f"{path} is empty")
    return token


def auth_header(token: str) -> dict[str, str]:
    """The request headers that carry `token` (what the CLI and test clients send)."""
    return {"Authorization": f"Bearer {token}"}


def operator_post_refusal(content_type: str | None, authorization: str | None,
                          token: str | None) -> tuple[int, str, str] | None:
    """Why a state-changing operator request must be refused: (status, counter, reason), or
    None to accept. The token is checked first, so a cross-site form (text/plain, no token)
    learns nothing but 403; without a configured token nothing is accepted."""
    scheme, _, given = (authorization or "").strip().partition(" ")
    if not token or scheme.lower() != "bearer" or \
            not hmac.compare_digest(given.strip().encode(), token.encode()):
        return (403, "operator_refused_token",
                "operator POSTs need the header 'Authorization: Bearer <token>' with the token "
                "the controller wrote to its token file (crs ... --token-file)")
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != JSON:
        return 415, "operator_refused_content_type", f"operator POSTs need Content-Type: {JSON}"
    return None


# --- connections per source ---------------------------------------------------------------

def is_loopback(host: str) -> bool:
    """Whether a peer address is loopback (IPv4, IPv6 or IPv4-mapped IPv6)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class SourceCap:
    """Open connections per source address; a connection beyond the cap is refused.

    `per_source` applies to every address but loopback, which gets `per_loopback` (0: no cap)
    so that operators, tests and benchmarks on the controller host are not limited by what
    guards against terminals. Refusals are counted in `counters` under REFUSED_COUNTER; a log
    line is due at most once per `log_every_s` per source (see `note_refused`)."""

    def __init__(self, per_source: int, per_loopback: int = 0,
                 counters: MutableMapping[str, int] | None = None,
                 log_every_s: float = 60.0, max_noted: int = 4096):
        if per_source < 1 or per_loopback < 0:
            raise ValueError("per_source must be >= 1 and per_loopback >= 0")
        self.per_source = per_source
        self.per_loopback = per_loopback
        self.counters: MutableMapping[str, int] = counters if counters is not None \
            else Counter()
        self.log_every_s = log_every_s
        self.max_noted = max_noted
        self._open: dict[str, int] = {}
        self._refused_since_log: dict[str, int] = {}
        self._last_log: dict[str, float] = {}

    def limit(self, source: str) -> int:
        """The cap for `source` (0: none)."""
        return self.per_loopback if is_loopback(source) else self.per_source

    def open(self, source: str) -> int:
        return self._open.get(source, 0)

    def acquire(self, source: str) -> bool:
        """Count a new connection from `source`, or return False (and count a refusal) if the
        source already holds its cap."""
        n = self._open.get(source, 0)
        cap = self.limit(source)
        if cap and n >= cap:
            self.counters[REFUSED_COUNTER] = self.counters.get(REFUSED_COUNTER, 0) + 1
            self._refused_since_log[source] = self._refused_since_log.get(source, 0) + 1
            return False
        self._open[source] = n + 1
        return True

    def release(self, source: str) -> None:
        """One connection from `source` ended (entries at zero are dropped: memory stays
        bounded by the connections actually open)."""
        n = self._open.get(source, 0) - 1
        if n > 0:
            self._open[source] = n
        else:
            self._open.pop(source, None)

    def note_refused(self, source: str, now: float) -> str | None:
        """After a refusal: the log line to write now, or None if one was written for this
        source less than `log_every_s` ago (one flooding source cannot flood the log)."""
        last = self._last_log.get(source)
        if last is not None and now - last < self.log_every_s:
            return None
        if len(self._last_log) >= self.max_noted:
            self._last_log = {s: t for s, t in self._last_log.items()
                              if now - t < self.log_every_s}
            self._refused_since_log = {s: n for s, n in self._refused_since_log.items()
                                       if s in self._last_log or s == source}
        self._last_log[source] = now
        refused = self._refused_since_log.pop(source, 0)
        return (f"REST: {source} holds {self.open(source)} connections (cap "
                f"{self.limit(source)}); refused {refused} since the last line for it")
