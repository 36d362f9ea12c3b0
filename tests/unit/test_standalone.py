"""The reacting system without a topology file or 802.1X (`owners.standalone`): keys issued
ahead of time, terminals connected where their MAC is first seen at an edge port,
inter-switch ports found by authenticated LLDP. Checked against simulated switches, with
the terminal playing every trick a frame allows."""
import os

import pytest
from corekit import CLEAN, INFECTED, ROOT, T0
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from controller.config import ConfigError
from controller.core import Core
from controller.crs import messages as crsap
from controller.crs import provisioned
from controller.crs.agent import sci_from_posture
from controller.links import Links
from controller.openflow.flowsim import FlowSim
from controller.openflow.ofmsg import OFPP_TABLE, PacketOut
from controller.openflow.tables import SECURITY
from controller.settings import Settings, validate

H1, H2, H3 = "00:00:00:00:00:01", "00:00:00:00:00:02", "00:00:00:00:00:03"
S1, S2 = 1, 2          # s1: port 1 to s2; s2: port 1 to s1, hosts on 2 and 3


def udp(src_mac, src_ip, dst_ip, dst_mac="ff:ff:ff:ff:ff:ff"):
    return bytes(Ether(src=src_mac, dst=dst_mac) / IP(src=src_ip, dst=dst_ip) /
                 UDP(sport=5000, dport=5001))


def ip_match(src_mac, src_ip, dst_ip):
    return {"eth_src": src_mac, "eth_dst": "00:00:00:00:00:09", "eth_type": 0x0800,
            "ipv4_src": src_ip, "ipv4_dst": dst_ip, "ip_proto": 17, "udp_dst": 5001}


def signed(name, key, seq, now, posture):
    body = {"ms_id": name, "sci": sci_from_posture(posture)}
    return crsap.encode("SCIReport", name, seq, now, body, key)


def standalone_settings(tmp_path, keys_file):
    return Settings(db_path=str(tmp_path / "crs.db"), audit_log=str(tmp_path / "audit.jsonl"),
                    topology_file=None, admission_mode="open", crs_enabled=True,
                    crs_policy_file=str(ROOT / "config" / "crs_policy.yaml"),
                    crs_keys_file=str(keys_file), crs_service_ip="10.0.0.254")


class Net:
    """Two simulated switches and a core without a topology file."""

    def __init__(self, tmp_path):
        self.keys_file = tmp_path / "keys.yaml"
        self.keys = {n: bytes.fromhex(provisioned.issue(self.keys_file, n, m, f"10.0.0.{i}")
                                      ["crs_report_key"])
                     for i, (n, m) in enumerate((("h1", H1), ("h2", H2)), start=1)}
        self.settings = standalone_settings(tmp_path, self.keys_file)
        self.core = Core(self.settings, None, now=T0, loaded=validate(self.settings))
        self.sims = {S1: FlowSim(), S2: FlowSim()}
        self.seq = 0
        for dpid in self.sims:
            self.apply(self.core.switch_up(dpid, set(), T0))
        lldp = {}
        for dpid, ports in ((S1, (1, 2)), (S2, (1, 2, 3))):
            for p in ports:
                out = self.core.port_status(dpid, p, True, T0)
                lldp[(dpid, p)] = next(m.data for _, m in out if isinstance(m, PacketOut))
        self.lldp = lldp
        # the s1-s2 link carries s1 port 1's LLDP to s2 port 1
        self.apply(self.core.packet_in(S2, 1, 0, lldp[(S1, 1)], T0))

    def apply(self, out):
        for dpid, m in out:
            self.sims[dpid].apply([m])
        return out

    def frame(self, dpid, port, data, now=T0):
        return self.apply(self.core.packet_in(dpid, port, 2, data, now))

    def report(self, name, posture, now=T0):
        self.seq += 1
        status, _, out = self.core.crsap_message(signed(name, self.keys[name], self.seq, now,
                                                        posture), now)
        self.apply(out)
        return status

    def terminal(self, name):
        return self.core.security.scs.terminals.get(name)


