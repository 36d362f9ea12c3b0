"""EAPOL/EAP parsing and building: cross-checked against scapy, fuzzed with hypothesis."""
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.eap import EAP, EAP_MD5, EAPOL
from scapy.layers.l2 import Ether

from controller.admission.eapol import (
    PAE_GROUP_ADDR,
    Eap,
    EapCode,
    EapolType,
    EapType,
    MalformedFrame,
    build_eap,
    build_eap_frame,
    build_frame,
    parse_eap,
    parse_frame,
)

CTRL = "02:00:00:00:00:fe"
TERM = "02:00:00:0c:01:01"


def test_identity_request_matches_scapy():
    ours = build_eap_frame(TERM, CTRL, Eap(EapCode.REQUEST, 5, EapType.IDENTITY))
    ref = bytes(Ether(dst=TERM, src=CTRL) / EAPOL(version=2, type=0) / EAP(code=1, id=5, type=1))
    assert ours == ref


def test_identity_response_from_scapy_parses():
    raw = bytes(Ether(dst=PAE_GROUP_ADDR, src=TERM) / EAPOL(version=2, type=0)
                / EAP(code=2, id=7, type=1, identity=b"c1t1@crs.example"))
    f = parse_frame(raw)
    assert (f.src, f.dst, f.type) == (TERM, PAE_GROUP_ADDR, EapolType.EAP_PACKET)
    assert f.eap == Eap(EapCode.RESPONSE, 7, EapType.IDENTITY, b"c1t1@crs.example")


def test_md5_and_nak_and_success_match_scapy():
    md5 = bytes(EAP_MD5(code=1, id=3, value=b"0" * 16, optional_name=b"x"))
    assert build_eap(EapCode.REQUEST, 3, EapType.MD5_CHALLENGE,
                     bytes([16]) + b"0" * 16 + b"x") == md5
    assert build_eap(EapCode.SUCCESS, 9) == bytes(EAP(code=3, id=9))
    nak = bytes(EAP(code=2, id=9, type=3, desired_auth_types=[4]))
    assert parse_eap(nak) == Eap(EapCode.RESPONSE, 9, EapType.NAK, b"\x04")


def test_start_and_logoff_match_scapy():
    for t in (EapolType.START, EapolType.LOGOFF):
        raw = bytes(Ether(dst=PAE_GROUP_ADDR, src=TERM) / EAPOL(version=2, type=int(t)))
        assert parse_frame(raw).type == t
        assert build_frame(PAE_GROUP_ADDR, TERM, t) == raw


def test_min_size_padding_accepted_but_not_extra_bytes():
    raw = build_frame(PAE_GROUP_ADDR, TERM, EapolType.START)
    assert parse_frame(raw + bytes(60 - len(raw))).type == EapolType.START
    with pytest.raises(MalformedFrame, match="padding"):
        parse_frame(raw + b"\x01" + bytes(10))
    big = build_eap_frame(CTRL, TERM, Eap(EapCode.RESPONSE, 1, EapType.IDENTITY, b"a" * 100))
    with pytest.raises(MalformedFrame, match="trailing"):
        parse_frame(big + b"\x00")


@pytest.mark.parametrize("mutate,reason", [
    (lambda b: b[:16], "truncated"),
    (lambda b: b + bytes(1600), "oversized"),
    (lambda b: b[:12] + b"\x08\x00" + b[14:], "not EAPOL"),
    (lambda b: b[:15] + b"\x09" + b[16:], "unknown EAPOL packet type"),
    (lambda b: b[:14] + b"\x00" + b[15:], "version"),
    (lambda b: b[:16] + struct.pack("!H", 200) + b[18:], "truncated EAPOL body"),
    (lambda b: b[:18] + b"\x07" + b[19:], "unknown EAP code"),
    (lambda b: b[:20] + struct.pack("!H", 30) + b[22:], "EAP length"),
    (lambda b: b[:6] + b"\x01" + b[7:], "group source"),
])
def test_malformed_reasons(mutate, reason):
    good = build_eap_frame(CTRL, TERM, Eap(EapCode.RESPONSE, 1, EapType.IDENTITY, b"x" * 50))
    with pytest.raises(MalformedFrame, match=reason):
        parse_frame(mutate(good))


def test_builder_refuses_group_source():
    with pytest.raises(ValueError):
        build_frame(TERM, PAE_GROUP_ADDR, EapolType.START)


@given(st.binary(max_size=1600))
@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
def test_random_bytes_only_malformed(data):
    try:
        parse_frame(data)
    except MalformedFrame:
        pass


eap_packets = st.builds(
    lambda code, ident, typ, data: (Eap(code, ident, None, b"") if code > 2
                                    else Eap(code, ident, typ, data)),
    st.sampled_from([1, 2, 3, 4]), st.integers(0, 255), st.integers(0, 255),
    st.binary(max_size=200))


@given(eap_packets, st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
       st.integers(-30, 30))
@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_valid_frames_roundtrip_or_malformed(eap, flips, cut):
    raw = build_eap_frame(CTRL, TERM, eap)
    assert parse_frame(raw).eap == eap            # the unmutated frame round-trips
    buf = bytearray(raw)
    for pos, val in flips:
        buf[pos % len(buf)] = val
    if cut > 0:
        buf += bytes(cut)
    elif cut < 0:
        del buf[cut:]
    try:
        f = parse_frame(bytes(buf))
    except MalformedFrame:
        return
    if f.eap is not None:                          # what parses re-encodes to the same EAP bytes
        assert f.eap.encode() == f.body
