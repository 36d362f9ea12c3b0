"""The direct OF1.3 encoder writes, byte for byte, what Ryu's serializer writes: for every
message the core sends in a session with authentication, reports, operator actions, seals
and rebuilds, and for every field and action it knows, masked and exact."""
import struct

import pytest
from corekit import C1, C2, CLEAN, INFECTED, T0, authenticate, report
from ryu.ofproto import ofproto_v1_3, ofproto_v1_3_parser

from controller.openflow import encode
from controller.openflow.ofmsg import (
    Apply,
    Barrier,
    FlowMod,
    Goto,
    LocalFrame,
    Meter,
    MeterMod,
    Output,
    PacketOut,
    SetField,
)
from controller.ryu_shell.ofconv import to_ryu


class DP:
    ofproto, ofproto_parser = ofproto_v1_3, ofproto_v1_3_parser


def ryu_bytes(msg, xid):
    m = to_ryu(DP(), msg)
    m.set_xid(xid)
    m.serialize()
    return bytes(m.buf)


def session_messages(boot):
    core, sim = boot(crs=True)
    msgs = []

    def keep(out):
        out = list(out)
        msgs.extend(m for _, m in out)
        sim.apply(m for _, m in out)
    packet_in = core.packet_in

    def recorded(*a, **kw):      # what authentication sends, too
        out = packet_in(*a, **kw)
        msgs.extend(m for _, m in out)
        return out
    core.packet_in = recorded
    keep(core.switch_up(1, {1, 2, 3, 4}, T0))
    for p in (1, 2, 3, 4):
        keep(core.port_status(1, p, True, T0))
    _, k1 = authenticate(core, sim, 2, C1, "c1t1")
    _, k2 = authenticate(core, sim, 3, C2, "c1t2")
    keep(core.crsap_message(report(k1, "c1t1@crs.example", 1, T0 + 1, CLEAN), T0 + 1)[2])
    keep(core.crsap_message(report(k2, "c1t2@crs.example", 1, T0 + 1, INFECTED), T0 + 1)[2])
    for verb, body in (("rate-limit", {"kbps": 100}), ("quarantine", {}), ("release", {})):
        keep(core.api.act(verb, "c1t1", body, T0 + 2)[1])
    keep(core.security.seal("cell1", True))
    keep(core.switch_up(1, set(), T0 + 3))
    keep(core.switch_up(1, set(), T0 + 4, eapol_local=True))
    for p in (2, 3):
        keep(core.port_status(1, p, True, T0 + 4))
    keep(core.tick(T0 + 5))
    return [m for m in msgs if not isinstance(m, LocalFrame)]


def test_every_message_of_a_session_encodes_as_ryu_does(boot):
    msgs = session_messages(boot)
    kinds = {type(m).__name__ for m in msgs}
    assert {"FlowMod", "MeterMod", "PacketOut"} <= kinds and len(msgs) > 100
    for i, m in enumerate(msgs):
        assert encode.encode(m, 1000 + i) == ryu_bytes(m, 1000 + i), m


FIELDS = {"in_port": 7, "eth_dst": "01:80:c2:00:00:03", "eth_src": "02:00:0a:00:01:01",
          "eth_type": 0x0800, "vlan_vid": 0x1005, "ip_proto": 6, "ipv4_src": "10.0.1.1",
          "ipv4_dst": ("10.0.0.0", "255.255.0.0"), "tcp_src": 80, "tcp_dst": (0x8000, 0x8000),
          "udp_src": 53, "udp_dst": 5353, "icmpv4_type": 8, "icmpv4_code": 0, "arp_op": 1,
          "arp_spa": "10.0.1.2", "arp_tpa": ("10.0.100.0", "255.255.255.0"),
          "arp_sha": "02:00:0a:00:01:02", "arp_tha": ("00:00:00:00:00:00", "ff:ff:ff:00:00:00")}


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_each_field_exact_and_masked(name):
    m = FlowMod(table_id=2, priority=9, match={name: FIELDS[name]},
                instructions=(Goto(3),), cookie=5, idle_timeout=3, hard_timeout=4,
                send_flow_rem=True)
    assert encode.encode(m, 1) == ryu_bytes(m, 1)


