"""The 802.1X authenticator driven end to end by our supplicant, with a fake clock."""
import os

from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.admission.authenticator import (
    Admit,
    Authenticator,
    Count,
    Revoke,
    SendFrame,
    Timers,
)
from controller.admission.credentials import Credentials, Subscriber
from controller.admission.eap_psk import key_setup
from controller.admission.eapol import PAE_GROUP_ADDR, EapCode, EapType, parse_frame
from controller.admission.keys import isr_id
from controller.admission.supplicant import Supplicant

CTRL = "02:00:00:00:00:fe"
MAC = "02:00:00:01:01:01"
PSK = bytes(range(16))
FKEY = Fernet.generate_key()


def creds():
    ak, kdk = key_setup(PSK)
    f = Fernet(FKEY)
    subs = {
        "c1t1@crs.example": Subscriber("c1t1@crs.example", "cell1", "psk", False, ak, kdk),
        "old@crs.example": Subscriber("old@crs.example", "legacy", "md5", True,
                                      md5_token=f.encrypt(b"s3cret").decode()),
        "both@crs.example": Subscriber("both@crs.example", "legacy", "psk", True, ak, kdk,
                                       md5_token=f.encrypt(b"s3cret").decode()),
        "strict@crs.example": Subscriber("strict@crs.example", "cell1", "psk", False, ak, kdk,
                                         md5_token=f.encrypt(b"s3cret").decode()),
    }
    return Credentials("crs-eac", subs, fernet=f)


def of(effects, kind):
    return [e for e in effects if isinstance(e, kind)]


def counts(effects):
    return [e.name for e in of(effects, Count)]


def converse(auth, sup, effects, now, dpid=11, port=3):
    """Shuttle frames between authenticator and supplicant until neither has more to say."""
    all_effects = list(effects)
    queue = [e.data for e in of(effects, SendFrame)]
    result = None
    while queue:
        step = sup.handle(queue.pop(0))
        result = step
        for fr in step.frames:
            eff = auth.handle_frame(dpid, port, fr, now)
            all_effects += eff
            queue += [e.data for e in of(eff, SendFrame)]
    return all_effects, result


def authenticate(auth=None, sup=None, now=0.0):
    auth = auth or Authenticator(creds(), CTRL)
    sup = sup or Supplicant("c1t1@crs.example", MAC, psk=PSK)
    effs, step = converse(auth, sup, auth.new_station(11, 3, MAC, now), now)
    return auth, sup, effs, step


def test_psk_success_keys_agree_and_frames_are_unicast_from_controller():
    auth, sup, effs, step = authenticate()
    admits = of(effs, Admit)
    assert len(admits) == 1 and step.status == "success"
    s = admits[0].session
    assert (admits[0].dpid, admits[0].port, admits[0].mac) == (11, 3, MAC)
    assert (s.identity, s.group, s.method) == ("c1t1@crs.example", "cell1", "psk")
    assert s.emsk == step.keys.emsk and s.msk == step.keys.msk
    assert s.isr_id == step.keys.isr_id == isr_id(s.emsk)
    for e in of(effs, SendFrame):
        f = parse_frame(e.data)
        assert (f.src, f.dst) == (CTRL, MAC) and f.dst != PAE_GROUP_ADDR
    assert "dot1x_success" in counts(effs)


def test_eapol_start_path():
    auth = Authenticator(creds(), CTRL)
    sup = Supplicant("c1t1@crs.example", MAC, psk=PSK)
    effs, step = converse(auth, sup, auth.handle_frame(11, 3, sup.start(), 0.0), 0.0)
    assert step.status == "success" and len(of(effs, Admit)) == 1


def test_wrong_psk_fails_then_exponential_holdoff():
    auth = Authenticator(creds(), CTRL, Timers(holdoff_base_s=1, holdoff_max_s=4))
    bad = Supplicant("c1t1@crs.example", MAC, psk=os.urandom(16))
    now = 0.0
    holds = []
    for _ in range(4):
        effs, step = converse(auth, bad, auth.handle_frame(11, 3, bad.start(), now), now)
        assert step.status == "failure" and not of(effs, Admit)
        hold = auth.ports[(11, 3)].hold_until - now
        holds.append(hold)
        early = auth.handle_frame(11, 3, bad.start(), now + hold - 0.01)
        assert counts(early) == ["dot1x_holdoff_drop"]
        now += hold
    assert holds == [1, 2, 4, 4]
    _, _, effs, step = authenticate(auth, Supplicant("c1t1@crs.example", MAC, psk=PSK), now)
    assert step.status == "success" and auth.ports[(11, 3)].failures == 0


def test_unknown_identity_fails():
    auth = Authenticator(creds(), CTRL)
    sup = Supplicant("nobody@x", MAC, psk=PSK)
    effs, step = converse(auth, sup, auth.new_station(11, 3, MAC, 0.0), 0.0)
    assert step.status == "failure" and "dot1x_failure" in counts(effs)


