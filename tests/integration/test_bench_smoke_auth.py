"""The authentication benchmark (controller/bench/auth.py): its packet helpers, and a SMOKE
run (tiny parameters, about 30 s) that checks it runs end to end and writes a well-formed
results file. No timing is asserted: a benchmark is not a test."""
import shutil

import pytest
from nethelpers import summary_rows
from scapy.layers.inet import IP, TCP

from controller import jsonfile
from controller.bench import auth


def test_syn_has_a_correct_checksum_and_parses_back():
    raw = auth.tcp_syn("10.0.1.7", "10.0.100.10", 20001, 80, 4242)
    pkt = IP(bytes(IP(src="10.0.1.7", dst="10.0.100.10", proto=6) / raw))
    sent_sum = pkt[TCP].chksum
    del pkt[TCP].chksum
    assert IP(bytes(pkt))[TCP].chksum == sent_sum
    assert pkt[TCP].flags == "S" and pkt[TCP].seq == 4242
    syn = auth.parse_syn(bytes(pkt))
    assert syn == auth.Syn("10.0.1.7", "10.0.100.10", 20001, 80, 4242)


def test_the_probes_syn_template_is_tcp_syn_for_every_sequence_number():
    t = auth.SynTemplate("10.0.1.7", "10.0.100.10", 20001, 80)
    for seq in (0, 1, 0xFFFF, 0x10000, 0x1234FFFF, 2 ** 32 - 1, 4242):
        assert t.packet(seq) == auth.tcp_syn("10.0.1.7", "10.0.100.10", 20001, 80, seq)


def test_parse_syn_ignores_what_is_not_a_bare_syn():
    synack = bytes(IP(src="10.0.100.10", dst="10.0.1.1") / TCP(sport=80, dport=20000, flags="SA"))
    udp = bytes(IP(src="10.0.1.1", dst="10.0.100.10", proto=17)) + bytes(8)
    assert auth.parse_syn(synack) is None
    assert auth.parse_syn(udp) is None
    assert auth.parse_syn(b"\x45\x00") is None
    assert auth.parse_syn(b"") is None
    with pytest.raises(ValueError):
        auth.tcp_syn("10.0.1.1", "10.0.100.10", 0, 80, 1)


def test_output_parsers_and_latency_pairing():
    sending, first = auth.parse_probe_output(
        "SENDING 100.0\nFIRST 10.0.1.1 100.5 3 100.49 4\nFIRST bad\nDONE missing=0\n")
    assert sending and first == {"10.0.1.1": {"arrival": 100.5, "seq": 3, "sent_at": 100.49,
                                              "sent": 4}}
    assert auth.supplicant_start_time("EAPOL-START 99.25\nEAP-SUCCESS 0.01\n") == 99.25
    assert auth.supplicant_start_time("EAP-FAILURE timeout\n") is None
    ms, missing = auth.start_to_first_ms({"a": 100.0, "b": 100.0}, {"a": 100.25, "c": 1.0})
    assert ms == [250.0] and sorted(missing) == ["b", "c"]


def test_wire_events_of_the_probe():
    start = bytes(12) + b"\x88\x8e" + bytes([2, 1, 0, 0])
    success = bytes(12) + b"\x88\x8e" + bytes([2, 0, 0, 4, 3, 7, 0, 4])
    assert auth.eapol_event(start, outgoing=True) == "START"
    assert auth.eapol_event(start, outgoing=False) is None       # someone else's Start
    assert auth.eapol_event(success, outgoing=False) == "SUCCESS"
    assert auth.eapol_event(success, outgoing=True) is None
    assert auth.eapol_event(b"\x00" * 12 + b"\x08\x00" + bytes(10), True) is None
    got = auth.parse_probe_eapol("EAPOL 10.0.1.1 START 5.0\nEAPOL 10.0.1.1 SUCCESS 5.004\n"
                                 "OFLAST 10.0.1.1 5.006 31\nOFSPAN 10.0.1.1 5.005 5.006 7\n"
                                 "EAPOL bad\n")
    assert got == {"10.0.1.1": {"START": 5.0, "SUCCESS": 5.004, "OFLAST": 5.006,
                                "OFFIRST": 5.005, "OFSEGMENTS": 7.0}}
    # an OpenFlow segment from the controller's port: IPv4/TCP with a payload
    ip = IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=6653, dport=40000) / (b"\x04" * 8)
    frame = bytes(12) + b"\x08\x00" + bytes(ip)
    assert auth.of_segment(frame, 6653) and not auth.of_segment(frame, 6654)
    ack = bytes(12) + b"\x08\x00" + bytes(IP(src="127.0.0.1", dst="127.0.0.1") /
                                           TCP(sport=6653, dport=40000))
    assert not auth.of_segment(ack, 6653)                       # no data: not a message


