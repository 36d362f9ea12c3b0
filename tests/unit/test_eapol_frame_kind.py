"""What a supplicant's frame is, for the controller's per-message timing: the frames of a
real exchange come out in order, and no input escapes the fixed set of kinds."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.admission.eapol import FRAME_KINDS, frame_kind
from controller.bench import eapcore
from controller.bench.auth import breakdown


def test_an_exchanges_frames_in_order(tmp_path):
    b = eapcore._Bench(tmp_path)
    seen: list[str] = []
    real = b.core.eapol_local

    def spy(dpid, frames, now=None):
        seen.extend(frame_kind(f) for f in frames)
        return real(dpid, frames, now)
    b.core.eapol_local = spy
    assert b.exchange({}, None, first=True)
    assert seen == ["logoff", "start", "identity", "psk2", "psk4"]
    b.core.store.close()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_any_bytes_have_a_kind_from_the_fixed_set(data):
    assert frame_kind(data) in FRAME_KINDS
    assert frame_kind(bytes(12) + b"\x88\x8e" + data) in FRAME_KINDS


def test_truncated_and_foreign_frames_are_other():
    head = bytes(12) + b"\x88\x8e"
    assert frame_kind(head + b"\x02\x01\x00\x00") == "start"
    assert frame_kind(head + b"\x02\x00\x00\x05\x02\x01\x00\x05") == "other"   # no EAP type
    assert frame_kind(head + b"\x02\x00\x00\x06\x01\x01\x00\x06\x01x") == "other"  # a request
    assert frame_kind(head + b"\x02\x00\x00\x06\x02\x01\x00\x06\x2f") == "other"  # PSK, no flags
    assert frame_kind(bytes(12) + b"\x08\x00" + bytes(40)) == "other"


def test_breakdown_per_message():
    c = {"timed_eapol": 4, "time_eapol_core_us": 800, "time_eapol_send_us": 8,
         "timed_eapol_psk2": 2, "time_eapol_psk2_us": 600, "cpu_eapol_psk2_us": 580,
         "answered_eapol_psk2": 2, "time_eapol_psk2_answer_us": 560}
    b = breakdown({"ours": {"single": {"p50_ms": 2.0}},
                   "controller_counters": {"eap_single": c}})
    assert (b["psk2_core_us"], b["psk2_core_cpu_us"], b["psk2_to_answer_us"]) == (300, 290, 280)
    assert "psk4_core_us" not in b
