"""Typed records of the controller's state, as the store keeps and returns them.

Plain values with no protocol behind them: the store knows these and nothing of EAP, CRSAP
or OpenFlow, so a second store backend needs only this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SsRecord:
    """An authenticated subscriber session as the EAC keeps it (X.1124 ISR-ID)."""

    isr_id: str
    identity: str
    group: str
    sp_root: bytes
    expires: float


@dataclass(frozen=True)
class SpRecord:
    """A service provider's login (IAC-ID)."""

    iac_id: str
    sp_name: str
    session_key: bytes      # SP-EAC key of this login: protects inquiry answers
    expires: float


@dataclass(frozen=True)
class Binding:
    """An admission binding: who may send from which (switch, port, MAC, IPv4)."""

    identity: str
    number: int             # the cookie value of its table-0 flows
    group: str
    dpid: int
    port: int
    mac: str
    isr_id: str | None = None
    crs_key: bytes | None = None
    method: str | None = None
    start: float | None = None
    expires: float | None = None
    ip: str | None = None   # None until the first address the terminal uses is pinned

    @property
    def location(self) -> tuple[int, int, str]:
        return (self.dpid, self.port, self.mac)


@dataclass(frozen=True)
class TerminalRecord:
    """A terminal's SCS state and its current decision (both as stored)."""

    tid: str
    number: int
    state: dict[str, Any]
    decision: dict[str, Any] | None