needs_tools = pytest.mark.skipif(not all(shutil.which(t) for t in ("hostapd", "wpa_supplicant")),
                                 reason="hostapd and wpa_supplicant are needed")


@needs_tools
def test_smoke_benchmark_writes_well_formed_auth_json(tmp_path):
    """SMOKE (CI): 3 terminals, 2 re-authentications, 1 round, 1 first-packet run."""
    res = auth.run(str(tmp_path), n_terminals=3, runs=2, rounds=1, first_packet_runs=1,
                   first_packet_rounds=1, terminals_per_cell=1, timeout_s=30,
                   workdir=str(tmp_path / "work"))
    doc = jsonfile.read(tmp_path / "auth.json")
    assert doc["benchmark"] == "auth" and doc["machine"]["cores"] and doc["commit"]
    # `crs bench summary` finds its numbers in this file, and does not take 3 for 50
    rows = summary_rows(tmp_path, "auth.json")
    assert rows["EAP exchange, 1 terminal, p50"]["values"][0] == doc["ours"]["single"]["p50_ms"]
    assert rows["EAPOL-Start -> first packet, 1 terminal, p50"]["verdict"] in ("met", "not met")
    assert rows["EAP, 50 re-authenticating at once, p50 / p99"]["verdict"] == \
        "not measured at scale"
    for side in ("ours", "reference"):
        for k in ("single", "concurrent"):
            assert {"p50_ms", "p99_ms", "failures"} <= set(doc[side][k]), (side, k)
        assert doc[side]["single"]["reauth_ms"]["n"] == 2
        assert doc[side]["concurrent"]["reauth_ms"]["n"] == 3
        assert doc[side]["single"]["p50_ms"] > 0
    fp = doc["ours_first_packet"]
    assert fp["supplicant"] == "wpa_supplicant"
    assert fp["single"]["start_to_first_packet_ms"]["n"] == 1 and fp["single"]["missing"] == 0
    assert fp["concurrent"]["start_to_first_packet_ms"]["n"] == 3
    assert fp["single"]["p50_ms"] > 0
    # split on the terminal's wire: its EAPOL-Start and EAP-Success were both seen, and the
    # controller's last OpenFlow message before the first arrival
    one = fp["single"]
    assert one["start_to_success_ms"]["n"] == 1 and one["success_to_first_ms"]["n"] == 1
    assert one["start_to_success_ms"]["p50"] + one["success_to_first_ms"]["p50"] == \
        pytest.approx(one["p50_ms"], abs=0.01)
    assert one["last_of_to_first_ms"]["n"] == 1
    # and the controller's messages between the Success and the arrival
    assert one["success_to_first_of_ms"]["n"] == 1 and one["of_segments"]["p50"] >= 1
    assert one["success_to_first_of_ms"]["p50"] + one["of_span_ms"]["p50"] == \
        pytest.approx(one["success_to_last_of_ms"]["p50"], abs=0.01)
    assert one["admitting_frame_in_controller"]["core_us"] > 0
    assert fp["single_our_supplicant"]["start_to_first_packet_ms"]["n"] == 1
    # the controller timed every EAPOL frame of the single terminal's re-authentications
    b = doc["breakdown"]
    assert b["eapol_frames"] >= 4 * 2 and b["per_message_core_us"] > 0
    assert 0 < b["in_controller_ms"] and b["legs_and_supplicant_ms"] is not None
    # and the captures on the terminal and where the controller reads (the switch's end of
    # the terminal's link: EAPOL read on the port, the default) split each message
    trace = doc["ours"]["single"]["trace_us"]
    assert doc["parameters"]["eapol_transport"] == "port"
    for msg in ("identity", "psk2", "psk4"):
        assert trace[msg]["n"] >= 2 and trace[msg]["controller_us"] > 0, trace
    # captured apart from the measured exchanges (a capture's wake-ups share the CPUs)
    assert doc["ours"]["single"]["traced_reauth_ms"]["n"] == 2
    assert b["traced_controller_ms"] > 0 and b["traced_to_controller_ms"] is not None
    # the other transport measured in the same run
    other = doc["ours_other_transport"]
    assert other["eapol_transport"] == "local" and other["single"]["reauth_ms"]["n"] == 2
    assert set(doc["ratio"]) >= {"single_p50_ours_over_reference", "single_p99_ours_over_reference",
                                 "concurrent_p50_ours_over_reference",
                                 "concurrent_p99_ours_over_reference"}
    assert res["ratio"] == doc["ratio"]

