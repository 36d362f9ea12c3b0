"""The SCS (security correlative server, X.1125 clause 11) as a pure state machine.

Inputs are calls with the current time; outputs are effect values the Ryu shell carries out
(install flows, answer HTTP, push update commands, write the audit log, bump counters).
Nothing here sends, sleeps or reads the clock, so every procedure is a unit test.

Procedures: MS connect (11.2 step 1, from the NAC) -> UNKNOWN until a report is evaluated;
SCI report -> authenticate, evaluate (8.1), correlate, decide (8.2/8.3), reply (SCIResponse,
signed with the terminal's key); staleness -> UNKNOWN; leave (11.6); large-scale updating
(12.1): a reload re-evaluates everyone against the stored SCI and update commands are paced
(at most `max_concurrent` in progress, at most `per_second` started per second).
Rejected input changes nothing and yields Count + Log.
"""
from __future__ import annotations

import heapq
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from controller.crs import messages as crsap
from controller.crs.control import Override, decide
from controller.crs.correlation import Correlator
from controller.crs.decision import Decision, Level, Location, worse
from controller.crs.evaluation import evaluate
from controller.crs.policy import Policy
from controller.effects import Audit, Count, Log, Rejected

SCS_SENDER = "scs"
ELIGIBLE_ACCUSER_LEVELS = (Level.COMPLIANT, Level.VULNERABLE)
MEMO_MAX = 4096         # entries of each memo of pure results (cleared when full)


# --- effects ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Enforce:
    """Make table 1 hold `decision` for the terminal at `location` (replace its flows)."""

    terminal_id: str
    decision: Decision
    location: Location


@dataclass(frozen=True)
class Remove:
    """The terminal left: delete its table-1 flows (SECURITY.delete_sub(location.number))."""

    terminal_id: str
    location: Location


@dataclass(frozen=True)
class SealGroup:
    group: str
    sealed: bool


@dataclass(frozen=True)
class Reply:
    """The HTTP answer to the message being handled (a signed CRSAP message)."""

    payload: bytes


@dataclass(frozen=True)
class SendUpdate:
    """Push a signed UpdateCommand to the terminal's agent (POST to ip:7125 HTTP_PATH)."""

    terminal_id: str
    item: str
    url: str
    payload: bytes
    ip: str


@dataclass(frozen=True)
class SendProbe:
    """Push a signed SCAProbeRequest to the terminal's agent (X.1125 11.1 discovery)."""

    terminal_id: str
    payload: bytes
    ip: str


Effect = (Enforce | Remove | SealGroup | Reply | SendUpdate | SendProbe | Audit | Count | Log
          | Rejected)


# --- state -----------------------------------------------------------------------------

@dataclass
class Terminal:
    tid: str
    number: int
    group: str | None
    ip: str
    mac: str
    dpid: int
    port: int
    online: bool = True
    own_level: Level = Level.UNKNOWN
    own_reason: str = "no SCI reported"
    last_report: float | None = None
    last_sci: dict[str, Any] | None = None
    decision: Decision | None = None
    override: Override | None = None
    sca_seen: bool = False
    out_seq: int | None = None
    update_id: int = 0
    granted: tuple[str, str, float] | None = None   # (update id, item, at)
    probes: int = 0                     # SCA probes sent and not answered (11.1)
    next_probe: float | None = None     # when to probe it (None: it has spoken)
    no_sca: bool = False                # answered no probe: the agentless control applies
    left_at: float | None = None        # when it last went offline here (roaming, 13.4)
    # the body of its last SCIResponse, encoded, with what it was made of (decision,
    # report interval): a steady terminal's answer differs only in seq, ts and MAC
    answer: tuple[Any, float, str] | None = field(default=None, repr=False, compare=False)
    sci_json: str | None = field(default=None, repr=False, compare=False)   # last SCI's

    def to_state(self) -> dict[str, Any]:
        """What the store keeps of this terminal (its decision is stored beside it)."""
        return {"group": self.group, "ip": self.ip, "mac": self.mac, "dpid": self.dpid,
                "port": self.port, "online": self.online, "own_level": self.own_level.value,
                "own_reason": self.own_reason, "last_report": self.last_report,
                "last_sci": self.last_sci,
                "override": [self.override.kind, self.override.kbps] if self.override
                else None, "no_sca": self.no_sca, "sca_seen": self.sca_seen,
                "left_at": self.left_at}

    @classmethod
    def from_state(cls, tid: str, number: int, st: dict[str, Any],
                   decision: Decision | None) -> "Terminal":
        t = cls(tid, number, st["group"], st["ip"], st["mac"], st["dpid"], st["port"],
                online=st["online"], own_level=Level(st["own_level"]),
                own_reason=st["own_reason"], last_report=st["last_report"],
                last_sci=st["last_sci"], decision=decision)
        if st.get("override"):
            t.override = Override(st["override"][0], st["override"][1])
        t.no_sca, t.sca_seen = bool(st.get("no_sca")), bool(st.get("sca_seen"))
        t.left_at = st.get("left_at")
        return t

    @property
    def location(self) -> Location:
        return Location(self.number, self.dpid, self.port, self.mac, self.ip, self.group)

    def status(self) -> dict[str, Any]:
        d = self.decision
        return {"id": self.tid, "number": self.number, "group": self.group, "ip": self.ip,
                "mac": self.mac, "dpid": self.dpid, "port": self.port, "online": self.online,
                "level": d.level.value if d else self.own_level.value,
                "last_report": self.last_report,
                "policy_version": d.policy_version if d else None,
                "decision": d.summary() if d else None,
                "sca": "yes" if self.sca_seen else "none" if self.no_sca else "unknown",
                "probes_unanswered": self.probes}