def test_start_flood_rate_limited_per_port():
    auth = Authenticator(creds(), CTRL, Timers(start_burst=3, start_rate_per_s=1))
    sup = Supplicant("c1t1@crs.example", MAC, psk=PSK)
    cs = [c for _ in range(10) for c in counts(auth.handle_frame(11, 3, sup.start(), 5.0))]
    assert cs.count("dot1x_start") == 3 and cs.count("dot1x_start_ratelimited") == 7
    assert "dot1x_start" in counts(auth.handle_frame(11, 4, sup.start(), 5.0))   # other port
    assert "dot1x_start" in counts(auth.handle_frame(11, 3, sup.start(), 6.0))   # refilled


def test_retransmit_then_failure():
    auth = Authenticator(creds(), CTRL, Timers(retransmit_s=1, max_retransmits=2))
    first = of(auth.new_station(11, 3, MAC, 0.0), SendFrame)[0].data
    assert auth.tick(0.5) == []
    r1 = auth.tick(1.0)
    assert of(r1, SendFrame)[0].data == first and "dot1x_retransmit" in counts(r1)
    assert of(auth.tick(2.0), SendFrame)[0].data == first
    end = auth.tick(3.0)
    f = parse_frame(of(end, SendFrame)[0].data)
    assert f.eap.code == EapCode.FAILURE and "dot1x_timeout" in counts(end)
    assert auth.tick(10.0) == []


def test_replayed_and_out_of_sequence_responses_dropped():
    auth = Authenticator(creds(), CTRL)
    sup = Supplicant("c1t1@crs.example", MAC, psk=PSK)
    req = of(auth.new_station(11, 3, MAC, 0.0), SendFrame)[0].data
    ident_resp = sup.handle(req).frames[0]
    psk1 = auth.handle_frame(11, 3, ident_resp, 0.0)
    assert parse_frame(of(psk1, SendFrame)[0].data).eap.type == EapType.PSK
    assert counts(auth.handle_frame(11, 3, ident_resp, 0.1))[0] == "dot1x_eap_replay"
    raw = bytearray(ident_resp)
    raw[19] = (raw[19] + 100) & 0xFF
    assert counts(auth.handle_frame(11, 3, bytes(raw), 0.1)) == ["dot1x_eap_out_of_sequence"]
    effs, step = converse(auth, sup, psk1, 0.2)
    assert step.status == "success"


def test_reauth_keeps_access_and_readmits():
    t = Timers(session_s=100, reauth_margin_s=10)
    auth, sup, effs, _ = authenticate(Authenticator(creds(), CTRL, t))
    old = of(effs, Admit)[0].session
    assert auth.tick(89.0) == []
    re = auth.tick(90.0)
    assert "dot1x_reauth" in counts(re) and not of(re, Revoke)
    assert auth.session(11, 3, MAC) == old          # still admitted while it runs
    effs, step = converse(auth, sup, re, 90.5)
    new = of(effs, Admit)[0].session
    assert not of(effs, Revoke) and new.expires == 190.5 and new.emsk != old.emsk
    assert new.isr_id == step.keys.isr_id != old.isr_id


def test_reauth_failure_revokes():
    t = Timers(session_s=100, reauth_margin_s=10)
    auth, _, _, _ = authenticate(Authenticator(creds(), CTRL, t))
    impostor = Supplicant("c1t1@crs.example", MAC, psk=os.urandom(16))
    effs, step = converse(auth, impostor, auth.tick(90.0), 90.0)
    assert step.status == "failure"
    assert [r.reason.startswith("re-authentication failed") for r in of(effs, Revoke)] == [True]


def test_unanswered_reauth_then_expiry_revokes():
    t = Timers(session_s=100, reauth_margin_s=10, retransmit_s=1, max_retransmits=1,
               reauth_retry_s=50)
    auth, _, _, _ = authenticate(Authenticator(creds(), CTRL, t))
    effs = []
    for now in (90.0, 91.0, 92.0, 99.0):
        effs += auth.tick(now)
    assert not of(effs, Revoke) and "dot1x_timeout" in counts(effs)
    assert not [e for e in of(effs, SendFrame) if parse_frame(e.data).eap.code == EapCode.FAILURE]
    end = auth.tick(100.0)
    assert [r.reason for r in of(end, Revoke)] == ["session expired"]
    assert auth.session(11, 3, MAC) is None


def test_logoff_and_port_down_revoke():
    auth, sup, _, _ = authenticate()
    effs = auth.handle_frame(11, 3, sup.logoff(), 5.0)
    assert [r.reason for r in of(effs, Revoke)] == ["logoff"]
    auth, sup, _, _ = authenticate()
    assert [r.reason for r in of(auth.port_down(11, 3, 5.0), Revoke)] == ["port down"]
    assert auth.session(11, 3, MAC) is None


