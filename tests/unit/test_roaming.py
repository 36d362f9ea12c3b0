"""Roaming between CRS domains (X.1125 13.3, 13.4): the SCS <-> SCS transfer as data.

Two SCSs ("home", "visited") exchange their messages by hand here; the terminal (or an
attacker on the network) tries to get out of a quarantine by moving, racing the transfer,
replaying or forging one."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml
from corekit import ROOT
from corekit import settings as core_settings

from controller.config import ConfigError
from controller.crs import messages as m
from controller.crs import roaming as r
from controller.crs.decision import Level
from controller.crs.policy import parse_policy
from controller.crs.scs import SCS, Reply, effects_of
from controller.effects import Count, Rejected

DOC = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" /
                      "crs_policy.yaml").read_text())
KEY = bytes(range(32))
T0 = 1_764_300_000.0
TID = "c1t1@crs.example"
SCI = {"os": {"name": "MobileOS", "patch_level": 12},
       "antivirus": {"engine": "1.0", "signature_version": 2041},
       "agent_version": "1.0.0", "firewall": True, "threats": [], "attackers": []}
WORM = [{"name": "Worm.Demo", "count": 1, "cleaned": False}]


class Domain:
    def __init__(self, name: str, peer: str, key: bytes = KEY):
        self.scs = SCS(parse_policy(copy.deepcopy(DOC)), lambda tid: b"t" * 32)
        self.scs.max_gap_s = 10.0
        self.roam = r.Roaming(name, [r.Peer(peer, f"http://{peer}:8080", key)], 3.0)
        self.seq = 0

    def arrive(self, now: float, tid: str = TID, port: int = 2) -> list[r.Ask]:
        """What the security owner does on an admission: hold and ask, then connect."""
        asks = r.arrival(self.scs, self.roam, tid, now)
        self.scs.connect(tid, "staff", "10.0.1.1", "02:00:0a:00:01:01", 11, port, now)
        return [a for a in asks if isinstance(a, r.Ask)]

    def report(self, now: float, threats=(), tid: str = TID) -> list:
        self.seq += 1
        raw = m.encode("SCIReport", tid, self.seq, now,
                       {"ms_id": tid, "sci": {**SCI, "threats": list(threats)}}, b"t" * 32)
        return self.scs.handle(None, raw, now)

    def level(self, tid: str = TID) -> Level:
        return self.scs.terminals[tid].decision.level

    def receive(self, raw: bytes, now: float) -> list:
        return r.receive(self.scs, self.roam, raw, now)


def answer(home: Domain, ask: r.Ask, now: float) -> bytes:
    """The home SCS answers a query: the signed RoamTransfer (the HTTP answer's body)."""
    (reply,) = effects_of(home.receive(ask.payload, now), Reply)
    return reply.payload


def rejected(effects: list) -> list[str]:
    return [e.counter for e in effects if isinstance(e, Rejected)]


def problems_of(fn, *args) -> str:
    """The problems a configuration check reports (it must report some)."""
    with pytest.raises(ConfigError) as exc:
        fn(*args)
    return str(exc.value)


def pair():
    return Domain("home", "visited"), Domain("visited", "home")


def leave_home(home: Domain, now: float, threats=()) -> None:
    """The terminal reports at home (clean, or with `threats`), then leaves 1 s later."""
    home.arrive(now)
    home.report(now, threats)
    assert home.scs.terminals[TID].own_level is (Level.INFECTED if threats else Level.COMPLIANT)
    home.scs.leave(TID, now + 1)


def moved(after: float, threats=()) -> tuple[Domain, Domain, r.Ask]:
    """The terminal reported at home, left, and arrives in the visited domain `after` s
    after its report: both domains and the visited SCS's query."""
    home, visited = pair()
    leave_home(home, T0, threats)
    (ask,) = visited.arrive(T0 + after)
    return home, visited, ask


def test_quarantine_follows_the_terminal_without_a_report():
    home, visited, ask = moved(3, WORM)
    assert visited.level() is Level.UNKNOWN            # held until the home answers
    visited.receive(answer(home, ask, T0 + 3.1), T0 + 3.2)
    assert visited.level() is Level.INFECTED and visited.scs.terminals[TID].decision.isolate
    assert TID not in visited.scs.held
    # the home keeps its record (offline), its flows went with the Leave
    assert not home.scs.terminals[TID].online and home.scs.terminals[TID].own_level is \
        Level.INFECTED


def test_operator_quarantine_follows_too():
    home, visited = pair()
    home.arrive(T0)
    home.report(T0)
    home.scs.quarantine(TID, T0)
    home.scs.leave(TID, T0 + 1)
    (ask,) = visited.arrive(T0 + 2)
    visited.receive(answer(home, ask, T0 + 2), T0 + 2)
    t = visited.scs.terminals[TID]
    assert t.override is not None and t.override.kind == "quarantine"
    assert visited.scs.terminals[TID].decision.isolate


def test_racing_the_transfer_with_a_clean_report_gains_nothing():
    home, visited, ask = moved(2, WORM)
    visited.report(T0 + 2.05)                   # clean, before the home's answer
    assert visited.level() is Level.UNKNOWN     # never more than UNKNOWN while held
    visited.receive(answer(home, ask, T0 + 2.1), T0 + 2.1)
    assert visited.level() is Level.INFECTED


def test_a_clean_terminal_keeps_its_level_across_a_handover():
    home, visited, ask = moved(4)
    effects = visited.receive(answer(home, ask, T0 + 4), T0 + 4)
    assert visited.level() is Level.COMPLIANT
    assert Count("crs_roam_level_adopted") in effects
    # the transferred report goes stale here like one received here
    assert visited.scs.terminals[TID].last_report == T0


def test_through_a_network_without_crs_it_starts_unknown():
    home, visited, ask = moved(30)            # 29 s away: longer than a handover
    effects = visited.receive(answer(home, ask, T0 + 30), T0 + 30)
    assert visited.level() is Level.UNKNOWN
    assert Count("crs_roam_unmonitored_gap") in effects
    # and back home the same way: the home's own record is no longer trusted
    home.arrive(T0 + 60)
    assert home.level() is Level.UNKNOWN
    assert "unmonitored" in home.scs.terminals[TID].own_reason


def test_unknown_to_every_peer_ends_the_hold_at_unknown_and_a_report_decides():
    home, visited = pair()
    (ask,) = visited.arrive(T0)
    visited.receive(answer(home, ask, T0), T0)
    assert TID not in visited.scs.held and visited.level() is Level.UNKNOWN
    visited.report(T0 + 1)
    assert visited.level() is Level.COMPLIANT


def test_a_silent_peer_fails_closed_counted_and_asked_again():
    home, visited, ask = moved(2)
    visited.report(T0 + 2.5)
    assert visited.roam.overdue(T0 + 4) == []
    out = visited.roam.overdue(T0 + 5.1)
    assert Count("crs_roam_no_answer") in out
    (again,) = effects_of(out, r.Ask)
    assert again.payload != ask.payload
    assert visited.level() is Level.UNKNOWN and TID in visited.scs.held
    # the late answer to the first query is refused; the answer to the second counts
    late = visited.receive(answer(home, ask, T0 + 5.2), T0 + 5.2)
    assert rejected(late) == ["crs_roam_rejected_unsolicited"]
    visited.receive(answer(home, again, T0 + 5.3), T0 + 5.3)
    assert visited.level() is Level.COMPLIANT


def test_replayed_forged_stale_misaddressed_and_unsolicited_transfers_are_refused():
    home, visited, ask = moved(2)
    good = answer(home, ask, T0 + 2)
    visited.receive(good, T0 + 2)
    assert visited.level() is Level.COMPLIANT
    visited.scs.leave(TID, T0 + 3)
    (ask2,) = visited.arrive(T0 + 4)
    assert rejected(visited.receive(good, T0 + 4)) == ["crs_roam_rejected_unsolicited"]
    body = {**m.decode(good).body, "nonce": m.decode(ask2.payload).body["nonce"]}
    forged = m.encode("RoamTransfer", "home", 1, T0 + 4, body, b"x" * 32)
    assert rejected(visited.receive(forged, T0 + 4)) == ["crs_roam_rejected_unauthenticated"]
    stale = m.encode("RoamTransfer", "home", 2, T0 - 100, body, KEY)
    assert rejected(visited.receive(stale, T0 + 4)) == ["crs_roam_rejected_unauthenticated"]
    other = m.encode("RoamTransfer", "home", 3, T0 + 4, {**body, "receiver": "elsewhere"}, KEY)
    assert rejected(visited.receive(other, T0 + 4)) == ["crs_roam_rejected_misaddressed"]
    # a transfer about another identity than the one asked about
    swapped = m.encode("RoamTransfer", "home", 4, T0 + 4, {**body, "ms_id": "c1t2@x"}, KEY)
    assert rejected(visited.receive(swapped, T0 + 4)) == ["crs_roam_rejected_unsolicited"]
    by_terminal = m.encode("RoamTransfer", TID, 5, T0 + 4, body, KEY)
    assert rejected(visited.receive(by_terminal, T0 + 4)) == ["crs_roam_rejected_unknown_peer"]
    assert rejected(visited.receive(b'{"nope', T0 + 4)) == ["crs_roam_rejected_malformed"]
    assert visited.level() is Level.UNKNOWN and TID in visited.scs.held


def test_a_query_is_answered_once_and_a_terminal_message_never_passes_as_one():
    home, visited = pair()
    (ask,) = visited.arrive(T0)
    assert effects_of(home.receive(ask.payload, T0), Reply)
    assert rejected(home.receive(ask.payload, T0)) == ["crs_roam_rejected_unauthenticated"]
    # a RoamTransfer sent to the terminals' endpoint is refused there
    raw = m.encode("RoamTransfer", "home", 9, T0, {"receiver": "visited", "ms_id": TID,
                                                   "nonce": "0" * 32, "known": False}, KEY)
    assert rejected(visited.scs.handle(None, raw, T0))


def test_peer_keys_load_only_from_a_private_file(tmp_path):
    f = tmp_path / "home-visited.key"
    f.write_text(os.urandom(32).hex() + "\n")
    f.chmod(0o600)
    entry = {"name": "visited", "url": "http://127.0.0.1:1", "key_file": f.name}
    (peer,) = r.load_peers("c.yaml", [entry], tmp_path)
    assert len(peer.key) == 32 and peer.key.hex() not in repr(peer)
    f.chmod(0o644)
    with pytest.raises(ConfigError, match=r"c.yaml: roaming.peers\[0\].key_file: .*0600"):
        r.load_peers("c.yaml", [entry], tmp_path)
    f.chmod(0o600)
    f.write_text("abcd")
    with pytest.raises(ConfigError, match="at least 32"):
        r.load_peers("c.yaml", [entry], tmp_path)


def test_settings_name_a_crs_domain_and_its_peers(tmp_path):
    from controller.settings import validate
    f = tmp_path / "k"
    f.write_text(os.urandom(32).hex())
    f.chmod(0o600)
    s = core_settings(tmp_path, crs=True)
    s.demo = True
    s.topology_file = str(ROOT / "topologies" / "roaming.yaml")
    s.domain = "visited"
    s.roaming_peers = [{"name": "home", "url": "http://127.0.0.1:1", "key_file": str(f)}]
    assert [p.name for p in validate(s).peers] == ["home"]
    s.domain = "nocrs"
    s.roaming_peers = [{"name": "nowhere", "url": "ftp://x", "key_file": str(f)}]
    text = problems_of(validate, s)
    assert "domain: 'nocrs' is a domain without CRS" in text
    assert "roaming.peers[0].name: 'nowhere' is not another CRS domain" in text
    assert "roaming.peers[0].url: must be an http:// URL" in text


# --- the core with two domains: the security owner's wiring, a restart while held -----------

def visited_core(tmp_path, now):
    """The visited domain's core on topologies/roaming.yaml, its switch bs2 connected."""
    from controller.core import Core
    from controller.openflow.flowsim import FlowSim
    from controller.topology import load
    f = tmp_path / "pair.key"
    if not f.exists():
        f.write_text(KEY.hex())
        f.chmod(0o600)
    s = core_settings(tmp_path, crs=True)
    s.topology_file = str(ROOT / "topologies" / "roaming.yaml")
    s.domain = "visited"
    s.roaming_peers = [{"name": "home", "url": "http://127.0.0.1:9", "key_file": str(f)}]
    core = Core(s, load(s.topology_file), now=now)
    sim = FlowSim()
    sim.apply(m for _, m in core.switch_up(12, {1, 2}, now))
    return core, sim


def test_the_visited_core_asks_holds_and_keeps_holding_across_a_restart(tmp_path):
    from corekit import authenticate, report
    core, sim = visited_core(tmp_path, T0)
    _, keys = authenticate(core, sim, 2, "02:00:0a:00:02:01", "c2t1", T0, dpid=12)
    (ask,) = core.take_http()
    assert ask.route == "roam" and ask.answer_back and ask.url.endswith(r.PATH)
    tid = "c2t1@crs.example"
    query = m.decode(ask.body)
    assert query.type == "RoamQuery" and query.body["ms_id"] == tid
    # the terminal races: a clean report before the home's answer
    status, _, _ = core.crsap_message(report(keys, tid, 1, T0 + 0.5, {
        "os": {"patch_level": 12}, "antivirus": {"signature_version": 2041},
        "agent_version": "1.0.0", "firewall": True, "threats": [], "attackers": []}), T0 + 0.5)
    assert status == 200
    assert core.security.scs.terminals[tid].decision.level is Level.UNKNOWN
    # a restart: still held, and the home asked again at once
    core.store.close()
    core, sim = visited_core(tmp_path, T0 + 1)
    assert tid in core.security.scs.held
    core.tick(T0 + 1.1)
    (again,) = core.take_http()
    nonce = m.decode(again.body).body["nonce"]
    # a forged answer is refused (403); the home's real one ends the hold (204)
    body = {"receiver": "visited", "ms_id": tid, "nonce": nonce, "known": True,
            "level": "INFECTED", "online": False, "left_at": T0}
    status, _, _ = core.roam_message(m.encode("RoamTransfer", "home", 1, T0 + 1.2, body,
                                              b"k" * 32), T0 + 1.2)
    assert status == 403 and core.status()["counters"]["crs_roam_rejected_unauthenticated"]
    status, _, out = core.roam_message(m.encode("RoamTransfer", "home", 2, T0 + 1.2, body,
                                                KEY), T0 + 1.2)
    assert status == 204 and out
    assert core.security.scs.terminals[tid].decision.isolate and tid not in \
        core.security.scs.held


def test_a_controller_without_roaming_refuses_roaming_messages(tmp_path):
    from corekit import boot_core
    core, _ = boot_core(tmp_path, crs=True)
    status, _, out = core.roam_message(b"{}", T0)
    assert status == 404 and out == []


def test_topology_domains_are_checked_and_a_link_from_a_network_without_crs_is_an_edge(
        tmp_path):
    from controller.topology import load
    t = load(ROOT / "topologies" / "roaming.yaml")
    assert t.domain_dpids("home") == {1, 4, 11} and t.foreign_dpids("home") == {12}
    gw_to_bs9 = next(lk.a_port for lk in t.links if lk.b == "bs9")
    assert gw_to_bs9 not in t.infra_ports()[1]          # nothing there was admitted
    doc = yaml.safe_load((ROOT / "topologies" / "roaming.yaml").read_text())
    doc["domains"] = [{"name": "home", "switches": ["gw", "svc", "bs1", "nope"]},
                      {"name": "visited", "switches": ["bs1"]}]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    text = problems_of(load, bad)
    assert "domains[0].switches: 'nope' is not a switch" in text
    assert "domains[1].switches: 'bs1' is already in domain 'home'" in text
    assert "switches in no domain: ['bs2', 'bs9']" in text


def test_arp_for_a_host_of_another_domain_goes_toward_it_never_back(tmp_path):
    from controller import packet
    from controller.forwarding import Forwarding
    from controller.openflow.ofmsg import Output
    from controller.topology import load
    t = load(ROOT / "topologies" / "roaming.yaml")
    fwd = Forwarding()
    fwd.place_topology(t, False, "visited")
    fwd.switch_up(12)
    # "who has 10.0.100.11?" from c2t1 (the reply's layout with op 1, to the broadcast)
    reply = packet.arp_reply("02:00:0a:00:02:01", "10.0.2.1", "00:00:00:00:00:00",
                             "10.0.100.11")
    req = b"\xff" * 6 + reply[6:20] + b"\x00\x01" + reply[22:]
    frame = packet.parse(req)
    assert frame.arp_op == 1 and frame.arp_tpa == "10.0.100.11"
    (out,) = fwd.arp_request(12, 2, frame, req)[0]     # mail lives in the home domain
    assert out[0] == 12 and out[1].actions == (Output(1),)
    assert fwd.arp_request(12, 1, frame, req)[0] == []     # from the boundary: not back


def arp_from(mac: str, ip: str, asks: str) -> bytes:
    from controller import packet
    reply = packet.arp_reply(mac, ip, "00:00:00:00:00:00", asks)
    return b"\xff" * 6 + reply[6:20] + b"\x00\x01" + reply[22:]


def test_a_roaming_terminal_keeps_its_own_address_and_nobody_else_takes_it(tmp_path):
    from corekit import authenticate
    core, sim = visited_core(tmp_path, T0)
    c = core.status
    authenticate(core, sim, 10, "02:00:0a:00:01:02", "c1t2", T0, dpid=12)
    core.packet_in(12, 10, 0, arp_from("02:00:0a:00:01:02", "10.0.1.2", "10.0.100.254"), T0)
    assert c()["counters"]["binding_address_pinned"] == 1
    assert core.security.scs.terminals["c1t2@crs.example"].ip == "10.0.1.2"
    # another subscriber with its own MAC cannot take c1t1's address here
    authenticate(core, sim, 11, "02:00:0a:00:01:03", "c1t3", T0, dpid=12)
    core.packet_in(12, 11, 0, arp_from("02:00:0a:00:01:03", "10.0.1.1", "10.0.100.254"), T0)
    assert c()["counters"]["attack_spoofed_first_address_dropped"] == 1
    assert c()["counters"]["binding_address_pinned"] == 1
