"""Our supplicant's peer behaviour on its own (the authenticator tests drive it end to end)."""
from controller.admission.eapol import (
    PAE_GROUP_ADDR,
    Eap,
    EapCode,
    EapolType,
    EapType,
    build_eap_frame,
    parse_frame,
)
from controller.admission.supplicant import Supplicant

CTRL = "02:00:00:00:00:fe"
MAC = "02:00:00:01:01:01"


def req(ident, typ, data=b""):
    return build_eap_frame(MAC, CTRL, Eap(EapCode.REQUEST, ident, typ, data))


def test_start_and_logoff_frames():
    s = Supplicant("a", MAC, psk=bytes(16))
    f = parse_frame(s.start())
    assert (f.dst, f.src, f.type) == (PAE_GROUP_ADDR, MAC, EapolType.START)
    s.handle(req(1, EapType.IDENTITY))
    f = parse_frame(s.logoff())
    assert (f.dst, f.type) == (CTRL, EapolType.LOGOFF)


def test_identity_and_nak_of_unknown_method():
    s = Supplicant("c1t1@crs.example", MAC, psk=bytes(16))
    r = parse_frame(s.handle(req(4, EapType.IDENTITY)).frames[0])
    assert r.dst == CTRL and r.eap == Eap(EapCode.RESPONSE, 4, EapType.IDENTITY,
                                          b"c1t1@crs.example")
    nak = parse_frame(s.handle(req(5, 13, b"\x20")).frames[0]).eap      # EAP-TLS asked
    assert nak == Eap(EapCode.RESPONSE, 5, EapType.NAK, bytes([EapType.PSK]))


def test_premature_success_and_garbage_ignored():
    s = Supplicant("a", MAC, psk=bytes(16))
    st = s.handle(build_eap_frame(MAC, CTRL, Eap(EapCode.SUCCESS, 1)))
    assert st.status != "success" and st.keys is None
    assert s.handle(b"\x00" * 5).note.startswith("malformed")
    other = build_eap_frame("02:00:00:09:09:09", CTRL, Eap(EapCode.REQUEST, 1, EapType.IDENTITY))
    assert s.handle(other).note == "not for us"
    assert s.handle(build_eap_frame(MAC, CTRL, Eap(EapCode.FAILURE, 1))).status == "failure"