def test_legacy_md5_subscriber():
    auth = Authenticator(creds(), CTRL)
    sup = Supplicant("old@crs.example", MAC, md5_secret=b"s3cret")
    effs, step = converse(auth, sup, auth.new_station(11, 3, MAC, 0.0), 0.0)
    s = of(effs, Admit)[0].session
    assert step.status == "success" and s.method == "md5" and s.emsk == b"" and s.isr_id == ""
    bad = Supplicant("old@crs.example", MAC, md5_secret=b"guess")
    auth2 = Authenticator(creds(), CTRL)
    effs, step = converse(auth2, bad, auth2.new_station(11, 3, MAC, 0.0), 0.0)
    assert step.status == "failure" and not of(effs, Admit)


def test_nak_to_md5_only_for_legacy():
    auth = Authenticator(creds(), CTRL)
    sup = Supplicant("both@crs.example", MAC, md5_secret=b"s3cret")
    effs, step = converse(auth, sup, auth.new_station(11, 3, MAC, 0.0), 0.0)
    assert step.status == "success" and "dot1x_nak_to_md5" in counts(effs)
    sup = Supplicant("strict@crs.example", MAC, md5_secret=b"s3cret")
    auth = Authenticator(creds(), CTRL)
    effs, step = converse(auth, sup, auth.new_station(11, 3, MAC, 0.0), 0.0)
    assert step.status == "failure" and not of(effs, Admit)


def test_many_stations_independent():
    auth = Authenticator(creds(), CTRL)
    for port in range(1, 9):
        mac = f"02:00:00:01:01:{port:02x}"
        sup = Supplicant("c1t1@crs.example", mac, psk=PSK)
        effs, step = converse(auth, sup, auth.new_station(11, port, mac, 0.0), 0.0, port=port)
        assert step.status == "success"
    assert sum(1 for c in auth.convs.values() if c.session) == 8


@given(st.lists(st.binary(min_size=0, max_size=80), max_size=6), st.integers(0, 2))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_garbage_mid_exchange_never_raises(blobs, stage):
    auth = Authenticator(creds(), CTRL)
    sup = Supplicant("c1t1@crs.example", MAC, psk=PSK)
    frames = [e.data for e in of(auth.new_station(11, 3, MAC, 0.0), SendFrame)]
    for _ in range(stage):
        reply = sup.handle(frames[0]).frames
        frames = [e.data for e in of(auth.handle_frame(11, 3, reply[0], 0.0), SendFrame)]
    for b in blobs:
        hdr = bytes.fromhex("0180c2000003" "020000010101" "888e" "0200") + len(b).to_bytes(2, "big")
        auth.handle_frame(11, 3, hdr + b, 0.1)
        auth.handle_frame(11, 3, b, 0.1)
    assert not [e for e in auth.tick(0.2) if isinstance(e, Admit)]


def test_a_tick_looks_only_at_conversations_whose_time_has_come():
    """Timers are a heap: with 300 sessions up, ticks between their deadlines look at none;
    at the re-authentication time each is looked at once; a retransmission comes due on
    its own."""
    t = Timers(session_s=1000, reauth_margin_s=100, retransmit_s=2)
    auth = Authenticator(creds(), CTRL, t)
    for i in range(300):
        port, mac = 1 + i, f"02:00:00:02:{i >> 8:02x}:{i & 0xFF:02x}"
        sup = Supplicant("c1t1@crs.example", mac, psk=PSK)
        _, step = converse(auth, sup, auth.new_station(11, port, mac, float(i) / 100),
                           float(i) / 100, port=port)
        assert step.status == "success"
    checks = auth.timer_checks
    for now in (5.0, 100.0, 500.0, 899.0):
        assert auth.tick(now) == []
    assert auth.timer_checks == checks          # nobody looked at
    re = auth.tick(905.0)                       # every session's re-authentication is due
    assert counts(re).count("dot1x_reauth") == 300
    assert auth.timer_checks == checks + 300
    # unanswered, they are retransmitted at 907 (2 s later), not before
    assert auth.tick(906.0) == [] and auth.timer_checks == checks + 300
    assert counts(auth.tick(907.5)).count("dot1x_retransmit") == 300


def test_frames_that_change_no_timer_do_not_grow_the_timer_heap():
    auth, sup, _, _ = authenticate(Authenticator(creds(), CTRL, Timers(session_s=3600)))
    size = len(auth._timers)
    start = sup.start()
    for i in range(500):                    # a terminal repeating itself within its session
        auth.handle_frame(11, 3, start, 1.0 + i / 1000)
        auth.handle_frame(11, 3, b"\x00" * 30, 1.0 + i / 1000)
    assert len(auth._timers) <= size + 3