def test_keys_file_round_trip_and_its_checks(tmp_path):
    f = tmp_path / "keys.yaml"
    doc = provisioned.issue(f, "h1", H1, "10.0.0.1", "lab")
    assert oct(f.stat().st_mode & 0o777) == "0o600"
    got = provisioned.load(f)["h1"]
    assert (got.mac, got.ip, got.group, got.key.hex()) == (H1, "10.0.0.1", "lab",
                                                          doc["crs_report_key"])
    again = provisioned.issue(f, "h1", H1, "10.0.0.1", "lab")
    assert again["crs_report_key"] != doc["crs_report_key"]     # re-issuing re-keys
    with pytest.raises(ValueError, match="already h1's"):
        provisioned.issue(f, "h2", H1.upper(), "10.0.0.2")
    os.chmod(f, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        provisioned.load(f)
    f.write_text("terminals:\n  h1: {key: abc, mac: nope, ip: 10.0.0.999}\n")
    os.chmod(f, 0o600)
    with pytest.raises(ConfigError) as exc:
        provisioned.load(f)
    text = str(exc.value)
    assert "terminals.h1.key" in text and "terminals.h1.mac" in text and "terminals.h1.ip" \
        in text
    assert provisioned.mininet_defaults("h12") == ("00:00:00:00:00:0c", "10.0.0.12")
    assert provisioned.load(tmp_path / "none.yaml", missing_ok=True) == {}


def test_lldp_is_ours_fresh_and_between_two_switches():
    links = Links(b"k" * 32)
    frame = links.probe(1, 3, T0)
    assert links.heard(2, 7, frame, T0 + 0.1) == ((1, 3), "ours")
    assert not links.trunk(2, 7)                  # heard is not recorded: add decides
    assert links.add((2, 7), (1, 3)) == [(2, 7), (1, 3)]
    assert links.add((2, 7), (1, 3)) == []        # known
    assert links.trunk(1, 3) and links.trunk(2, 7)
    assert Links(b"x" * 32).heard(2, 7, frame, T0)[1] == "forged"
    assert links.heard(2, 7, frame, T0 + 60)[1] == "stale"
    assert links.heard(1, 4, frame, T0)[1] == "looped"
    tampered = frame.replace((3).to_bytes(4, "big") + int(T0 * 1000).to_bytes(8, "big"),
                             (4).to_bytes(4, "big") + int(T0 * 1000).to_bytes(8, "big"))
    assert tampered != frame and links.heard(2, 7, tampered, T0)[1] == "forged"
    assert links.port_down(2, 7) == [(2, 7), (1, 3)]
    assert not links.trunk(1, 3) and not links.trunk(2, 7)


def test_settings_say_what_is_missing(tmp_path):
    keys = tmp_path / "keys.yaml"
    s = standalone_settings(tmp_path, keys)
    s.crs_service_ip = None
    with pytest.raises(ConfigError, match="crs.service.ip"):
        validate(s)
    s = standalone_settings(tmp_path, keys)
    s.topology_file = str(ROOT / "topologies" / "minimal.yaml")
    with pytest.raises(ConfigError, match="without a topology file"):
        validate(s)
    s = standalone_settings(tmp_path, keys)
    s.crs_keys_file = None
    with pytest.raises(ConfigError, match="crs.keys"):
        validate(s)


def test_a_terminal_is_connected_at_its_edge_port_and_contained_there(tmp_path):
    net = Net(tmp_path)
    assert net.core.status()["standalone"]["inter_switch_ports"] == ["1:1", "2:1"]
    # h1's first frame at s2 port 2: connected there, UNKNOWN until it reports, and the
    # frame goes back through the pipeline so it meets the restriction first
    out = net.frame(S2, 2, udp(H1, "10.0.0.1", "10.0.0.2"))
    assert any(isinstance(m, PacketOut) and m.actions[0].port == OFPP_TABLE for _, m in out)
    t = net.terminal("h1")
    assert (t.dpid, t.port, t.online) == (S2, 2, True)
    assert net.sims[S2].process(ip_match(H1, "10.0.0.1", "10.0.0.2"), 2).dropped
    assert net.report("h1", CLEAN) == 200
    assert not net.sims[S2].process(ip_match(H1, "10.0.0.1", "10.0.0.2"), 2).dropped
    assert net.report("h1", INFECTED) == 200
    isolated = net.sims[S2].process(ip_match(H1, "10.0.0.1", "10.0.0.2"), 2)
    assert isolated.dropped and isolated.tables() == [0, SECURITY.table_id]
    # a new MAC on the quarantined port is still the quarantined port
    assert net.sims[S2].process(ip_match("02:66:00:00:00:01", "10.0.0.50", "10.0.0.2"),
                                2).dropped
    # its frames through the trunk do not move it (s1 learns it behind port 1)
    net.frame(S1, 1, udp(H1, "10.0.0.1", "10.0.0.2"))
    assert (net.terminal("h1").dpid, net.terminal("h1").port) == (S2, 2)


def test_a_terminal_cannot_take_a_neighbours_place_or_leave_its_own(tmp_path):
    net = Net(tmp_path)
    net.frame(S2, 2, udp(H1, "10.0.0.1", "10.0.0.2"))
    net.report("h1", INFECTED)
    # h2's MAC sent from h1's port: refused and dropped (one terminal per edge port)
    assert net.frame(S2, 2, udp(H2, "10.0.0.2", "10.0.0.9")) == []
    assert net.terminal("h2") is None
    # h1's MAC sent from another edge port: not moved, dropped
    assert net.frame(S1, 2, udp(H1, "10.0.0.1", "10.0.0.9")) == []
    # ... not even while its switch is away (its port's state unknown)
    net.core.switch_down(S2)
    assert net.frame(S1, 2, udp(H1, "10.0.0.1", "10.0.0.9")) == []
    assert (net.terminal("h1").dpid, net.terminal("h1").port) == (S2, 2)
    assert net.core.counters["attack_attach_conflict_refused"] == 3
    # an LLDP frame forged by the terminal, or a genuine one relayed from another port:
    # refused, the quarantined terminal stays where it is, restricted
    forged = Links(b"guess" * 7).probe(S1, 2, T0)
    net.apply(net.core.packet_in(S2, 2, 0, forged, T0))
    net.apply(net.core.packet_in(S2, 2, 0, net.lldp[(S1, 2)], T0))
    assert net.core.counters["lldp_forged"] == 1
    assert net.core.counters["attack_trunk_claim_refused"] == 1
    assert net.terminal("h1").online and net.terminal("h1").port == 2
    assert net.sims[S2].process(ip_match(H1, "10.0.0.1", "10.0.0.2"), 2).dropped


def test_unplugging_frees_nobody_and_a_free_terminal_moves_with_its_level(tmp_path):
    net = Net(tmp_path)
    net.frame(S2, 2, udp(H1, "10.0.0.1", "10.0.0.2"))
    net.report("h1", INFECTED)
    # the quarantined terminal takes its link down and comes back with a new MAC: held
    net.apply(net.core.port_status(S2, 2, False, T0 + 1))
    net.apply(net.core.port_status(S2, 2, True, T0 + 2))
    t = net.terminal("h1")
    assert (t.online, t.port, t.decision.level.value) == (True, 2, "INFECTED")
    assert net.sims[S2].process(ip_match("02:66:00:00:00:01", "10.0.0.66", "10.0.0.2"),
                                2).dropped
    assert net.frame(S2, 3, udp(H1, "10.0.0.1", "10.0.0.2")) == []   # and it stays there
    # a free terminal unplugged leaves, and is connected where it comes back
    net.frame(S1, 2, udp(H2, "10.0.0.2", "10.0.0.1"))
    net.report("h2", CLEAN)
    net.apply(net.core.port_status(S1, 2, False, T0 + 3))
    assert not net.terminal("h2").online
    net.frame(S2, 3, udp(H2, "10.0.0.2", "10.0.0.1"), T0 + 4)
    t = net.terminal("h2")
    assert (t.dpid, t.port, t.online, t.decision.level.value) == (S2, 3, True, "COMPLIANT")
    # no key, no terminal: forwarding goes on as in any open network
    out = net.frame(S1, 3, udp("02:00:00:00:00:77", "10.0.0.77", "10.0.0.2"))
    assert "02:00:00:00:00:77" not in {t.mac for t in net.core.security.scs.terminals.values()}
    assert any(isinstance(m, PacketOut) for _, m in out)


def test_a_relayed_lldp_frame_cannot_make_a_free_terminal_uncontainable(tmp_path):
    net = Net(tmp_path)
    net.frame(S2, 2, udp(H1, "10.0.0.1", "10.0.0.2"))
    net.report("h1", CLEAN)
    # h1's own port probe, relayed into a colluder's port on s1: refused (h1 is there)
    net.apply(net.core.packet_in(S1, 2, 0, net.lldp[(S2, 2)], T0))
    assert net.core.counters["attack_trunk_claim_refused"] == 1
    assert net.terminal("h1").online
    assert net.report("h1", INFECTED) == 200
    assert net.sims[S2].process(ip_match(H1, "10.0.0.1", "10.0.0.2"), 2).dropped


def test_the_service_address_is_claimed_only_from_its_own_port(tmp_path):
    net = Net(tmp_path)
    svc_mac = net.settings.crs_service_mac
    gratuitous = {"eth_src": "02:66:00:00:00:01", "eth_dst": "ff:ff:ff:ff:ff:ff",
                  "eth_type": 0x0806, "arp_op": 2, "arp_spa": "10.0.0.254",
                  "arp_tpa": "10.0.0.254"}
    stolen = {**ip_match(svc_mac, "10.0.0.254", "10.0.0.1")}
    for pkt in (gratuitous, stolen):
        assert net.sims[S1].process(pkt, 3).dropped      # from an edge port: dropped
    # the port the switch names crs-svc is the service's: its frames pass
    net.apply(net.core.port_status(S1, 4, True, T0, name="crs-svc"))
    for pkt in (gratuitous, stolen):
        assert not net.sims[S1].process(pkt, 4).dropped
        assert not net.sims[S2].process(pkt, 1).dropped   # and through the trunk
    assert net.core.status()["standalone"]["service_port"] == "1:4"


def test_keys_issued_while_running_are_used_and_a_broken_file_changes_nothing(tmp_path):
    net = Net(tmp_path)
    h3 = bytes.fromhex(provisioned.issue(net.keys_file, "h3", H3, "10.0.0.3")
                       ["crs_report_key"])
    net.keys["h3"] = h3
    net.core.tick(T0 + 2)
    net.frame(S2, 3, udp(H3, "10.0.0.3", "10.0.0.1"), T0 + 2)
    assert net.report("h3", CLEAN, T0 + 2) == 200
    net.keys_file.write_text("terminals: [broken\n")
    os.utime(net.keys_file, (T0, T0))
    net.core.tick(T0 + 4)
    assert net.core.counters["provisioned_keys_reload_failed"] == 1
    assert net.report("h3", CLEAN, T0 + 4) == 200
    # a report signed with a key that is not the terminal's is refused
    net.keys["h3"] = os.urandom(32)
    assert net.report("h3", CLEAN, T0 + 5) == 403
