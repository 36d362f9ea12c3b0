"""X.1125 11.4 Control and ControlAck: what the SCS asks the NAC to hold for a terminal, and
the NAC's answer once the switch has confirmed it.

The two are plain data passed through `nac.Nac` (in this process; a NAC in another process
could take its place: a Control carries everything it needs, and acknowledgements come back
by terminal and generation). The NAC closes a control's flows with an OpenFlow barrier
tagged with it: the switch's barrier reply confirms them (the switch processes messages in
order), an OpenFlow error on one of them refuses them. A decision counts as enforced only
when confirmed; a refusal or no answer within ACK_S sends the control again (up to TRIES
times) and raises an alarm (a counter, an audit record, a log line).
"""
from __future__ import annotations

from dataclasses import dataclass

from controller.crs.decision import Decision, Location

ACK_S = 2.0     # a control the switch has not confirmed by then is sent again
TRIES = 3       # sendings of one decision before giving up (and alarming)


@dataclass(frozen=True)
class Control:
    terminal: str
    generation: int             # the cookie generation its flows carry
    policy_version: int
    decision: Decision
    location: Location
    peers: tuple[str, ...]      # the addresses of its group (the scope "group")


@dataclass(frozen=True)
class ControlAck:
    terminal: str
    generation: int
    ok: bool
    reason: str = ""


@dataclass
class Pending:
    generation: int
    deadline: float
    tries: int
