"""Which switch answers confirm or refuse which tagged batch of messages (`crs.acks`).

The core closes a decision's flows with a barrier tagged with the decision's control; this
remembers, per switch, the transaction ids of the flow-mods and meter-mods sent since the
previous tagged barrier, and the tagged barrier's own id. An OpenFlow error naming one of
those ids marks the batch refused; the barrier reply then reports it, confirmed or refused
(a switch handles one connection's messages in order, so the reply comes after any error
about them). Bounded: a switch that never replies loses its entries after KEEP_S (the core
has sent the control again by then).
"""
from __future__ import annotations

from collections import deque
from typing import Any

from controller.openflow.ofmsg import Barrier, FlowMod, MeterMod

KEEP_S = 60.0
SINCE = 65536       # ids remembered since the last tagged barrier, per switch


class Confirmations:
    def __init__(self) -> None:
        self._since: dict[int, deque[int]] = {}
        self._open: dict[tuple[int, int], list[Any]] = {}   # (dpid, xid) -> [tag, ids, t, error]

    def sent(self, dpid: int, xid: int, msg: Any, now: float) -> None:
        if isinstance(msg, Barrier) and msg.tag is not None:
            ids = set(self._since.pop(dpid, ()))
            self._open[(dpid, xid)] = [msg.tag, ids, now, None]
        elif isinstance(msg, (FlowMod, MeterMod)):
            self._since.setdefault(dpid, deque(maxlen=SINCE)).append(xid)

    def error(self, dpid: int, xid: int, reason: str) -> bool:
        """An OpenFlow error about message `xid`: whether it belongs to a tagged batch."""
        for (d, _), entry in self._open.items():
            if d == dpid and xid in entry[1]:
                entry[3] = entry[3] or reason
                return True
        return False

    def reply(self, dpid: int, xid: int) -> tuple[Any, str | None] | None:
        """A barrier reply: (tag, None when confirmed or the error that refused it)."""
        entry = self._open.pop((dpid, xid), None)
        return None if entry is None else (entry[0], entry[3])

    def prune(self, now: float) -> None:
        for key in [k for k, e in self._open.items() if now - e[2] > KEEP_S]:
            del self._open[key]

    def forget(self, dpid: int) -> None:
        """A switch disconnected: its replies will not come."""
        self._since.pop(dpid, None)
        for key in [k for k in self._open if k[0] == dpid]:
            del self._open[key]

    def __len__(self) -> int:
        return len(self._open)
