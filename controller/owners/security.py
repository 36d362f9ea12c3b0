"""Table 1's owner (X.1125): the SCS, its NAC/ASC enforcement, group seals, network evidence
and web redirection.

Decisions, seals, replay counters and correlation evidence are committed to the store
before the flows that enforce them are returned; on a switch's (re)connect its table 1 is
rebuilt from that state without deleting first (a deleted restriction would be an open
door). The owner writes only table 1 (and its meters).
"""
from __future__ import annotations

import json
import logging
import zlib
from collections import Counter
from dataclasses import replace
from typing import Any, Callable, Iterable

from controller import packet
from controller.audit import AuditLog
from controller.config import ConfigError
from controller.crs import enforcement, nac, roaming
from controller.crs import scs as s
from controller.crs.acks import ACK_S, TRIES, Control, ControlAck, Pending
from controller.crs.enforcement import ServiceAddresses
from controller.crs.policy import Policy, load_policy, reload
from controller.crs.scs import MEMO_MAX, SCS, Terminal
from controller.effects import COMMON, Audit, HttpPost, LogBudget, Out, Rejected, SwitchState
from controller.jsonfile import dumps_with
from controller.openflow.ofmsg import OFPP_TABLE, Barrier, Message, MeterMod, Output, PacketOut
from controller.settings import Settings
from controller.store import Store
from controller.topology import Topology

AGENT_PORT = 7125
log = logging.getLogger("crs.security")


def _answer(effects: list) -> tuple[int, bytes]:
    reply = next((e for e in effects if isinstance(e, s.Reply)), None)
    if reply is not None:
        return 200, reply.payload
    if any(isinstance(e, Rejected) for e in effects):
        return 403, b'{"error": "rejected"}'
    return 204, b""


