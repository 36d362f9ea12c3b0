"""Correlation (X.1125 "correlative"): evidence about a terminal from others and the network.

Three sources, combined into "act on this terminal?". Every key here is a terminal id, never
an address a frame or a report claims: the SCS maps an accused address to the terminal bound
to it and attributes network evidence by the (switch, port) it came from, so the tables are
bounded by the number of terminals, and one terminal can never count as two accusers.

1. **Accusations.** Terminals report who probed them (SCI `attackers`). A source is acted on
   when at least k DISTINCT eligible accusers named it within the window. One accuser, however
   often it repeats, never suffices (k >= 2 is enforced by the policy schema). Eligibility is
   decided by the caller at query time (SCS: the accuser is online, its own level is
   COMPLIANT or VULNERABLE, and no operator quarantine): a terminal that is itself infected,
   isolated or of unknown posture may be the worm speaking, so it does not count, and its
   earlier accusations stop counting as soon as it becomes so. The accusation time is the
   accuser's `last_seen` (clamped to now), so re-sending an old observation does not refresh it.
2. **Scan detection** from first contacts the network saw: Threshold Random Walk (Jung et al.
   2004) and a new-destination rate limit (Williamson's throttle idea). A flagged scanner
   counts as `scan_weight` accusers (default 1: network evidence plus one terminal's report
   acts when k = 2; set it to k to let scan detection act alone). A flag holds `scan_hold_s`.
3. **Group escalation.** m INFECTED terminals in one group seal the group; it is unsealed when
   the count drops below `release_below` (<= m: hysteresis).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from controller.crs.policy import CorrelationParams, TRWParams

SCAN_ACCUSER = "network:scan"
MAX_SEEN_PER_SOURCE = 4096     # destinations remembered per terminal (memory bound)


class TRW:
    """Threshold Random Walk over first-contact outcomes, per source.

    Each success multiplies the likelihood ratio by theta1/theta0, each failure by
    (1-theta1)/(1-theta0); at >= beta/alpha the source is a scanner, at <=
    (1-beta)/(1-alpha) it is benign and the walk restarts. With the defaults an all-failing
    source is flagged after exactly 4 first contacts (4^3 = 64 < 99 <= 4^4)."""

    def __init__(self, p: TRWParams):
        self.up = math.log(p.theta1 / p.theta0)
        self.down = math.log((1 - p.theta1) / (1 - p.theta0))
        self.eta1 = math.log(p.beta / p.alpha)
        self.eta0 = math.log((1 - p.beta) / (1 - p.alpha))
        self.llr: dict[str, float] = {}

    def observe(self, src: str, success: bool) -> str:
        """'scanner', 'benign' or 'pending' after this observation."""
        value = self.llr.get(src, 0.0) + (self.up if success else self.down)
        if value >= self.eta1 - 1e-12:
            self.llr.pop(src, None)
            return "scanner"
        if value <= self.eta0 + 1e-12:
            self.llr.pop(src, None)
            return "benign"
        self.llr[src] = value
        return "pending"


@dataclass
class Correlator:
    params: CorrelationParams
    accusations: dict[str, dict[str, float]] = field(default_factory=dict)
    scan_until: dict[str, float] = field(default_factory=dict)
    scan_reason: dict[str, str] = field(default_factory=dict)
    sealed: set[str] = field(default_factory=set)
    _seen: dict[str, set[str]] = field(default_factory=dict)
    _new: dict[str, deque] = field(default_factory=dict)
    _trw: TRW | None = None
    changes: int = 0          # bumped whenever persistent evidence changes (store it then)

    def __post_init__(self) -> None:
        self._trw = TRW(self.params.trw) if self.params.trw.enabled else None

    # --- persistence --------------------------------------------------------------------

    def to_state(self) -> dict:
        """What must survive a restart: accusations and scan flags with their times."""
        return {"accusations": self.accusations, "scan_until": self.scan_until,
                "scan_reason": self.scan_reason}

    def restore(self, state: dict) -> None:
        self.accusations = {s: dict(a) for s, a in state.get("accusations", {}).items()}
        self.scan_until = dict(state.get("scan_until", {}))
        self.scan_reason = dict(state.get("scan_reason", {}))

    # --- accusations -------------------------------------------------------------------

    def accuse(self, accuser: str, source: str, seen_at: float | None, now: float) -> bool:
        """Record that `accuser` saw `source` probing it; False if too old to count."""
        when = now if seen_at is None else min(seen_at, now)
        if when < now - self.params.window_s:
            return False
        per = self.accusations.setdefault(source, {})
        per[accuser] = max(per.get(accuser, when), when)
        self.changes += 1
        return True

    def accusers(self, source: str, now: float,
                 eligible: Callable[[str], bool] = lambda _a: True) -> tuple[str, ...]:
        """Distinct eligible accusers of `source` within the window (plus the scan flag)."""
        cutoff = now - self.params.window_s
        names = sorted(a for a, t in self.accusations.get(source, {}).items()
                       if t >= cutoff and eligible(a))
        if self.scan_flagged(source, now) and self.params.scan_weight > 0:
            names.append(SCAN_ACCUSER)
        return tuple(names)

    def weight(self, names: tuple[str, ...]) -> int:
        return sum(self.params.scan_weight if n == SCAN_ACCUSER else 1 for n in names)

    def acted_on(self, source: str, now: float,
                 eligible: Callable[[str], bool] = lambda _a: True) -> tuple[str, ...]:
        """The accusers when they reach k, else ()."""
        if source not in self.accusations and source not in self.scan_until:
            return ()                 # no evidence (most terminals): nothing to weigh
        names = self.accusers(source, now, eligible)
        return names if self.weight(names) >= self.params.accusers_k else ()

    def sources(self) -> set[str]:
        return set(self.accusations) | set(self.scan_until)

    def expire(self, now: float) -> None:
        """Forget accusations older than the window and scan flags past their hold time."""
        cutoff = now - self.params.window_s
        for src in list(self.accusations):
            per = {a: t for a, t in self.accusations[src].items() if t >= cutoff}
            if per:
                self.accusations[src] = per
            else:
                del self.accusations[src]
        for src in [s for s, until in self.scan_until.items() if until <= now]:
            del self.scan_until[src]
            self.scan_reason.pop(src, None)
            self.changes += 1
        new_cut = now - self.params.new_dest_window_s
        for src in list(self._new):
            q = self._new[src]
            while q and q[0] < new_cut:
                q.popleft()
            if not q:
                del self._new[src]

    def forget_accuser(self, accuser: str) -> None:
        for per in self.accusations.values():
            per.pop(accuser, None)

    # --- scan detection ----------------------------------------------------------------

    def observe_first_contact(self, src: str, dst: str, success: bool, now: float) -> bool:
        """Feed one first contact (src -> dst; success = the destination answered).
        Returns True when this observation newly flags `src` as a scanner."""
        seen = self._seen.setdefault(src, set())
        if dst in seen:
            return False  # not a first contact
        if len(seen) < MAX_SEEN_PER_SOURCE:
            seen.add(dst)
        reason = None
        if self._trw is not None and self._trw.observe(src, success) == "scanner":
            reason = "TRW"
        if self.params.new_dest_enabled:
            q = self._new.setdefault(src, deque(maxlen=self.params.new_dest_max + 1))
            q.append(now)
            while q and q[0] < now - self.params.new_dest_window_s:
                q.popleft()
            if len(q) > self.params.new_dest_max and reason is None:
                reason = f"more than {self.params.new_dest_max} new destinations in " \
                         f"{self.params.new_dest_window_s:g} s"
        if reason is None:
            return False
        was = self.scan_flagged(src, now)
        self.scan_until[src] = now + self.params.scan_hold_s
        self.scan_reason[src] = reason
        self.changes += 1
        return not was

    def scan_flagged(self, src: str, now: float) -> bool:
        return self.scan_until.get(src, -math.inf) > now

    def clear_scan(self, src: str) -> None:
        """Start afresh for `src` (e.g. after it was cleaned)."""
        for d in (self.scan_until, self.scan_reason, self._seen, self._new):
            d.pop(src, None)
        if self._trw is not None:
            self._trw.llr.pop(src, None)

    # --- group escalation --------------------------------------------------------------

    def seal_update(self, group: str, infected: int) -> bool | None:
        """New seal state of `group` given its INFECTED count, or None when unchanged."""
        if not self.params.seal_enabled:
            if group in self.sealed:
                self.sealed.discard(group)
                return False
            return None
        if group not in self.sealed and infected >= self.params.seal_m:
            self.sealed.add(group)
            return True
        if group in self.sealed and infected < self.params.seal_release_below:
            self.sealed.discard(group)
            return False
        return None
