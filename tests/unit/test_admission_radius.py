"""The RADIUS client (RFC 2865/3579/2548) and the authenticator relaying EAP through it,
against a fake server built from the same primitives a server uses, with a fake clock."""
import hashlib
import struct

import pytest

from controller.admission import radius as r
from controller.admission.authenticator import Admit, Authenticator, Revoke, SendFrame
from controller.admission.eapol import (
    PAE_GROUP_ADDR,
    EapCode,
    EapType,
    build_eap,
    build_eap_frame,
    build_frame,
    parse_frame,
)
from controller.admission.keys import isr_id, purpose_key, radius_key_root
from controller.effects import Count, Log

CTRL = "02:00:00:00:00:fe"
MAC = "02:00:00:01:01:01"
SECRET = b"testing123-secret"
S1 = r.RadiusServer("127.0.0.1", 18120, SECRET)
S2 = r.RadiusServer("127.0.0.2", 18121, b"another-secret")
RECV, SEND = bytes(range(32)), bytes(range(32, 64))
STATION = r.Station(11, 3, MAC, CTRL)


def of(effects, kind):
    return [e for e in effects if isinstance(e, kind)]


def counts(effects):
    return [e.name for e in of(effects, Count)]


class Rng:
    """Deterministic bytes (the tests know every identifier and authenticator)."""

    def __init__(self):
        self.n = 0

    def __call__(self, k):
        self.n += 1
        return hashlib.sha256(self.n.to_bytes(4, "big")).digest()[:k] * (k // 32 + 1)


def parse_request(data, secret):
    """A server's view of an Access-Request: (identifier, authenticator, attributes),
    after checking its Message-Authenticator."""
    assert data[0] == r.ACCESS_REQUEST and struct.unpack("!H", data[2:4])[0] == len(data)
    attrs = r.decode_attrs(data[20:])
    ma = [v for t, v in attrs if t == r.MESSAGE_AUTHENTICATOR]
    assert len(ma) == 1
    at = data.index(bytes((r.MESSAGE_AUTHENTICATOR, 18)) + ma[0]) + 2
    zeroed = data[:at] + bytes(16) + data[at + 16:]
    assert r.message_authenticator(secret, zeroed, data[4:20]) == ma[0]
    return data[1], data[4:20], attrs


def reply(req, code, eap=b"", state=None, secret=SECRET, keys=True, extra=(), sign=None):
    """The server's reply to `req` (`sign`: signed with another secret, a forgery)."""
    ident, auth, _ = parse_request(req, secret)
    secret = sign or secret
    attrs = list(extra) + r.eap_attrs(eap)
    if state is not None:
        attrs.append((r.STATE, state))
    if code == r.ACCESS_ACCEPT and keys:
        vsa = b""
        for t, k, salt in ((r.MS_MPPE_RECV_KEY, RECV, b"\x80\x01"),
                           (r.MS_MPPE_SEND_KEY, SEND, b"\x80\x02")):
            v = r.mppe_encrypt(k, secret, auth, salt)
            vsa += bytes((t, len(v) + 2)) + v
        attrs.append((r.VENDOR_SPECIFIC, struct.pack("!I", r.VENDOR_MICROSOFT) + vsa))
    return r.sign_reply(code, ident, attrs, auth, secret)


# --- codec ------------------------------------------------------------------------------

def test_eap_is_split_into_attributes_of_at_most_253_bytes_and_joined_back():
    eap = bytes(range(256)) * 4 + b"x"
    attrs = r.eap_attrs(eap)
    assert [len(v) for _, v in attrs] == [253, 253, 253, 253, 13]
    c = r.RadiusClient([S1], rng=Rng())
    (send,) = of(c.request("k", eap, None, "alice", STATION, 0.0), r.SendRadius)
    _, _, got = parse_request(send.data, SECRET)
    assert b"".join(v for t, v in got if t == r.EAP_MESSAGE) == eap
    assert all(len(v) <= 253 for _, v in got)
    # the Challenge's fragments are joined too
    res = of(c.datagram("127.0.0.1", 18120, reply(send.data, r.ACCESS_CHALLENGE, eap,
                                                   b"st"), 0.1), r.RadiusResult)
    assert res[0].eap == eap and res[0].state == b"st"


def test_request_carries_the_nas_attributes_of_the_frame_and_no_terminal_choice():
    c = r.RadiusClient([S1], rng=Rng(), nas_identifier="nas-1")
    (send,) = of(c.request("k", b"\x02\x07\x00\x05\x01", None, "alice\x00", STATION, 0.0),
                 r.SendRadius)
    _, _, attrs = parse_request(send.data, SECRET)
    a = dict(attrs)
    assert (send.host, send.port) == ("127.0.0.1", 18120)
    assert a[r.USER_NAME] == b"alice\x00"
    assert a[r.CALLING_STATION_ID] == b"02-00-00-01-01-01"
    assert a[r.CALLED_STATION_ID] == CTRL.upper().replace(":", "-").encode()
    assert a[r.NAS_PORT] == struct.pack("!I", 3)
    assert a[r.NAS_PORT_ID] == b"000000000000000b:3"
    assert a[r.NAS_IDENTIFIER] == b"nas-1"
    assert r.STATE not in a


def test_mppe_key_decryption_matches_a_known_vector():
    # computed by hand from RFC 2548 2.4.3: b(1) = MD5(secret + request authenticator +
    # salt), c(1) = p(1) xor b(1), b(2) = MD5(secret + c(1)), ...
    auth, salt, key = bytes(16), b"\x80\x00", bytes([0xAB]) * 32
    plain = bytes([32]) + key + bytes(15)
    b1 = hashlib.md5(SECRET + auth + salt).digest()
    c1 = bytes(x ^ y for x, y in zip(plain[:16], b1))
    b2 = hashlib.md5(SECRET + c1).digest()
    c2 = bytes(x ^ y for x, y in zip(plain[16:32], b2))
    b3 = hashlib.md5(SECRET + c2).digest()
    c3 = bytes(x ^ y for x, y in zip(plain[32:], b3))
    value = salt + c1 + c2 + c3
    assert r.mppe_decrypt(value, SECRET, auth) == key
    assert r.mppe_encrypt(key, SECRET, auth, salt) == value
    with pytest.raises(r.BadPacket):
        r.mppe_decrypt(b"\x00\x00" + c1 + c2 + c3, SECRET, auth)     # salt without high bit
    with pytest.raises(r.BadPacket):
        r.mppe_decrypt(value[:-1], SECRET, auth)


def test_mppe_decryption_agrees_with_pyrad():
    pyrad_packet = pytest.importorskip("pyrad.packet")
    auth = bytes(range(16))
    p = pyrad_packet.AuthPacket(secret=SECRET, authenticator=auth)
    enc = p.SaltCrypt(RECV)
    assert r.mppe_decrypt(enc, SECRET, auth) == RECV


# --- replies --------------------------------------------------------------------------------

def started(servers=(S1,), **kw):
    c = r.RadiusClient(list(servers), rng=Rng(), **kw)
    (send,) = of(c.request("k", b"\x02\x07\x00\x0a\x01alice", None, "alice", STATION, 0.0),
                 r.SendRadius)
    return c, send


def test_accept_yields_the_msk_recv_then_send_key():
    c, send = started()
    out = c.datagram("127.0.0.1", 18120, reply(send.data, r.ACCESS_ACCEPT,
                                                build_eap(EapCode.SUCCESS, 7)), 0.2)
    (res,) = of(out, r.RadiusResult)
    assert res.code == "accept" and res.msk == RECV + SEND and not res.reason
    assert "radius_accept" in counts(out)


def test_forged_late_duplicate_and_foreign_replies_are_dropped_and_counted():
    c, send = started()
    good = reply(send.data, r.ACCESS_CHALLENGE, build_eap(EapCode.REQUEST, 8, 13, b"\x20"))
    # another secret: bad Response Authenticator
    assert counts(c.datagram("127.0.0.1", 18120, reply(send.data, r.ACCESS_ACCEPT,
                                                       sign=b"wrong"), 0.1)) == \
        ["radius_reply_forged"]
    # a correct Response Authenticator over a wrong Message-Authenticator
    ident, auth, _ = parse_request(send.data, SECRET)
    body = r.encode_attrs([(r.MESSAGE_AUTHENTICATOR, bytes(16))])
    pkt = struct.pack("!BBH", r.ACCESS_ACCEPT, ident, 20 + len(body)) + auth + body
    pkt = pkt[:4] + r.response_authenticator(pkt, auth, SECRET) + pkt[20:]
    out = c.datagram("127.0.0.1", 18120, pkt, 0.1)
    assert counts(out) == ["radius_reply_forged"]
    assert "Message-Authenticator" in of(out, Log)[0].text
    # no Message-Authenticator at all
    pkt = struct.pack("!BBH", r.ACCESS_ACCEPT, ident, 20) + auth
    pkt = pkt[:4] + r.response_authenticator(pkt, auth, SECRET)
    assert counts(c.datagram("127.0.0.1", 18120, pkt, 0.1)) == ["radius_reply_forged"]
    # a bit flipped anywhere
    assert counts(c.datagram("127.0.0.1", 18120, good[:-1] + bytes([good[-1] ^ 1]), 0.1)) == \
        ["radius_reply_forged"]
    # from an address that is not the server the request went to
    assert counts(c.datagram("127.0.0.9", 18120, good, 0.1)) == ["radius_reply_unknown_source"]
    # another identifier
    other = bytearray(good)
    other[1] ^= 0xFF
    assert counts(c.datagram("127.0.0.1", 18120, bytes(other), 0.1)) == \
        ["radius_reply_unmatched"]
    # the real one still counts after all of those
    assert of(c.datagram("127.0.0.1", 18120, good, 0.2), r.RadiusResult)[0].code == "challenge"
    # a duplicate of it, and a late one, are dropped
    assert counts(c.datagram("127.0.0.1", 18120, good, 0.3)) == ["radius_reply_unmatched"]
    assert counts(c.datagram("127.0.0.1", 18120, b"\x02\x01\x00", 0.3)) == \
        ["radius_reply_malformed"]


def test_accept_without_keys_is_no_success():
    c, send = started()
    (res,) = of(c.datagram("127.0.0.1", 18120, reply(send.data, r.ACCESS_ACCEPT, keys=False),
                           0.1), r.RadiusResult)
    assert res.code == "accept" and "MS-MPPE" in res.reason


def test_retransmission_keeps_the_datagram_then_failover_to_the_next_server():
    c, send = started([S1, S2], timeout_s=1.0, retries=2)
    assert of(c.tick(0.5), r.SendRadius) == []
    for t in (1.0, 2.0):
        out = c.tick(t)
        assert of(out, r.SendRadius) == [send] and "radius_retransmit" in counts(out)
    out = c.tick(3.0)
    (nxt,) = of(out, r.SendRadius)
    assert (nxt.host, nxt.port) == (S2.host, S2.port) and "radius_failover" in counts(out)
    assert any("no answer after 3 tries" in e.text for e in of(out, Log))
    parse_request(nxt.data, S2.secret)       # signed with the second server's secret
    # a late answer of the first server is no longer matched
    assert counts(c.datagram(S1.host, S1.port, reply(send.data, r.ACCESS_REJECT), 3.1)) == \
        ["radius_reply_unmatched"]
    (res,) = of(c.datagram(S2.host, S2.port, reply(nxt.data, r.ACCESS_CHALLENGE,
                                                   build_eap(EapCode.REQUEST, 8, 13, b"\x20"),
                                                   b"s2", secret=S2.secret), 3.2),
                r.RadiusResult)
    assert res.server == S2.name
    # the conversation stays with the server that holds its State
    (again,) = of(c.request("k", b"\x02\x08\x00\x06\x0d\x00", b"s2", "alice", STATION, 3.3),
                  r.SendRadius)
    assert again.host == S2.host
    # and a new conversation skips the dead first server
    (new,) = of(c.request("k2", b"\x02\x01\x00\x05\x01", None, "bob", STATION, 3.4),
                r.SendRadius)
    assert new.host == S2.host


def test_no_server_answering_gives_up_with_a_reason():
    c, _ = started([S1], timeout_s=1.0, retries=1)
    c.tick(1.0)
    out = c.tick(2.0)
    (res,) = of(out, r.RadiusResult)
    assert res.code == "timeout" and "no RADIUS server answered (127.0.0.1:18120)" in res.reason
    assert c.pending == {}


# --- the authenticator relaying to RADIUS -------------------------------------------------------

class Creds:
    server_identity = "crs-eac"

    def subscriber(self, identity):
        return None


def auth_with(servers=(S1,), **kw):
    client = r.RadiusClient(list(servers), rng=Rng(), timeout_s=1.0, retries=1, **kw)
    a = Authenticator(Creds(), CTRL, rng=Rng(), relay=client, radius_group="radius-users")
    a.groups = frozenset({"staff"})
    return a


def terminal_eap(frames_out, code_type=None):
    (f,) = of(frames_out, SendFrame)
    return parse_frame(f.data).eap


def identity(a, now=0.0, name=b"alice"):
    out = a.handle_frame(11, 3, build_frame(PAE_GROUP_ADDR, MAC, 1, b""), now)
    req = terminal_eap(out)
    assert req.type == EapType.IDENTITY
    resp = build_eap(EapCode.RESPONSE, req.identifier, EapType.IDENTITY, name)
    out = a.handle_frame(11, 3, build_eap_frame(CTRL, MAC, resp), now)
    (send,) = of(out, r.SendRadius)
    return send, resp


def test_an_eap_tls_like_exchange_is_relayed_and_admits_with_msk_derived_keys():
    a = auth_with()
    send, resp = identity(a)
    _, _, attrs = parse_request(send.data, SECRET)
    assert b"".join(v for t, v in attrs if t == r.EAP_MESSAGE) == resp
    # the server's challenge goes to the terminal, with the server's identifier
    challenge = build_eap(EapCode.REQUEST, 42, 13, b"\x20")
    out = a.handle_radius(S1.host, S1.port, reply(send.data, r.ACCESS_CHALLENGE, challenge,
                                                  b"state-1"), 0.1)
    req = terminal_eap(out)
    assert (req.identifier, req.type) == (42, 13)
    # the terminal's answer goes back with the State
    answer = build_eap(EapCode.RESPONSE, 42, 13, b"\x00" + b"t" * 600)
    out = a.handle_frame(11, 3, build_eap_frame(CTRL, MAC, answer), 0.2)
    (send2,) = of(out, r.SendRadius)
    _, _, attrs = parse_request(send2.data, SECRET)
    assert dict(attrs)[r.STATE] == b"state-1"
    assert b"".join(v for t, v in attrs if t == r.EAP_MESSAGE) == answer
    # a repeat of the answer while the server works is not relayed twice
    assert counts(a.handle_frame(11, 3, build_eap_frame(CTRL, MAC, answer), 0.25)) == \
        ["dot1x_eap_while_server"]
    out = a.handle_radius(S1.host, S1.port, reply(send2.data, r.ACCESS_ACCEPT,
                                                  build_eap(EapCode.SUCCESS, 42)), 0.3)
    (adm,) = of(out, Admit)
    s = adm.session
    root = radius_key_root(RECV + SEND)
    assert s.msk == RECV + SEND and s.emsk == root and s.isr_id == isr_id(root)
    assert s.method == "radius_tls" and s.group == "radius-users" and s.identity == "alice"
    assert terminal_eap(out).code == EapCode.SUCCESS
    # domain separation: the key root is not the MSK, nor what the MSK would give as an EMSK
    assert root[:32] not in (RECV, SEND) and isr_id(RECV + SEND) != s.isr_id
    assert purpose_key(root, "crs-report") != purpose_key(RECV + SEND, "crs-report")


def test_filter_id_naming_a_known_group_sets_the_group():
    a = auth_with()
    send, _ = identity(a)
    out = a.handle_radius(S1.host, S1.port, reply(
        send.data, r.ACCESS_ACCEPT, build_eap(EapCode.SUCCESS, 1),
        extra=[(r.FILTER_ID, b"staff")]), 0.1)
    assert of(out, Admit)[0].session.group == "staff"


def test_an_accept_for_another_user_name_admits_nothing():
    """PEAP: the outer (EAP) identity names someone else than the inner one the server
    authenticated (its User-Name in the Access-Accept)."""
    a = auth_with()
    send, _ = identity(a, name=b"victim")
    out = a.handle_radius(S1.host, S1.port, reply(
        send.data, r.ACCESS_ACCEPT, build_eap(EapCode.SUCCESS, 1),
        extra=[(r.USER_NAME, b"attacker")]), 0.1)
    assert of(out, Admit) == [] and terminal_eap(out).code == EapCode.FAILURE
    assert any("is for 'attacker', the EAP identity is 'victim'" in e.text
               for e in of(out, Log))
    # the same name is fine
    send, _ = identity(a, 5.0, name=b"alice")
    out = a.handle_radius(S1.host, S1.port, reply(
        send.data, r.ACCESS_ACCEPT, build_eap(EapCode.SUCCESS, 1),
        extra=[(r.USER_NAME, b"alice")]), 5.1)
    assert of(out, Admit)[0].session.identity == "alice"


def test_reject_fails_with_the_reason_and_a_forged_accept_admits_nothing():
    a = auth_with()
    send, _ = identity(a)
    forged = reply(send.data, r.ACCESS_ACCEPT, build_eap(EapCode.SUCCESS, 1), sign=b"guess")
    out = a.handle_radius(S1.host, S1.port, forged, 0.1)
    assert of(out, Admit) == [] and "radius_reply_forged" in counts(out)
    out = a.handle_radius(S1.host, S1.port, reply(
        send.data, r.ACCESS_REJECT, build_eap(EapCode.FAILURE, 1)), 0.2)
    assert terminal_eap(out).code == EapCode.FAILURE and of(out, Admit) == []
    assert any("Access-Reject" in e.text for e in of(out, Log))


def test_no_server_fails_closed_with_a_clear_log_line():
    a = auth_with()
    identity(a)
    out = a.tick(1.0) + a.tick(2.0)
    assert of(out, Admit) == [] and terminal_eap(of(out, SendFrame)).code == EapCode.FAILURE
    text = " ".join(e.text for e in of(out, Log))
    assert "no RADIUS server answered (127.0.0.1:18120), fail closed" in text


def test_no_identifier_left_fails_at_once_instead_of_waiting_forever():
    a = auth_with()
    for i in range(256):
        a.relay._by_id[(0, i)] = ("other", i)
    out = a.handle_frame(11, 3, build_frame(PAE_GROUP_ADDR, MAC, 1, b""), 0.0)
    req = terminal_eap(out)
    resp = build_eap(EapCode.RESPONSE, req.identifier, EapType.IDENTITY, b"alice")
    out = a.handle_frame(11, 3, build_eap_frame(CTRL, MAC, resp), 0.0)
    assert "radius_ids_exhausted" in counts(out)
    assert terminal_eap(out).code == EapCode.FAILURE and a.convs == {}


def test_server_down_at_reauthentication_keeps_the_session_until_it_expires():
    a = auth_with()
    a.timers = type(a.timers)(session_s=100.0, reauth_margin_s=10.0)
    send, _ = identity(a)
    out = a.handle_radius(S1.host, S1.port, reply(send.data, r.ACCESS_ACCEPT,
                                                  build_eap(EapCode.SUCCESS, 1)), 0.0)
    assert of(out, Admit)
    # re-authentication at 90 s: the terminal answers its identity, no server answers
    out = a.tick(90.0)
    req = terminal_eap(out)
    resp = build_eap(EapCode.RESPONSE, req.identifier, EapType.IDENTITY, b"alice")
    assert of(a.handle_frame(11, 3, build_eap_frame(CTRL, MAC, resp), 90.1), r.SendRadius)
    out = a.tick(91.2) + a.tick(92.3) + a.tick(93.4)
    assert of(out, Revoke) == [] and "dot1x_reauth_server_down" in counts(out)
    assert a.session(11, 3, MAC) is not None
    out = []
    for t in range(94, 101):
        out += a.tick(float(t))
    assert [e.reason for e in of(out, Revoke)] == ["session expired"]


def test_a_restored_session_still_ends_at_its_grace_time_when_no_server_answers():
    from controller.admission.authenticator import Session
    a = auth_with()
    s = Session("alice", "radius-users", "isr-x", b"", b"", 0.0, 3600.0, "radius_tls")
    out = a.restore(11, 3, MAC, s, 0.0, grace_s=5.0)
    req = terminal_eap(of(out, SendFrame))
    resp = build_eap(EapCode.RESPONSE, req.identifier, EapType.IDENTITY, b"alice")
    assert of(a.handle_frame(11, 3, build_eap_frame(CTRL, MAC, resp), 0.1), r.SendRadius)
    out = []
    for t in (1.2, 2.3, 3.0, 4.0):
        out += a.tick(t)
    assert "dot1x_reauth_server_down" in counts(out) and of(out, Revoke) == []
    out = a.tick(5.0)
    assert [e.reason for e in of(out, Revoke)] == ["not re-authenticated after a restart"]


def test_logoff_mid_exchange_makes_the_late_answer_an_orphan():
    a = auth_with()
    send, _ = identity(a)
    a.handle_frame(11, 3, build_frame(PAE_GROUP_ADDR, MAC, 2, b""), 0.1)
    assert a.relay.pending == {}
    out = a.handle_radius(S1.host, S1.port, reply(send.data, r.ACCESS_ACCEPT,
                                                  build_eap(EapCode.SUCCESS, 1)), 0.2)
    assert of(out, Admit) == [] and counts(out) == ["radius_reply_unmatched"]


# --- configuration ------------------------------------------------------------------------------

def test_secret_files_are_checked_and_never_shown(tmp_path):
    from corekit import ROOT

    from controller.config import ConfigError
    from controller.emulation.processes import controller_config
    from controller.settings import load_settings, validate
    secret = tmp_path / "radius.secret"
    secret.write_text("s3cret-value\n")
    servers = [{"host": "127.0.0.1", "port": 18125, "secret_file": "radius.secret"}]
    args = controller_config(tmp_path / "c.yaml", ROOT / "topologies/minimal.yaml", extra={
        "admission": {"backend": "radius", "radius": {"servers": servers, "retries": 3}}})
    secret.chmod(0o644)
    with pytest.raises(ConfigError) as exc:
        validate(load_settings(args[1]))
    text = str(exc.value)
    assert "c.yaml: admission.radius.servers[0].secret_file" in text and "chmod 600" in text
    assert "s3cret" not in text
    secret.chmod(0o600)
    loaded = validate(load_settings(args[1]))
    (srv,) = loaded.radius
    assert (srv.host, srv.port, srv.secret) == ("127.0.0.1", 18125, b"s3cret-value")
    assert "s3cret" not in repr(srv)
    # no server, a host name instead of an address: each named with its key
    args = controller_config(tmp_path / "d.yaml", ROOT / "topologies/minimal.yaml", extra={
        "admission": {"backend": "radius", "radius": {"servers": [
            {"host": "radius.example", "secret_file": "radius.secret"}]}}})
    with pytest.raises(ConfigError) as exc:
        validate(load_settings(args[1]))
    assert "admission.radius.servers[0].host" in str(exc.value)
    args = controller_config(tmp_path / "e.yaml", ROOT / "topologies/minimal.yaml", extra={
        "admission": {"backend": "radius"}})
    with pytest.raises(ConfigError) as exc:
        validate(load_settings(args[1]))
    assert "e.yaml: admission.radius.servers: backend radius needs at least one server" in \
        str(exc.value)