class Security:
    def __init__(self, settings: Settings, topology: Topology, store: Store, audit: AuditLog,
                 counters: Counter, common: Callable, switches: dict[int, SwitchState],
                 now: float, policy: Policy | None = None,
                 peers: list[roaming.Peer] | None = None):
        self.settings, self.topology, self.store, self.audit = settings, topology, store, audit
        self.counters, self.common, self.switches = counters, common, switches
        update = next((h for h in topology.hosts if h.role == "update"), None)
        if update is None:
            raise ValueError(f"{topology.file}: the reacting system needs a host with "
                             "role: update")
        self.svc = ServiceAddresses(topology.service_ip, update.ip, update.mac,
                                    controller_ports=(settings.service_port,))
        self._now = now
        # partial deployment (`crs.enforce`): the switches whose edges enforce (None: all)
        self.enforcing: set[int] | None = None if settings.crs_enforce is None else {
            topology.switch(next((c.switch for c in topology.cells if c.name == n), n)).dpid
            for n in settings.crs_enforce}
        policy = policy or load_policy(settings.crs_policy_file)
        if not store.read_only:     # (a standby's copy records nothing)
            store.add_policy(policy.version, str(policy.source))
        self.scs = SCS(policy, lambda tid: store.crs_key(tid, self._now))
        self.scs.url = f"http://{topology.service_ip}:{settings.service_port}"
        # roaming between CRS domains (13.3/13.4): the peer SCSs asked about arrivals
        self.roaming: roaming.Roaming | None = None
        self._roam_warn = LogBudget(log)     # refusals: anyone can send them, in floods
        if settings.domain and settings.roaming_peers:
            if peers is None:
                peers = roaming.load_peers(settings.config_file or "<command line>",
                                           settings.roaming_peers, settings.config_dir)
            self.roaming = roaming.Roaming(settings.domain, peers,
                                           settings.roaming_answer_within_s)
            self.scs.max_gap_s = settings.roaming_max_gap_s
        self.http_out: list[HttpPost] = []
        self._gens: dict[str, int] = {}          # cookie generation per terminal
        # X.1125 11.4: the NAC behind Control/ControlAck, and what the switches confirmed
        self.nac = nac.Nac(self.svc, lambda dpid: self.switches[dpid].meters)
        self.pending: dict[str, Pending] = {}    # controls not yet confirmed, by terminal
        self.acked: dict[str, tuple[int, int]] = {}   # terminal -> (generation, policy)
        self._seal_gens: dict[str, int] = {}     # cookie generation per sealed group
        self._at: dict[tuple[int, int], str] = {}   # (dpid, port) -> terminal online there
        self._cells = {c.name: (i + 1, c) for i, c in enumerate(topology.cells)}
        # addresses something always lives at (the topology's hosts, the service address);
        # connected terminals are the SCS's address index
        self._static_live = {h.ip for h in topology.hosts} | {topology.service_ip}
        self._decision_json: dict[int, tuple[Any, str]] = {}  # id -> (Decision, JSON)
        self._persisted: set[str] = set()   # terminal rows written (with their seq) by
        # the message being handled
        # what each terminal's row holds on disk but its last report's time and seq: a
        # report that changes nothing else writes only those (Store.put_seen)
        self._rows: dict[str, tuple[Any, ...]] = {}
        self._rows_undone = store.undone    # (forgotten when the store undoes writes)
        # while effects are handled: terminal -> its report's SCI JSON (or None), written
        # once when they are done (a report that changes a decision asked twice: its SCI,
        # then the generation its flows carry)
        self._deferred: dict[str, str | None] | None = None
        # what the group being committed changed in memory: (terminals, seals, posts)
        self._group: tuple[list[str], list[s.SealGroup], int] = ([], [], 0)
        self._restore()

    # --- events from the core ---------------------------------------------------------

    def connect(self, tid: str, group: str, ip: str, mac: str, dpid: int, port: int,
                now: float, moved: bool) -> Out:
        """The NAC's MS connect: on admission of a new or moved terminal, or of one the
        SCS has as offline (revoked before)."""
        t = self.scs.terminals.get(tid)
        if not moved and t is not None and t.online:
            return []
        if t is not None:
            self._at.pop((t.dpid, t.port), None)
        self._at[(dpid, port)] = tid
        asks = roaming.arrival(self.scs, self.roaming, tid, now)     # (13.3)
        return self._effects(self.scs.connect(tid, group, ip, mac, dpid, port, now) + asks,
                             now)

    def leave(self, tid: str, reason: str, now: float) -> Out:
        t = self.scs.terminals.get(tid)
        if t is None:
            return []
        if self._at.get((t.dpid, t.port)) == tid:
            del self._at[(t.dpid, t.port)]
        if self.roaming is not None:
            self.roaming.forget(tid)
        return self._effects(self.scs.leave(tid, now, reason), now)

    def roam_message(self, raw: bytes, now: float) -> tuple[int, bytes, Out]:
        """POST /roam/v1/messages from a peer SCS (or anyone: authenticated here), or a
        peer's answer to our query: (HTTP status, body, flows). A transfer's decision is
        committed before its flows, like a report's."""
        self._now = now
        if self.roaming is None:
            self.counters["crs_roam_rejected_not_configured"] += 1
            return 404, b'{"error": "roaming is not configured"}', []
        with self.store.batch():
            effects = roaming.receive(self.scs, self.roaming, raw, now)
            for e in effects:
                if isinstance(e, roaming.Transfer):
                    self._persist(e.terminal)
                elif isinstance(e, Rejected):       # counted each, logged at most every 10 s
                    self.counters[e.counter] += 1
                    self._roam_warn(now, e.counter, "%s", e.reason)
            out = self._effects([e for e in effects if not isinstance(e, Rejected)], now)
        status, body = _answer(effects)
        self.counters[f"crs_roam_answered_{status}"] += 1
        return status, body, out

    def messages(self, raws: list[bytes], now: float) -> list[tuple[int, bytes, Out]]:
        """POST /crsap/v1/messages from agents, handled in order as one group commit:
        (HTTP status, body, flows) for each. Every decision, sequence number and piece of
        evidence of the group is on disk (one transaction, one sync) before any of the
        group's flows or answers leave."""
        self._now = now
        results: list[tuple[int, bytes, Out]] = []
        self._group = ([], [], len(self.http_out))
        # the group's audit lines are written before its commit, as each was before
        try:
            with self.store.batch(), self.audit.held():
                for raw in raws:
                    results.append(self._one_message(raw, now))
        except Exception:
            # the commit failed: nothing of the group is on disk, and none of its flows,
            # answers or posts leave. Memory went ahead: what the group decided is made
            # and sent anew (decisions, seals), as for one failed message
            touched, seals, posts = self._group
            del self.http_out[posts:]
            self._forget(touched, seals)
            self.counters["crsap_group_failed"] += 1
            raise
        return results

    def _forget(self, touched: Iterable[str], seals: list[s.SealGroup]) -> None:
        """Changes rolled back in the store: the terminals' decisions are made and sent
        anew next time (and their SCI history row written again), and a seal changed in
        memory is changed back, so its next change is seen and its flows sent."""
        for tid in touched:
            t = self.scs.terminals.get(tid)
            if t is not None:
                t.decision = None
                t.sci_json = None      # its SCI history row was rolled back too
        for e in reversed(seals):
            (self.scs.corr.sealed.discard if e.sealed else self.scs.corr.sealed.add)(e.group)
        self._evidence_saved = -1

    def _one_message(self, raw: bytes, now: float) -> tuple[int, bytes, Out]:
        """One message of a group, in a savepoint: a failure (a bug, a full disk) costs
        this message only, and leaves its terminal to be enforced again from scratch."""
        replay, posts = self.scs.replay, len(self.http_out)
        effects: list = []
        self._persisted.clear()
        try:
            with self.store.savepoint():
                effects = self.scs.handle(None, raw, now)
                result = (*_answer(effects), self._effects(effects, now))
                for sender in replay.dirty:     # every accepted message, Leave too (a
                    if sender not in self._persisted:   # terminal row written since
                        self.store.put_replay(sender, replay.last_seq[sender])  # has it)
            self.counters[f"crsap_answered_{result[0]}"] += 1
            touched, seals, _ = self._group     # (undone if the group's commit fails)
            touched += replay.dirty
            touched += (e.terminal_id for e in effects if isinstance(e, s.Enforce))
            seals += (e for e in effects if isinstance(e, s.SealGroup))
            return result
        except Exception:
            del self.http_out[posts:]
            # memory went ahead of the store: the sender's and every changed decision is
            # made and sent anew next time
            self._forget(set(replay.dirty) | {e.terminal_id for e in effects
                                              if isinstance(e, s.Enforce)},
                         [e for e in effects if isinstance(e, s.SealGroup)])
            self.counters["crsap_message_failed"] += 1
            log.exception("CRSAP message failed; its changes were rolled back")
            return 500, b'{"error": "internal error"}', []
        finally:
            replay.dirty.clear()

    def first_contact(self, tid: str, frame: packet.Frame, now: float) -> Out:
        """Network evidence: a terminal's first attempt to reach an address (an ARP request,
        which table 2 sends up; or, without placed hosts, the first packet of a frame from
        a source not yet known there), attributed to
        the terminal bound to the ingress (switch, port). It succeeds when something lives
        there (a host of the topology or a connected terminal); a scanner of dark address
        space fails again and again."""
        if frame.arp_op == 1:
            dst = frame.arp_tpa
        elif frame.ipv4_src and frame.ipv4_dst:
            dst = frame.ipv4_dst
        else:
            return []
        t = self.scs.terminals.get(tid)
        if not dst or t is None or dst == t.ip:
            return []
        live = dst in self._static_live or dst in self.scs.by_ip
        return self._effects(self.scs.observe_first_contact(tid, dst, live, now), now)

    def redirected(self, dpid: int, port: int) -> bool:
        t = self.scs.terminals.get(self._at.get((dpid, port), ""))
        return t is not None and t.decision is not None and t.decision.redirect_web

    def redirect(self, dpid: int, port: int, frame: packet.Frame, data: bytes) -> Out:
        """First packet of a redirected web connection: rewrite it to the update portal."""
        t = self.scs.terminals.get(self._at.get((dpid, port), ""))
        if t is None or not t.online or frame.ipv4_dst is None or frame.l4_src is None:
            self.counters["redirect_unknown"] += 1
            return []
        flows = enforcement.redirect_connection_flows(t.location, self.svc, frame.ipv4_dst,
                                                      frame.l4_src, frame.dst)
        self.counters["redirected_connections"] += 1
        return [(dpid, m) for m in flows] + [(dpid, PacketOut(data, (Output(OFPP_TABLE),),
                                                               port))]

    def tick(self, now: float) -> Out:
        self._now = now
        out = self._effects(self.scs.tick(now) + (self.roaming.overdue(now)
                                                  if self.roaming is not None else []), now)
        for tid in [tid for tid, p in self.pending.items() if now >= p.deadline]:
            out += self._alarm(tid, "control_unacknowledged", "", now)
        return out

    def rebuild(self, dpid: int) -> list[Message]:
        """Table 1 on (re)connect: base flow, then every stored decision and seal, added
        without deleting first (deleting a restriction would open access)."""
        sw = self.switches[dpid]
        msgs: list[Message] = list(enforcement.base_flows())
        if not self.enforced_at(dpid):
            return msgs
        held: list[tuple[str, int]] = []
        for t in self.scs.terminals.values():
            if t.dpid != dpid or t.decision is None or not t.online:
                continue
            held.append((t.tid, self._gens.get(t.tid, 0)))
            self.pending[t.tid] = Pending(held[-1][1], self._now + ACK_S, 1)
            for m in nac.hold(t.decision, t.location, self.svc, self._peers(t.group),
                              self._gens.get(t.tid, 0), sw.meters):
                msgs.append(m)
                # The meter may have survived on the switch: never delete it (that would
                # remove the flows using it, and the restriction with them); add it, and
                # modify it to the wanted rate (one of the two fails harmlessly).
                if isinstance(m, MeterMod) and m.command == "add":
                    msgs.append(replace(m, command="modify"))
        for group in self.store.sealed_groups():
            msgs += [m for _, m in self.seal(group, True, only_dpid=dpid)]
        return msgs + ([Barrier(tag=tuple(held))] if held else [])

    def take_http(self) -> list[HttpPost]:
        out, self.http_out = self.http_out, []
        return out

    # --- operator actions (the operator API checks the request) -------------------------

    def act(self, action: str, tid: str, kbps: int | None, now: float) -> Out:
        if action == "quarantine":
            effects = self.scs.quarantine(tid, now)
        elif action == "release":
            effects = self.scs.release(tid, now)
        else:
            effects = self.scs.rate_limit(tid, kbps, now)
        out = self._effects(effects, now)
        self._persist(tid)
        return out

    def reload_policy(self, now: float) -> Out | ConfigError:
        new = reload(self.settings.crs_policy_file)
        if isinstance(new, ConfigError):
            return new
        self.store.add_policy(new.version, str(new.source))
        return self._effects(self.scs.reload(new, now), now)

    def sizes(self) -> dict[str, int]:
        c = self.scs.corr
        return {"terminals": len(self.scs.terminals), "evidence_accused": len(c.accusations),
                "evidence_first_contacts": len(c._seen), "evidence_scan_flags": len(c.scan_until)}

    # --- internals ----------------------------------------------------------------------

    def _effects(self, effects: list, now: float) -> Out:
        """The flows and writes of the SCS's effects. Each terminal's row is written once,
        after all of them (still before the commit its flows wait for)."""
        if self._deferred is not None:          # (within an outer call: it writes them)
            return self._effects_now(effects, now)
        self._deferred = {}
        try:
            out = self._effects_now(effects, now)
            rows = self._deferred
        finally:
            self._deferred = None
        for tid, sci_json in rows.items():
            self._persist(tid, sci_json)
        return out

    def _effects_now(self, effects: list, now: float) -> Out:
        out: Out = []
        for e in effects:
            if isinstance(e, s.Enforce):
                out += self._enforce(e.terminal_id)     # (commits it before its flows)
                for action in e.decision.actions:
                    self.counters[f"decision_{e.decision.level.name}_{action}"] += 1
            elif isinstance(e, s.Remove):
                self.pending.pop(e.terminal_id, None)
                self._persist(e.terminal_id)
                sw = self.switches.get(e.location.dpid)
                out += [(e.location.dpid, m) for m in
                        nac.release(e.location, sw.meters if sw else set())]
            elif isinstance(e, s.SealGroup):
                self.store.put_seal(e.group, e.sealed)
                out += self.seal(e.group, e.sealed)
            elif isinstance(e, roaming.Ask):
                self.http_out.append(HttpPost(e.url, e.payload, True, "roam"))
            elif isinstance(e, (s.SendUpdate, s.SendProbe)):
                if e.ip:
                    self.http_out.append(HttpPost(
                        f"http://{e.ip}:{AGENT_PORT}/crsap/v1/messages", e.payload,
                        isinstance(e, s.SendProbe)))
            elif isinstance(e, Audit) and e.record.get("event") == "sci_report":
                sci = (e.encoded or {}).get("sci")      # encoded once, by the SCS
                if e.record.get("sci_changed", True):   # the SCI history: each new SCI
                    self.store.add_sci(e.record["terminal"], now,   # (every report is in
                                       sci if sci is not None     # the audit log)
                                       else e.record.get("sci", {}))
                self._persist(e.record["terminal"], sci)
                self.common(e)
            elif isinstance(e, COMMON):
                self.common(e)
        if self.scs.corr.changes != self._evidence_saved:   # before the flows, like decisions
            self._evidence_saved = self.scs.corr.changes
            self.store.put_evidence(self.scs.corr.to_state())
        return out

    def _peers(self, group: str | None) -> list[str]:
        if group in self._cells:
            return [self._cells[group][1].subnet]
        terms = self.scs.terminals
        return [terms[tid].ip for tid in sorted(self.scs.roster.get(group or "", ()),
                                                key=lambda x: terms[x].number)
                if terms[tid].ip]

    def enforced_at(self, dpid: int | None) -> bool:
        """Whether decisions are enforced on this switch (partial deployment)."""
        return self.enforcing is None or dpid in self.enforcing

    def _enforce(self, tid: str, retry: bool = False) -> Out:
        t = self.scs.terminals[tid]
        if t.decision is None or t.dpid not in self.switches or not self.enforced_at(t.dpid):
            if t.decision is not None and t.dpid in self.switches:
                self.counters["crs_decision_not_enforced"] += 1   # evaluated, not restricted
            self._persist(tid)
            return []
        gen = self._gens.get(tid, 0) + 1
        self._gens[tid] = gen
        self._persist(tid)      # with the generation its flows carry: a rebuild after a
        # crash between this commit and the flows replaces the switch's older ones
        msgs = self.nac.control(Control(tid, gen, t.decision.policy_version, t.decision,
                                        t.location, tuple(self._peers(t.group))))
        before = self.pending.get(tid)
        self.pending[tid] = Pending(gen, self._now + ACK_S,
                                    before.tries + 1 if retry and before is not None else 1)
        self.audit.write({"event": "flows", "terminal": tid, "dpid": t.dpid, "port": t.port,
                          "generation": gen, "messages": len(msgs),
                          "level": t.decision.level.value})
        return [(t.dpid, m) for m in msgs]

    # --- Control / ControlAck (X.1125 11.4) ----------------------------------------------

    def control_reply(self, dpid: int, tag: Any, error: str | None, now: float) -> Out:
        """A switch answered a tagged barrier: confirmed, or refused (an OpenFlow error)."""
        self._now = now
        out: Out = []
        for ack in self.nac.answer(tag, error):
            out += self._ack(ack, now)
        return out

    def _ack(self, ack: ControlAck, now: float) -> Out:
        p, t = self.pending.get(ack.terminal), self.scs.terminals.get(ack.terminal)
        if p is None or p.generation != ack.generation or t is None:
            self.counters["crs_control_ack_stale"] += 1    # a newer control is under way
            return []
        if ack.ok:
            del self.pending[ack.terminal]
            self.acked[ack.terminal] = (ack.generation, t.decision.policy_version
                                        if t.decision is not None else 0)
            self.counters["crs_control_acked"] += 1
            return []
        return self._alarm(ack.terminal, "control_refused", ack.reason, now)

    def _alarm(self, tid: str, kind: str, reason: str, now: float) -> Out:
        """A control the switch refused or never confirmed: say so, and send it again
        (a new generation) until TRIES sendings; then give up, loudly."""
        p = self.pending[tid]
        self.counters[f"crs_{kind}"] += 1
        gave_up = p.tries >= TRIES
        self.audit.write({"event": "alarm", "kind": kind, "terminal": tid, "reason": reason,
                          "generation": p.generation, "tries": p.tries, "gave_up": gave_up})
        log.warning("control for %s (generation %d) %s: %s; %s", tid, p.generation,
                    kind.replace("control_", ""), reason or "no answer",
                    "giving up" if gave_up else "sending it again")
        if gave_up:
            del self.pending[tid]
            self.counters["crs_control_gave_up"] += 1
            return []
        out = self._enforce(tid, retry=True)
        if not out:     # no switch to send it to now: its reconnect rebuilds and re-asks
            self.pending.pop(tid, None)
        return out

    def _group_index(self, group: str) -> int:
        if group in self._cells:
            return self._cells[group][0]
        return 1000 + zlib.crc32(group.encode()) % 100000

    def seal(self, group: str, sealed: bool, only_dpid: int | None = None) -> Out:
        """Group seal flows on every switch with members (or only `only_dpid`, rebuilding
        it under the current generation); a change moves to the next generation."""
        idx = self._group_index(group)
        members = [self.scs.terminals[tid].location
                   for tid in sorted(self.scs.members.get(group, ()))]
        per_switch = nac.group_ports(members)
        if group in self._cells:   # a cell's switch is sealed even before its terminals attach
            c, topo = self._cells[group][1], self.topology
            dpid = topo.switch(c.switch).dpid
            ports = [topo.host(n).port for n in c.terminals]
            per_switch[dpid] = sorted(set(per_switch.get(dpid, [])) | set(ports))
        pol = self.scs.policy.correlation
        if only_dpid is None:
            self._seal_gens[group] = self._seal_gens.get(group, 0) + 1
        gen = self._seal_gens.get(group, 0)
        out: Out = []
        for dpid, ports in per_switch.items():
            if dpid not in self.switches or (only_dpid is not None and dpid != only_dpid) \
                    or not self.enforced_at(dpid):
                continue
            if sealed:
                msgs = enforcement.group_seal_flows(idx, ports, self._peers(group), self.svc,
                                                    mode=pol.seal_mode,
                                                    kbps=pol.seal_meter_kbps, gen=gen)
            else:
                msgs = enforcement.group_unseal_flows(idx)
            out += [(dpid, m) for m in msgs]
        self.audit.write({"event": "seal_flows", "group": group, "sealed": sealed,
                          "switches": sorted(per_switch)})
        return out

    def _persist(self, tid: str, sci_json: str | None = None) -> None:
        """Its state and decision to the store. `sci_json`: its last SCI, already encoded
        (a report's). A decision's JSON is remembered: most terminals share a few."""
        if self._deferred is not None:          # written when the effects are done
            if sci_json is not None or tid not in self._deferred:
                self._deferred[tid] = sci_json
            return
        t = self.scs.terminals.get(tid)
        if t is None:
            return
        state = {**t.to_state(), "gen": self._gens.get(tid, 0), "held": self.scs.held.get(tid)}
        d = t.decision
        decision = None
        if d is not None:       # by identity (a decision object is kept while it holds)
            got = self._decision_json.get(id(d))
            if got is None or got[0] is not d:
                if len(self._decision_json) >= MEMO_MAX:
                    self._decision_json.clear()
                got = self._decision_json[id(d)] = (d, json.dumps(nac.decision_to_dict(d)))
            decision = got[1]
        report = sci_json is not None
        if sci_json is None and t.last_sci is not None:
            sci_json = t.sci_json           # its canonical JSON, if the SCS has it
        if sci_json is not None:
            del state["last_sci"]           # (spliced in as it is)
        last, seq = state.pop("last_report"), self.scs.replay.last_seq.get(tid)
        row = (state, sci_json, decision, last is None)
        self._persisted.add(tid)
        if self._rows_undone != self.store.undone:    # a rollback: none is known on disk
            self._rows_undone = self.store.undone
            self._rows.clear()
        if report and last is not None and seq is not None and self._rows.get(tid) == row:
            self.store.put_seen(tid, seq, last)     # a steady report: its time and seq
            return
        # with its highest accepted sequence number: for a report, the row is the replay
        # record too (restored as the higher of the two), one write instead of two
        full = {**state, "last_report": last, "seq": seq}
        self.store.put_terminal(tid, t.number, full if sci_json is None else
                                dumps_with(full, {"last_sci": sci_json}), decision)
        self._rows[tid] = row

    def _restore(self) -> None:
        """After a restart: terminals, decisions, overrides, seals, replay counters and
        correlation evidence, from the store."""
        terminals = []
        self._rows.clear()
        replay = self.store.replay()
        same: dict[Any, Any] = {}   # equal decisions restored as one object (most terminals
        for r in self.store.terminals():    # share a few), as the SCS's memo makes them
            if (r.state.get("seq") or 0) > replay.get(r.tid, 0):
                replay[r.tid] = r.state["seq"]
            d = nac.decision_from_dict(r.decision) if r.decision else None
            t = Terminal.from_state(r.tid, r.number, r.state,
                                    None if d is None else same.setdefault(d, d))
            terminals.append(t)
            self._gens[r.tid] = r.state.get("gen", 0)
            if t.online:
                self._at[(t.dpid, t.port)] = t.tid
            if t.online and r.state.get("held"):    # still waiting for the peers: held,
                self.scs.held[t.tid] = r.state["held"]      # and asked again at once
                if self.roaming is not None:
                    self.roaming.asked[t.tid] = {p: ("", self._now)
                                                 for p in self.roaming.peers}
        self.scs.restore(terminals, replay, self.store.sealed_groups(),
                         self.store.evidence(), self._now)
        self._evidence_saved = self.scs.corr.changes

    def status_rows(self) -> list[dict[str, Any]]:
        rows = []
        for r in self.scs.status():
            acked = self.acked.get(r["id"])
            rows.append({**r, "enforced": self.enforced_at(r.get("dpid")), "control": {
                "generation": self._gens.get(r["id"], 0),
                "confirmed": acked is not None and acked[0] == self._gens.get(r["id"], 0)
                and r["id"] not in self.pending,
                "policy_version_acknowledged": acked[1] if acked else None},
                "roaming_held": r["id"] in self.scs.held})
        return rows