def test_actions_instructions_meters_packet_outs_and_barriers():
    acts = (SetField("eth_dst", "02:00:00:00:00:01"), SetField("ipv4_dst", "10.0.100.20"),
            SetField("tcp_dst", 8080), SetField("eth_src", "0e:00:00:00:00:02"),
            SetField("ipv4_src", "10.0.1.1"), SetField("tcp_src", 80), Output(3),
            Output(0xFFFFFFFD, 0xFFFF))
    msgs = [FlowMod(table_id=0, priority=40002, match={"in_port": 2, "eth_type": 0x888E},
                    instructions=(Meter(0xE00002), Apply(acts), Goto(1))),
            FlowMod(table_id=1, command="delete", cookie=0x0100000000000000,
                    cookie_mask=0xFF00000000000000, out_port=3),
            FlowMod(table_id=3, command="modify_strict", match={}),
            MeterMod(7, "add", rate=100, burst=10, pps=True), MeterMod(7, "modify", rate=5),
            MeterMod(7, "delete"), PacketOut(b"\x01" * 60, (Output(2),)),
            PacketOut(b"\x02" * 42, (Output(0xFFFFFFFB),), in_port=4), Barrier()]
    for m in msgs:
        assert encode.encode(m, 77) == ryu_bytes(m, 77), m
    assert struct.unpack("!I", encode.encode(Barrier(), 0xABCDEF01)[4:8])[0] == 0xABCDEF01


def test_what_it_does_not_know_is_refused_not_guessed():
    for bad in (FlowMod(table_id=0, match={"ipv6_src": "::1"}),
                FlowMod(table_id=0, match={"eth_src": "02:00"}),
                FlowMod(table_id=0, match={"ipv4_src": "10.0.1"}),
                FlowMod(table_id=0, match={"ipv4_src": "010.0.0.1"}),
                FlowMod(table_id=0, match={"ipv4_src": "1.2.3.4 x"}),
                FlowMod(table_id=0, match={"in_port": 2**40}),
                FlowMod(table_id=0, match={"eth_src": "zz:00:00:00:00:00"}),
                LocalFrame(b"x")):
        with pytest.raises(encode.Unsupported):
            encode.encode(bad, 1)


def test_the_packed_fields_kept_for_reuse_change_nothing(monkeypatch):
    """The encoder keeps packed match fields (`_OXM_CACHE`): a repeated field packs as it did
    the first time and as Ryu packs it; only plain str and int values (and tuples of them)
    are kept, so a value the encoder refuses stays refused whatever was packed before it
    (1.0 equals 1, but is no address); a refused value is never kept; other values are
    packed without the cache; and the cache never holds more than its bound."""
    monkeypatch.setattr(encode, "_OXM_CACHE", {})
    monkeypatch.setattr(encode, "OXM_CACHE_MAX", 8)
    m = FlowMod(table_id=2, priority=9, match={"in_port": 1, "eth_src": "02:00:00:00:00:01",
                                               "ipv4_src": ("10.0.1.0", "255.255.255.0")},
                instructions=(Goto(3),))
    first = encode.encode(m, 5)
    assert ("eth_src", "02:00:00:00:00:01") in encode._OXM_CACHE
    assert encode.encode(m, 5) == first == ryu_bytes(m, 5)
    for addr, like in ((1, 1.0), (0, -0.0), (("10.0.0.0", 0), ("10.0.0.0", 0.0))):
        encode.encode(FlowMod(table_id=0, match={"eth_type": 0x800, "ipv4_src": addr}), 1)
        with pytest.raises(encode.Unsupported):
            encode.encode(FlowMod(table_id=0, match={"eth_type": 0x800, "ipv4_src": like}), 1)
    assert encode.encode(FlowMod(table_id=2, priority=9, match={
        "in_port": True, "eth_src": "02:00:00:00:00:01",
        "ipv4_src": ("10.0.1.0", "255.255.255.0")}, instructions=(Goto(3),)), 5) == first
    bad = FlowMod(table_id=0, match={"ipv4_src": "010.0.0.1"})
    for _ in range(2):
        with pytest.raises(encode.Unsupported):
            encode.encode(bad, 1)
    assert ("ipv4_src", "010.0.0.1") not in encode._OXM_CACHE
    # unhashable, yet a port: packed without the cache
    assert encode.encode(FlowMod(table_id=0, match={"in_port": bytearray(b"7")}), 3) == \
        encode.encode(FlowMod(table_id=0, match={"in_port": 7}), 3)
    with pytest.raises(encode.Unsupported):       # a value and no mask: refused, not a crash
        encode.encode(FlowMod(table_id=0, match={"in_port": (1,)}), 1)
    for p in range(2, 40):
        mp = FlowMod(table_id=0, match={"in_port": p})
        assert encode.encode(mp, 3) == ryu_bytes(mp, 3)
        assert len(encode._OXM_CACHE) <= 8
