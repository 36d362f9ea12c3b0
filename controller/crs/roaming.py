"""Roaming between CRS domains (X.1125 13.3, 13.4): the SCS <-> SCS transfer, as data.

The visited SCS pulls. When its NAC admits a terminal (by the 802.1X identity it
authenticated) that is not online in this domain, it asks every peer SCS about that identity
(RoamQuery) and holds the terminal at UNKNOWN until every peer has answered (RoamTransfer).
A peer that does not answer within `answer_within_s` is counted, logged and asked again; the
terminal stays held meanwhile (fail closed). Pulling rather than waiting for the home to
push on leave: the terminal cannot avoid the question, whereas a push depends on the home
noticing the departure in time, and a terminal racing it would be let in before it arrives.

Messages are CRSAP envelopes (`crs/messages.py`) signed with the key the two domains share
(one per pair, from a 0600 file): HMAC-SHA256 over body, sender, sequence number and
timestamp; the body names the receiver, the terminal and a nonce. A query is accepted once
(sequence numbers per peer, timestamps within the skew). A transfer is accepted only as the
answer to an open query of this SCS (same peer, same terminal, same nonce, used once): a
replayed, unsolicited, stale, misaddressed or forged transfer is refused and counted, and
changes nothing.
"""
from __future__ import annotations

import hmac
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from controller.config import ConfigError
from controller.crs import messages as crsap
from controller.crs.scs import SCS, Reply
from controller.effects import Audit, Count, Log, Rejected

PATH = "/roam/v1/messages"
MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class Peer:
    """Another CRS domain's SCS: its name (the sender it signs as), where it listens, and
    the key this pair of domains shares (never shown)."""

    name: str
    url: str
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class Ask:
    """POST `payload` (a RoamQuery) to a peer; its HTTP answer is handed back as a message."""

    terminal: str
    peer: str
    url: str
    payload: bytes


@dataclass(frozen=True)
class Transfer:
    """An authenticated answer of `peer` about `terminal` (the RoamTransfer body); `last`:
    no peer is left to answer for it."""

    terminal: str
    peer: str
    state: dict[str, Any]
    last: bool


class Roaming:
    """Open queries and replay state of one SCS towards its peers."""

    def __init__(self, domain: str, peers: list[Peer], answer_within_s: float,
                 skew_s: float = crsap.DEFAULT_SKEW_S):
        self.domain, self.answer_within_s, self.skew_s = domain, answer_within_s, skew_s
        self.peers = {p.name: p for p in peers}
        self.asked: dict[str, dict[str, tuple[str, float]]] = {}  # tid -> peer -> (nonce, due)
        self.queries = crsap.ReplayState()        # per peer: the last query accepted
        self._seq: int | None = None

    def waiting(self, tid: str) -> bool:
        return tid in self.asked

    def ask(self, tid: str, now: float) -> list:
        """Ask every peer about `tid` (a terminal this domain admitted, not online here)."""
        self.asked[tid] = {}
        out: list = []
        for p in self.peers.values():
            out.append(self._ask(tid, p, now))
        return out + [Audit({"event": "roam_query", "terminal": tid,
                             "peers": sorted(self.peers), "at": now})]

    def forget(self, tid: str) -> None:
        """The terminal left: its open queries (a late answer is then refused)."""
        self.asked.pop(tid, None)

    def overdue(self, now: float) -> list:
        """Peers that did not answer in time: counted, logged and asked again (the terminal
        stays held: never opened because a peer is silent)."""
        out: list = []
        for tid, per in self.asked.items():
            for name, (_, due) in list(per.items()):
                if now >= due:
                    out += [Count("crs_roam_no_answer"),
                            Log(logging.WARNING, f"roaming: {name} did not answer about "
                                f"{tid} within {self.answer_within_s:g} s; it stays UNKNOWN"),
                            Audit({"event": "roam_no_answer", "terminal": tid, "peer": name,
                                   "at": now}),
                            self._ask(tid, self.peers[name], now)]
        return out

    def handle(self, raw: bytes, now: float,
               state_of: Callable[[str, float], dict[str, Any]]) -> list:
        """One message from a peer: a query (answered with a signed RoamTransfer, from
        `state_of`) or a transfer (a `Transfer` effect if it answers an open query)."""
        try:
            msg = crsap.decode(raw)
        except crsap.BadMessage as exc:
            return _reject("malformed", exc.reason)
        peer = self.peers.get(msg.sender)
        if peer is None or msg.type not in ("RoamQuery", "RoamTransfer"):
            return _reject("unknown_peer", f"{msg.type} from {msg.sender!r}, not a peer SCS")
        if msg.body["receiver"] != self.domain:
            return _reject("misaddressed", f"{msg.type} from {peer.name} is for "
                           f"{msg.body['receiver']!r}")
        query = msg.type == "RoamQuery"
        try:    # a transfer's replay protection is its nonce, used once (below)
            crsap.verify(msg, peer.key, self.queries if query else crsap.ReplayState(), now,
                         self.skew_s)
        except crsap.BadMessage as exc:
            return _reject("unauthenticated", f"{msg.type} from {peer.name}: {exc.reason}")
        tid, nonce = msg.body["ms_id"], msg.body["nonce"]
        if query:
            state = state_of(tid, now)
            body = {"receiver": peer.name, "ms_id": tid, "nonce": nonce, **state}
            return [Reply(self._sign("RoamTransfer", body, peer, now)),
                    Count("crs_roam_query_answered"),
                    Audit({"event": "roam_answer", "terminal": tid, "peer": peer.name,
                           "known": state["known"], "level": state.get("level"), "at": now})]
        open_ = self.asked.get(tid, {}).get(peer.name)
        if open_ is None or not hmac.compare_digest(open_[0], nonce):
            return _reject("unsolicited", f"transfer from {peer.name} about {tid} answers no "
                           "open query (replayed, late or unsolicited)")
        per = self.asked[tid]
        del per[peer.name]
        if not per:
            del self.asked[tid]
        return [Transfer(tid, peer.name, dict(msg.body), not per),
                Count("crs_roam_transfer_accepted")]

    def _ask(self, tid: str, p: Peer, now: float) -> Ask:
        nonce = os.urandom(16).hex()
        self.asked.setdefault(tid, {})[p.name] = (nonce, now + self.answer_within_s)
        body = {"receiver": p.name, "ms_id": tid, "nonce": nonce}
        return Ask(tid, p.name, p.url.rstrip("/") + PATH, self._sign("RoamQuery", body, p, now))

    def _sign(self, type_: str, body: dict[str, Any], p: Peer, now: float) -> bytes:
        self._seq = crsap.next_seq(self._seq, now)
        return crsap.encode(type_, self.domain, self._seq, now, body, p.key)


