"""The effects vocabulary: what the pure parts of the controller ask the core to do.

The authenticator, the SCS and the table owners return these as values (they never send,
log or count themselves); the core carries out the common ones in one place
(`Core.common`), so a counter, a log line or an audit record means the same everywhere, and
an HTTP status is decided by a `Rejected` effect, not guessed from a counter's name.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from controller.openflow.ofmsg import Message

Out = list[tuple[int, Message]]          # OpenFlow messages, each for one switch (dpid)


@dataclass(frozen=True)
class Count:
    """Add one to a counter (`crs status`)."""

    name: str


@dataclass(frozen=True)
class Log:
    """A log line at a `logging` level."""

    level: int
    text: str


@dataclass(frozen=True)
class Audit:
    """A record for the append-only audit log (JSON lines). `encoded`: values of `record`
    already encoded as JSON text (written as they are; a report's SCI is encoded once)."""

    record: dict
    encoded: dict | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Rejected:
    """Input refused (counted under `counter`, logged as a warning, answered 403 when it was
    an HTTP request)."""

    counter: str
    reason: str


@dataclass(frozen=True)
class HttpPost:
    """An HTTP request the shell must make without blocking (e.g. an update command).
    `answer_back`: the answer is a CRSAP message the shell hands to the core (a probe's
    SCAProbeResponse comes back in the HTTP answer); `route`: which handler takes it
    ("crsap", or "roam": a peer SCS's RoamTransfer, crs/roaming.py)."""

    url: str
    body: bytes
    answer_back: bool = False
    route: str = "crsap"


@dataclass
class SwitchState:
    """What the core knows about one connected switch."""

    dpid: int
    meters: set[int] = field(default_factory=set)     # meter ids we added since it connected


COMMON = (Count, Log, Audit, Rejected)


class LogBudget:
    """Warnings at most once per `every_s` per key: a terminal must not flood the log."""

    def __init__(self, logger, every_s: float = 10.0, max_keys: int = 10000):
        self.logger, self.every_s, self.max_keys = logger, every_s, max_keys
        self.keys: dict[str, float] = {}

    def __call__(self, now: float, key: str, fmt: str, *args) -> None:
        if now - self.keys.get(key, -1e18) >= self.every_s:
            if len(self.keys) >= self.max_keys:
                self.keys.clear()
            self.keys[key] = now
            self.logger.warning(fmt, *args)
