"""The auth benchmark's per-message breakdown: two captures of one EAP-PSK exchange (the
terminal's interface and the switch's LOCAL port) split into legs and work."""
import struct

from controller.bench import eaptrace

TERM = bytes.fromhex("02000a000101")
GROUP = bytes.fromhex("0180c2000003")
PORT = bytes.fromhex("0e0000000002")
AUTH = bytes.fromhex("02000000fffe")


def eap(dst, src, code, ident, etype=None, t=0):
    body = bytes([code, ident, 0, 6]) + (bytes([etype, t << 6]) if etype else b"")
    return dst + src + b"\x88\x8e" + bytes([2, 0, 0, len(body)]) + body


def pcap(path, frames):
    """A classic pcap of (microseconds since 1.8e9 s, frame)."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for us, f in frames:
        out += struct.pack("<IIII", 1_800_000_000 + us // 10**6, us % 10**6, len(f),
                           len(f)) + f
    path.write_bytes(out)
    return path


def test_one_exchange_splits_into_legs_controller_and_terminal(tmp_path):
    # (time in ms, where, frame): the terminal sends, LOCAL sees it, LOCAL answers, ...
    seq = [
        (0.0, "t", eap(GROUP, TERM, 2, 7, 1)), (0.1, "l", eap(PORT, TERM, 2, 7, 1)),
        (0.5, "l", eap(TERM, PORT, 1, 8, 47, 0)), (0.7, "t", eap(TERM, AUTH, 1, 8, 47, 0)),
        (0.9, "t", eap(AUTH, TERM, 2, 8, 47, 1)), (1.0, "l", eap(PORT, TERM, 2, 8, 47, 1)),
        (1.8, "l", eap(TERM, PORT, 1, 9, 47, 2)), (2.0, "t", eap(TERM, AUTH, 1, 9, 47, 2)),
        (2.3, "t", eap(AUTH, TERM, 2, 9, 47, 3)), (2.4, "l", eap(PORT, TERM, 2, 9, 47, 3)),
        (2.9, "l", eap(TERM, PORT, 3, 9)), (3.1, "t", eap(TERM, AUTH, 3, 9)),
    ]
    term = pcap(tmp_path / "t.pcap", [(round(ms * 1000), f) for ms, w, f in seq if w == "t"])
    local = pcap(tmp_path / "l.pcap", [(round(ms * 1000), f) for ms, w, f in seq if w == "l"])
    s = eaptrace.summary(eaptrace.legs(eaptrace.read_pcap(term), eaptrace.read_pcap(local)))
    assert s["identity"] == {"to_controller_us": 100.0, "controller_us": 400.0,
                             "to_terminal_us": 200.0, "terminal_us": 200.0, "n": 1}
    assert s["psk2"]["controller_us"] == 800.0 and s["psk2"]["terminal_us"] == 300.0
    assert s["psk4"]["controller_us"] == 500.0 and s["psk4"]["terminal_us"] is None
    assert s["sum_of_medians_us"]["controller_us"] == 1700.0
    assert s["sum_of_medians_us"]["to_controller_us"] == 300.0