def arrival(scs: SCS, roam: Roaming | None, tid: str, now: float) -> list:
    """Call before `scs.connect` for an admitted terminal: one not online in this domain
    (new here, or back) is held at UNKNOWN from its first decision on, and every peer is
    asked about the identity 802.1X authenticated. Returns the queries to send."""
    t = scs.terminals.get(tid)
    if roam is None or (t is not None and t.online):
        return []
    scs.held[tid] = "roaming: waiting for the peer SCSs' answer"
    return roam.ask(tid, now)


def receive(scs: SCS, roam: Roaming, raw: bytes, now: float) -> list:
    """A roaming message: a query answered from `scs`, or a transfer adopted by it (the
    `Transfer` effect stays in the list: the caller stores that terminal)."""
    effects = roam.handle(raw, now, scs.snapshot)
    for e in [e for e in effects if isinstance(e, Transfer)]:
        effects += scs.adopt(e.terminal, e.peer, e.state, e.last, now)
    return effects


def _reject(kind: str, reason: str) -> list:
    return [Rejected(f"crs_roam_rejected_{kind}", f"roaming message refused: {reason}")]


def load_peers(where: str, entries: list[dict[str, Any]], base: Path) -> list[Peer]:
    """The peers of a controller's `roaming.peers`, with their keys read from their files
    (relative to `base`): each must be a regular file of mode 0600 holding at least
    MIN_KEY_BYTES bytes as hex. Raises ConfigError naming file, key and problem; a key is
    never part of a message."""
    problems: list[tuple[str, str, str]] = []
    peers: list[Peer] = []
    for i, e in enumerate(entries):
        key = f"roaming.peers[{i}].key_file"
        path = Path(e["key_file"])
        path = path if path.is_absolute() else base / path
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                raise ValueError("not a regular file")
            if st.st_mode & 0o077:
                raise ValueError(f"mode {stat.S_IMODE(st.st_mode):04o}: it must be 0600 "
                                 "(readable by its owner only)")
            secret = bytes.fromhex(path.read_text().strip())
            if len(secret) < MIN_KEY_BYTES:
                raise ValueError(f"{len(secret)} bytes; at least {MIN_KEY_BYTES} needed")
        except (OSError, ValueError) as exc:
            problems.append((where, key, f"{path}: {exc}"))
            continue
        peers.append(Peer(e["name"], e["url"], secret))
    if problems:
        raise ConfigError(problems)
    return peers