KeyLookup = Callable[[str], "bytes | None"]


class SCS:
    """Terminals, policy, correlation and update pacing of one CRS domain."""

    def __init__(self, policy: Policy, key_lookup: KeyLookup,
                 skew_s: float = crsap.DEFAULT_SKEW_S, records: bool = True):
        self.policy = policy
        # records=False: no Audit or Count effect for a connect, a report or a decision,
        # and a report's SCI is not encoded (it is what the audit log and the store keep):
        # for a caller that discards them (the simulation); decisions are the same
        self.records = records
        self.key_lookup = key_lookup
        self.skew_s = skew_s
        self.terminals: dict[str, Terminal] = {}
        self.replay = crsap.ReplayState()
        self.corr = Correlator(policy.correlation)
        self.queue: dict[str, None] = {}     # terminals waiting for an update slot, in order
        self.tokens = 0.0
        self.tokens_at: float | None = None
        self._numbers = 0
        self.by_ip: dict[str, str] = {}     # bound address -> terminal id (set by the NAC)
        self._levels: dict[str, tuple[Level, str, tuple[str, ...]]] = {}
        self._last_full: float | None = None
        # Indexes that keep the work per report independent of network and group size:
        self.members: dict[str, set[str]] = {}       # group -> online terminals
        self.roster: dict[str, set[str]] = {}        # group -> every terminal, online or not
        self._infected: dict[str, set[str]] = {}     # group -> online members now INFECTED
        self._counted: dict[str, str] = {}           # terminal -> group it is counted in
        self._granted: set[str] = set()              # online terminals with an update slot
        self._stale_heap: list[tuple[float, str]] = []   # (report goes stale at, terminal)
        self._stale_watched: set[str] = set()
        self._accused: set[str] = set()              # cached level carries accusers
        self._unseen: set[str] = set()               # online, no SCA heard yet: probed
        self.url: str | None = None                  # where agents reach the SCS (probes)
        # roaming (13.3/13.4): terminals held at UNKNOWN at most until the peer SCSs have
        # answered (why), and how long a terminal may have been offline here and keep a
        # good level (None: no limit, one domain alone)
        self.held: dict[str, str] = {}
        self.max_gap_s: float | None = None
        # pure results remembered for the policy they were computed under: an SCI (by its
        # canonical JSON) -> (level, reason); decide()'s arguments -> Decision
        self._memo_policy: Policy | None = None
        self._evaluated: dict[str, tuple[Level, str]] = {}
        self._decided: dict[tuple, Decision] = {}
        self._bodies: crsap.Bodies = {}     # each sender's last authenticated body

    def restore(self, terminals: Iterable[Terminal], replay: dict[str, int],
                sealed: Iterable[str], evidence: dict[str, Any], now: float) -> None:
        """State from the store after a restart: terminals with their decisions, replay
        counters, sealed groups and correlation evidence."""
        for t in terminals:
            self.terminals[t.tid] = t
            if t.online and not t.sca_seen:     # spread over one interval after a restart
                d = self.policy.discovery
                t.next_probe = now + d.probe_after_s + d.probe_every_s * (t.number % 97) / 97
                self._unseen.add(t.tid)
            self._numbers = max(self._numbers, t.number)
            if t.online and t.ip:
                self.by_ip[t.ip] = t.tid
            if t.group:
                self.roster.setdefault(t.group, set()).add(t.tid)
            if t.online:
                self._join(t)
        self.replay.last_seq.update(replay)
        self.corr.sealed.update(sealed)
        self.corr.restore(evidence)
        for t in self.terminals.values():     # every online terminal has a cached level
            if t.online:                       # and its report's staleness watched
                self._level_of(t, now)
                self._watch_stale(t)

    # --- NAC / lifecycle ----------------------------------------------------------------

    def connect(self, terminal_id: str, group: str | None, ip: str, mac: str, dpid: int,
                port: int, now: float) -> list[Effect]:
        """MS connect report from the NAC (attach, re-attach or move within the domain).

        A terminal whose stored report is still fresh keeps its level (roaming inside one
        CRS network, 13.2); otherwise it starts at UNKNOWN until it reports."""
        t = self.terminals.get(terminal_id)
        old_group, gap = None, None
        if t is not None and not t.online and t.left_at is not None:
            gap = now - t.left_at
        if t is None:
            self._numbers += 1
            t = Terminal(terminal_id, self._numbers, group, ip, mac, dpid, port)
            self.terminals[terminal_id] = t
        else:
            if self.by_ip.get(t.ip) == terminal_id:
                del self.by_ip[t.ip]
            if t.online:
                old_group = t.group
                self._part(t)
            if t.group != group and t.group in self.roster:
                self.roster[t.group].discard(terminal_id)
            t.group, t.ip, t.mac, t.dpid, t.port, t.online = group, ip, mac, dpid, port, True
            t.decision = None  # flows must be (re)installed at the new location
        if group:
            self.roster.setdefault(group, set()).add(terminal_id)
        self._join(t)
        if ip:
            self.by_ip[ip] = terminal_id
        self._watch_stale(t)
        if not t.sca_seen:         # discovery: probed if no SCA speaks up (11.1)
            t.next_probe = now + self.policy.discovery.probe_after_s
            self._unseen.add(terminal_id)
        away = gap is not None and self.max_gap_s is not None and gap > self.max_gap_s
        if not self._fresh(t, now) or away:
            # INFECTED is lifted only by a clean report, never by coming back later; a
            # terminal away longer than a handover may have been where no SCS saw it (13.4)
            t.own_level = worse(t.own_level, Level.UNKNOWN)
            if t.own_level is Level.UNKNOWN:
                t.own_reason = f"away {gap:.0f} s, unmonitored" if away else \
                    "no fresh SCI report"
        out: list[Effect] = [Audit({"event": "connect", "terminal": terminal_id, "ip": ip,
                                    "mac": mac, "dpid": dpid, "port": port, "group": group,
                                    "at": now}), Count("crs_connect")] if self.records else []
        return out + self._recompute(now, [terminal_id], extra_groups=(old_group,))

    def agent_left(self, terminal_id: str, now: float, reason: str) -> list[Effect]:
        """The terminal's agent said Leave, but its binding (its access) remains: it stays
        connected, its own level becomes UNKNOWN (INFECTED stays INFECTED), and whatever
        restriction holds stays, so a Leave can never be a way out of quarantine."""
        t = self.terminals[terminal_id]
        t.own_level = worse(t.own_level, Level.UNKNOWN)
        t.own_reason = f"agent left ({reason})" if t.own_level is Level.UNKNOWN else \
            t.own_reason
        t.last_report = None
        return [Count("crs_agent_leave"),
                Audit({"event": "agent_leave", "terminal": terminal_id, "reason": reason,
                       "level": t.own_level.value, "at": now})] + \
            self._recompute(now, [terminal_id])

    def leave(self, terminal_id: str, now: float, reason: str = "nac") -> list[Effect]:
        """The terminal left the network (11.6; the NAC says so: its binding was revoked):
        flows removed, kept offline with its history."""
        t = self.terminals.get(terminal_id)
        if t is None or not t.online:
            return [Count("crs_leave_unknown"),
                    Log(logging.INFO, f"leave for unknown or offline terminal {terminal_id}")]
        self._part(t)
        t.online, t.decision, t.left_at = False, None, now
        self.held.pop(terminal_id, None)
        self._set_granted(t, None)
        self.queue.pop(terminal_id, None)
        if self.by_ip.get(t.ip) == terminal_id:
            del self.by_ip[t.ip]
        out: list[Effect] = [Remove(terminal_id, t.location), Count("crs_leave"),
                             Audit({"event": "leave", "terminal": terminal_id,
                                    "reason": reason, "at": now})]
        return out + self._recompute(now, [terminal_id])

    # --- SCA messages ---------------------------------------------------------------------

    def handle(self, terminal_id: str | None, raw: bytes, now: float) -> list[Effect]:
        """One CRSAP message from a terminal. `terminal_id` is who the transport says sent
        it (None: trust the authenticated sender field)."""
        try:
            msg = crsap.decode(raw, self._bodies)
        except crsap.BadMessage as exc:
            return self._reject("malformed", exc.reason, terminal_id)
        sender = msg.sender
        if terminal_id is not None and sender != terminal_id:
            return self._reject("sender_mismatch",
                                f"sender {sender!r} arrived as {terminal_id!r}", terminal_id)
        t = self.terminals.get(sender)
        if t is None or not t.online:
            return self._reject("unknown_terminal", f"{sender!r} is not connected", sender)
        if msg.type not in ("SCIReport", "MSConnectReport", "SCAProbeResponse", "Leave"):
            return self._reject("unexpected_type", f"{msg.type} is not sent by an SCA", sender)
        if msg.body.get("ms_id") != sender:
            return self._reject("other_terminal", f"{sender!r} reported about "
                                f"{msg.body.get('ms_id')!r}", sender)
        try:
            key = self.key_lookup(sender)
        except Exception as exc:  # a broken key store must not crash the SCS
            return self._reject("no_key", f"key lookup failed: {exc}", sender)
        try:
            crsap.verify(msg, key, self.replay, now, self.skew_s)
        except crsap.BadMessage as exc:
            return self._reject("unauthenticated", exc.reason, sender)
        crsap.remember_body(msg, raw, self._bodies)
        return self.accept(msg, now, key)

    def accept(self, msg: crsap.Message, now: float, key: bytes | None = None) -> list[Effect]:
        """An SCA message that is already decoded, schema-valid and authenticated from a
        connected sender: the part of `handle` after `crsap.verify` (evaluation,
        correlation, seals, decisions, update pacing), which `handle` ends in. Entered
        directly only by a caller that made the message itself (the simulation,
        controller.experiment.reactors): the same decisions without the transport's cost.
        Without `key` no signed Reply is built (nobody waits for one)."""
        sender = msg.sender
        t = self.terminals[sender]
        out: list[Effect] = [Count(f"crs_msg_{msg.type}")] if self.records else []
        if msg.type == "Leave":
            return out + self.agent_left(sender, now, str(msg.body.get("reason", "agent"))[:64])
        was_agentless = t.no_sca
        self._seen(t)
        if msg.type == "SCAProbeResponse":
            out.append(Audit({"event": "probe_response", "terminal": sender, "at": now,
                              "sca_version": msg.body.get("sca_version")}))
            return out + (self._recompute(now, [sender]) if was_agentless else [])
        touched = [sender]
        if msg.type == "SCIReport":
            report, accused = self._report(t, msg, now)
            out += report
            touched += accused
        out += self._recompute(now, touched)
        granted = self._grant(now)
        update = None
        for tid in granted:
            if tid == sender:
                update = self._update_body(t)
            else:
                out += self._push_update(tid, now)
        if key is not None:
            out.append(Reply(self._response(t, key, now, update)))
        return out

    def _report(self, t: Terminal, msg: crsap.Message,
                now: float) -> tuple[list[Effect], list[str]]:
        """Evaluate one SCI report; returns its effects and the terminals it accuses.
        An accused address counts only when it is bound to a terminal (not the sender):
        addresses nobody holds cannot grow the evidence tables."""
        sci = msg.body["sci"]
        # encoded once (memo key, stored copy, audit line), and shared by the terminals
        # that report the same SCI
        if not self.records:
            sci_json = None
        elif sci is t.last_sci and t.sci_json is not None:
            sci_json = t.sci_json           # the same body as last time (crsap.Bodies)
        else:
            sci_json = sys.intern(crsap.body_json(sci))
        changed, t.sci_json = t.sci_json != sci_json, sci_json
        t.last_sci, t.last_report = sci, now
        self._watch_stale(t)
        t.own_level, t.own_reason = self._evaluate(sci, sci_json)
        self._set_granted(t, None)  # the report after an update closes the update's slot
        out: list[Effect] = []
        accused: list[str] = []
        for a in sci.get("attackers", ()):
            target = self.by_ip.get(a["source"])
            if target is None or target == t.tid:
                out.append(Count("crs_accusation_unbound_source"))
                continue
            if self.corr.accuse(t.tid, target, a.get("last_seen"), now):
                accused.append(target)
        if self.records:
            out.append(Audit({"event": "sci_report", "terminal": t.tid, "seq": msg.seq,
                              "at": now, "level": t.own_level.value, "reason": t.own_reason,
                              "sci": sci, "sci_changed": changed}, {"sci": sci_json}))
        return out, accused

    def _memos(self) -> None:
        """Forget remembered results computed under another policy, or too many."""
        if self._memo_policy is not self.policy or \
                len(self._evaluated) > MEMO_MAX or len(self._decided) > MEMO_MAX:
            self._memo_policy = self.policy
            self._evaluated.clear()
            self._decided.clear()

    def _evaluate(self, sci: dict[str, Any], sci_json: str | None) -> tuple[Level, str]:
        """evaluate(sci, policy), remembered by the SCI's canonical JSON (which tells
        true from 1, so equal JSON is an equal SCI for every rule); without it (no
        records), evaluated again."""
        if sci_json is None:
            return evaluate(sci, self.policy)
        self._memos()
        got = self._evaluated.get(sci_json)
        if got is None:
            got = self._evaluated[sci_json] = evaluate(sci, self.policy)
        return got

    def _decide(self, level: Level, group: str | None, reason: str, sealed: bool,
                override: Override | None, accusers: tuple[str, ...],
                agentless: bool) -> Decision:
        """decide() under the current policy, remembered by its arguments (it is pure)."""
        self._memos()
        key = (level, group, reason, sealed, override, accusers, agentless)
        d = self._decided.get(key)
        if d is None:
            d = self._decided[key] = decide(level, group, self.policy, reason, sealed=sealed,
                                            override=override, accusers=accusers,
                                            agentless=agentless)
        return d

    # --- time, policy, operator ---------------------------------------------------------

    def tick(self, now: float) -> list[Effect]:
        """Periodic work: staleness, expiry of evidence, update timeouts, paced updates."""
        out: list[Effect] = []
        full = self._last_full is None or now - self._last_full >= 1.0
        if not full:      # staleness and expiries are checked once a second
            for tid in self._grant(now):
                out += self._push_update(tid, now)
            return out
        self._last_full = now
        self.corr.expire(now)
        touched: set[str] = set()
        for t in self._due_stale(now):
            t.own_level, t.own_reason = Level.UNKNOWN, \
                f"no report for {self.policy.stale_after_s:g} s"
            out.append(Count("crs_stale"))
            touched.add(t.tid)
        for tid in list(self._granted):
            t = self.terminals[tid]
            if t.granted and now - t.granted[2] > self.policy.update_timeout_s:
                out += [Count("crs_update_timeout"),
                        Log(logging.WARNING, f"update {t.granted[1]} of {t.tid} timed out")]
                self._set_granted(t, None)
        # Evidence ages with time: whoever has accusers or a scan flag, or had them at the
        # last evaluation, is evaluated again (the evidence's size, not the network's).
        touched |= {tid for tid in self.corr.sources() if tid in self.terminals}
        touched |= self._accused
        out += self._discover(now, touched)
        out += self._recompute(now, sorted(touched))
        for tid in self._grant(now):
            out += self._push_update(tid, now)
        return out

    def reload(self, policy: Policy, now: float) -> list[Effect]:
        """Install a new policy: re-evaluate every terminal against its stored SCI (12.1)."""
        old = self.policy.version
        self.policy = policy
        if policy.correlation != self.corr.params:
            fresh = Correlator(policy.correlation)
            fresh.accusations, fresh.scan_until = self.corr.accusations, self.corr.scan_until
            fresh.scan_reason, fresh.sealed = self.corr.scan_reason, self.corr.sealed
            fresh.changes = self.corr.changes + 1     # the evidence is stored again
            self.corr = fresh
        self._stale_heap, self._stale_watched = [], set()   # stale_after_s may have changed
        for t in self.terminals.values():
            if t.last_sci is not None and self._fresh(t, now):
                t.own_level, t.own_reason = evaluate(t.last_sci, policy)
            if t.online:
                self._watch_stale(t)
        out: list[Effect] = [Audit({"event": "policy", "from": old, "to": policy.version,
                                    "source": policy.source, "at": now}),
                             Count("crs_policy_reload")]
        out += self._recompute(now)
        for tid in self._grant(now):
            out += self._push_update(tid, now)
        return out

    def quarantine(self, terminal_id: str, now: float) -> list[Effect]:
        return self._operator(terminal_id, Override("quarantine"), now)

    def rate_limit(self, terminal_id: str, kbps: int, now: float) -> list[Effect]:
        if not isinstance(kbps, int) or isinstance(kbps, bool) or not 8 <= kbps <= 10_000_000:
            return [Count("crs_operator_rejected"),
                    Log(logging.WARNING, f"rate limit {kbps!r} kbps out of 8..10000000")]
        return self._operator(terminal_id, Override("rate_limit", kbps), now)

    def release(self, terminal_id: str, now: float) -> list[Effect]:
        return self._operator(terminal_id, None, now)

    def observe_first_contact(self, terminal_id: str, dst_ip: str, success: bool,
                              now: float) -> list[Effect]:
        """Network evidence (from the NAC): one first contact of a terminal, attributed by
        the (switch, port) of its binding, never by the address the frame claimed."""
        if terminal_id not in self.terminals:
            return [Count("crs_first_contact_unknown")]
        if not self.corr.observe_first_contact(terminal_id, dst_ip, success, now):
            return []
        reason = self.corr.scan_reason.get(terminal_id, "scan")
        return [Count("crs_scan_flagged"),
                Log(logging.WARNING, f"{terminal_id} flagged: {reason}"),
                Audit({"event": "scan_flagged", "terminal": terminal_id,
                       "source": self.terminals[terminal_id].ip, "reason": reason,
                       "at": now})] + self._recompute(now, [terminal_id])

    def status(self) -> list[dict[str, Any]]:
        """Introspection for the REST API: every terminal's level, group and decision."""
        return [t.status() for t in sorted(self.terminals.values(), key=lambda t: t.number)]

    # --- roaming between CRS domains (13.3, 13.4) ------------------------------------------

    def snapshot(self, terminal_id: str, now: float) -> dict[str, Any]:
        """What a peer SCS is told about a terminal (the body of a RoamTransfer): its level
        (with accusations), an operator quarantine, whether it is online here, and when it
        reported and left."""
        t = self.terminals.get(terminal_id)
        if t is None:
            return {"known": False}
        level = self._levels[t.tid][0] if t.online and t.tid in self._levels else t.own_level
        out: dict[str, Any] = {
            "known": True, "level": level.value, "reason": t.own_reason[:crsap.MAX_STR],
            "quarantine": bool(t.override and t.override.kind == "quarantine"),
            "online": t.online}
        if t.last_report is not None:
            out["last_report"] = t.last_report
        if t.left_at is not None and not t.online:
            out["left_at"] = t.left_at
        if t.last_sci is not None:
            out["sci"] = t.last_sci
        return out

    def adopt(self, terminal_id: str, peer: str, state: dict[str, Any], release: bool,
              now: float) -> list[Effect]:
        """A peer's authenticated answer about a terminal held here. Bad news always counts:
        INFECTED and an operator quarantine follow the terminal. A good level counts only
        from a direct handover (online there, or left no longer than `max_gap_s` ago) with a
        report still fresh here, and never lifts a worse level this SCS has. `release`:
        the last peer answered, the hold ends."""
        t = self.terminals.get(terminal_id)
        if t is None or not t.online:
            return [Count("crs_roam_transfer_for_offline")]
        out: list[Effect] = [Audit({"event": "roam_transfer", "terminal": terminal_id,
                                    "peer": peer, "known": state.get("known"),
                                    "level": state.get("level"),
                                    "quarantine": state.get("quarantine"), "at": now})]
        if state.get("known"):
            level = Level(state.get("level", "UNKNOWN"))
            why = f"from {peer}: {state.get('reason', '')}"[:crsap.MAX_STR]
            if state.get("quarantine") and t.override is None:
                t.override = Override("quarantine")
                out.append(Count("crs_roam_quarantine_kept"))
            gap = 0.0 if state.get("online") else now - state.get("left_at", 0.0)
            last = state.get("last_report")
            direct = self.max_gap_s is None or gap <= self.max_gap_s
            if level is Level.INFECTED:
                if t.own_level is not Level.INFECTED:
                    t.own_level, t.own_reason = level, why
                out.append(Count("crs_roam_infected_kept"))
            elif (direct and last is not None and now - last <= self.policy.stale_after_s
                  and level.severity < Level.UNKNOWN.severity
                  and (t.last_report is None or level.severity > t.own_level.severity)):
                # a report here since the connect counts too: the worse of the two holds
                t.own_level, t.own_reason = level, why
                if t.last_report is None:
                    t.last_report, t.last_sci = last, state.get("sci")
                    t.sci_json = None       # not from a report here: the next one is new
                    self._watch_stale(t)
                out.append(Count("crs_roam_level_adopted"))
            elif not direct:
                out.append(Count("crs_roam_unmonitored_gap"))
        if release:
            self.held.pop(terminal_id, None)
        return out + self._recompute(now, [terminal_id])

    # --- internals ------------------------------------------------------------------------

    def _operator(self, terminal_id: str, override: Override | None,
                  now: float) -> list[Effect]:
        t = self.terminals.get(terminal_id)
        if t is None:
            return [Count("crs_operator_rejected"),
                    Log(logging.WARNING, f"operator action on unknown terminal {terminal_id}")]
        t.override = override
        kind = override.kind if override else "release"
        return [Audit({"event": "operator", "action": kind, "terminal": terminal_id,
                       "kbps": override.kbps if override else None, "at": now}),
                Count(f"crs_operator_{kind}")] + self._recompute(now, [terminal_id])

    def _fresh(self, t: Terminal, now: float) -> bool:
        return t.last_report is not None and now - t.last_report <= self.policy.stale_after_s

    def _eligible(self, tid: str) -> bool:
        t = self.terminals.get(tid)
        return (t is not None and t.online and t.own_level in ELIGIBLE_ACCUSER_LEVELS
                and not (t.override and t.override.kind == "quarantine")
                and not (t.decision and t.decision.accusers))

    def _level_of(self, t: Terminal, now: float) -> tuple[Level, str, tuple[str, ...]]:
        level, reason = t.own_level, t.own_reason
        accusers = self.corr.acted_on(t.tid, now, self._eligible)
        if accusers:
            accused = self.policy.correlation.accused_level
            if accused.severity > level.severity:
                level = accused
            reason = f"{reason}; accused by {', '.join(accusers)}"
        self._levels[t.tid] = (level, reason, accusers)
        if accusers:
            self._accused.add(t.tid)
        else:
            self._accused.discard(t.tid)
        self._count(t, level)
        return level, reason, accusers

    # --- indexes (kept in step with every change of online, group and level) ------------

    def _join(self, t: Terminal) -> None:
        if t.group:
            self.members.setdefault(t.group, set()).add(t.tid)

    def _part(self, t: Terminal) -> None:
        """`t` goes offline or leaves its group: out of every index."""
        if t.group in self.members:
            self.members[t.group].discard(t.tid)
            if not self.members[t.group]:
                del self.members[t.group]
        self._levels.pop(t.tid, None)
        self._accused.discard(t.tid)
        self._count(t, None)

    def _count(self, t: Terminal, level: Level | None) -> None:
        """Keep `_infected` (a group's INFECTED members, what its seal is decided on)."""
        was = self._counted.get(t.tid)
        want = t.group if level is Level.INFECTED and t.online and t.group else None
        if was == want:
            return
        if was is not None:
            self._infected[was].discard(t.tid)
            if not self._infected[was]:
                del self._infected[was]
            del self._counted[t.tid]
        if want is not None:
            self._infected.setdefault(want, set()).add(t.tid)
            self._counted[t.tid] = want

    def _set_granted(self, t: Terminal, granted: tuple[str, str, float] | None) -> None:
        t.granted = granted
        if granted is not None and t.online:
            self._granted.add(t.tid)
        else:
            self._granted.discard(t.tid)

    def _watch_stale(self, t: Terminal) -> None:
        """Remember when `t`'s last report goes stale (one entry per terminal at most)."""
        if t.last_report is None or t.tid in self._stale_watched:
            return
        self._stale_watched.add(t.tid)
        heapq.heappush(self._stale_heap, (t.last_report + self.policy.stale_after_s, t.tid))

    def _due_stale(self, now: float) -> list[Terminal]:
        """Online terminals of an eligible level whose last report has gone stale."""
        due = []
        heap = self._stale_heap
        while heap and heap[0][0] < now:
            _, tid = heapq.heappop(heap)
            self._stale_watched.discard(tid)
            t = self.terminals.get(tid)
            if t is None or not t.online:
                continue
            if self._fresh(t, now):        # it reported since: watch its new deadline
                self._watch_stale(t)
            elif t.own_level in ELIGIBLE_ACCUSER_LEVELS:
                due.append(t)
        return due

    def _recompute(self, now: float, only: Iterable[str] | None = None,
                   extra_groups: Iterable[str | None] = ()) -> list[Effect]:
        """Bring decisions, group seals and the update queue up to date: for every online
        terminal (a policy reload), or only for `only` (and their groups, plus
        `extra_groups`). A group's seal is decided on its indexed INFECTED count, so the
        work per report is constant; only a seal that changes touches every member."""
        out: list[Effect] = []
        if only is None:
            targets = {t.tid: t for t in self.terminals.values() if t.online}
            named = {t.group for t in targets.values() if t.group} | set(self.corr.sealed)
        else:   # also the groups of terminals that just went offline
            targets, named = {}, {g for g in extra_groups if g}
            for tid in only:
                t = self.terminals.get(tid)
                if t is not None:
                    if t.group:
                        named.add(t.group)
                    if t.online:
                        targets[tid] = t
        for t in targets.values():
            self._level_of(t, now)
        for g in sorted(named):
            n = len(self._infected.get(g, ()))
            change = self.corr.seal_update(g, n)
            if change is not None:
                out += [SealGroup(g, change), Count("crs_group_seal" if change
                                                   else "crs_group_unseal"),
                        Audit({"event": "group_seal", "group": g, "sealed": change,
                               "infected": n, "at": now})]
                for tid in self.members.get(g, ()):   # the seal changes every decision
                    t = self.terminals[tid]
                    targets.setdefault(t.tid, t)
                    if t.tid not in self._levels:
                        self._level_of(t, now)
        for t in targets.values():
            level, reason, accusers = self._levels[t.tid]
            if t.tid in self.held and level.severity <= Level.UNKNOWN.severity:
                level, reason = Level.UNKNOWN, self.held[t.tid]    # nothing more, yet
            d = self._decide(level, t.group, reason, t.group in self.corr.sealed, t.override,
                             accusers, t.no_sca)
            if d is not t.decision and (t.decision is None or d != t.decision):
                out.append(Enforce(t.tid, d, t.location))
                if self.records:
                    was = list(t.decision.actions) if t.decision is not None else None
                    out.append(Audit({"event": "decision", "terminal": t.tid, "at": now,
                                      **d.summary(), "was": was}))
                t.decision = d
            needs = d.update is not None
            if needs and t.granted is None and t.tid not in self.queue:
                self.queue[t.tid] = None
            elif not needs:
                self.queue.pop(t.tid, None)
        return out

    def _grant(self, now: float) -> list[str]:
        """Start queued updates within the pacing limits; returns the terminals granted."""
        granted: list[str] = []
        in_flight = len(self._granted)
        # token bucket: per_second on average, bursts of at most max(1, per_second)
        rate = self.policy.update_per_second
        cap = max(1.0, rate)
        if self.tokens_at is None:
            self.tokens = cap
        else:
            self.tokens = min(cap, self.tokens + max(0.0, now - self.tokens_at) * rate)
        self.tokens_at = now
        while self.queue and in_flight < self.policy.update_max_concurrent \
                and self.tokens >= 1.0:
            tid = next(iter(self.queue))
            del self.queue[tid]
            t = self.terminals[tid]
            if not t.online or t.decision is None or t.decision.update is None:
                continue
            t.update_id += 1
            self._set_granted(t, (f"{t.number}-{t.update_id}", t.decision.update, now))
            granted.append(tid)
            in_flight += 1
            self.tokens -= 1.0
        return granted

    def _update_body(self, t: Terminal) -> dict[str, Any]:
        assert t.granted is not None
        uid, item, _ = t.granted
        return {"id": uid, "item": item, "url": self.policy.update_url(item),
                "install": dict(self.policy.items.get(item, {}))}

    # --- SCA discovery (11.1) -----------------------------------------------------------

    def _seen(self, t: Terminal) -> None:
        """Its SCA spoke (a report, a probe response, an attach): no more probes."""
        t.sca_seen, t.no_sca, t.probes, t.next_probe = True, False, 0, None
        self._unseen.discard(t.tid)

    def _discover(self, now: float, touched: set[str]) -> list[Effect]:
        """Probe the terminals no SCA has spoken for; after `no_sca_after` unanswered probes
        mark one "no SCA" (its control becomes the policy's agentless one)."""
        d, out = self.policy.discovery, []
        for tid in sorted(self._unseen):
            t = self.terminals.get(tid)
            if t is None or not t.online or t.sca_seen:
                self._unseen.discard(tid)
                continue
            if t.next_probe is None or now < t.next_probe:
                continue
            if t.probes >= d.no_sca_after and not t.no_sca:
                t.no_sca = True
                touched.add(tid)
                out += [Count("crs_no_sca"),
                        Audit({"event": "no_sca", "terminal": tid, "at": now,
                               "probes": t.probes}),
                        Log(logging.INFO, f"{tid}: no SCA answered {t.probes} probes")]
            t.probes += 1
            # found agentless: still probed (an SCA may be installed), six times slower
            t.next_probe = now + d.probe_every_s * (6 if t.no_sca else 1)
            out += self._probe(t, now)
        return out

    def _probe(self, t: Terminal, now: float) -> list[Effect]:
        try:
            key = self.key_lookup(t.tid)
        except Exception:
            key = None
        if not key or not t.ip:
            return [Count("crs_probe_no_key")]       # (an EAP-MD5 terminal: it cannot have
        t.out_seq = crsap.next_seq(t.out_seq, now)   # an SCA the SCS could authenticate)
        body: dict[str, Any] = {"nonce": os.urandom(8).hex(),
                                "report_interval_s": self.policy.report_interval_s}
        if self.url:
            body["scs_url"] = self.url
        payload = crsap.encode("SCAProbeRequest", SCS_SENDER, t.out_seq, now, body, key)
        return [SendProbe(t.tid, payload, t.ip), Count("crs_probe_sent")]

    def _push_update(self, tid: str, now: float) -> list[Effect]:
        t = self.terminals[tid]
        try:
            key = self.key_lookup(tid)
        except Exception:
            key = None
        if not key:
            self._set_granted(t, None)
            self.queue[tid] = None
            return [Count("crs_update_no_key"),
                    Log(logging.WARNING, f"no key to sign an update for {tid}")]
        body = self._update_body(t)
        t.out_seq = crsap.next_seq(t.out_seq, now)
        payload = crsap.encode("UpdateCommand", SCS_SENDER, t.out_seq, now,
                               {"ms_id": tid, "update": body}, key)
        return [SendUpdate(tid, body["item"], body["url"], payload, t.ip),
                Count("crs_update_sent"),
                Audit({"event": "update", "terminal": tid, "item": body["item"], "at": now})]

    def _response(self, t: Terminal, key: bytes, now: float,
                  update: dict[str, Any] | None) -> bytes:
        d = t.decision
        assert d is not None
        t.out_seq = crsap.next_seq(t.out_seq, now)
        interval = self.policy.report_interval_s
        msg = crsap.Message("SCIResponse", SCS_SENDER, t.out_seq, now, {})
        if update is None and t.answer is not None and t.answer[0] is d \
                and t.answer[1] == interval:
            return crsap.encode_body(msg, t.answer[2], key)   # built from checked values
        body: dict[str, Any] = {"ms_id": t.tid, "level": d.level.value,
                                "actions": list(d.actions), "scope": d.scope,
                                "reason": d.reason[:crsap.MAX_STR],
                                "policy_version": d.policy_version,
                                "report_interval_s": interval}
        if update is not None:
            body["update"] = update
            return crsap.encode("SCIResponse", SCS_SENDER, t.out_seq, now, body, key)
        t.answer = (d, interval, crsap.body_json(body))
        return crsap.encode_body(msg, t.answer[2], key)

    def _reject(self, kind: str, reason: str, who: str | None) -> list[Effect]:
        return [Rejected(f"crs_rejected_{kind}",
                         f"CRSAP message from {who or '?'} rejected: {reason}")]


def effects_of(effects: Iterable[Effect], kind: type) -> list:
    """The effects of one kind (a helper for the shell and for tests)."""
    return [e for e in effects if isinstance(e, kind)]
