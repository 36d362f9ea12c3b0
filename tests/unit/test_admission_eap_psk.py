"""EAP-PSK: primitives against published vectors, our peer against our server."""
import os

import pytest
from cryptography.exceptions import InvalidSignature
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.admission import eap_psk as p
from controller.admission.eapol import EapCode, EapType, parse_eap

H = bytes.fromhex
RFC4493_KEY = H("2b7e151628aed2a6abf7158809cf4f3c")
RFC4493_MSG = H("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
                "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")


@pytest.mark.parametrize("n,mac", [
    (0, "bb1d6929e95937287fa37d129b756746"),
    (16, "070a16b46b4d4144f79bdd9dd04a287c"),
    (40, "dfa66747de9ae63030ca32611497c827"),
    (64, "51f0bebf7e3b9d92fc49741779363cfe"),
])
def test_cmac_rfc4493(n, mac):
    assert p.Aes(RFC4493_KEY).cmac(RFC4493_MSG[:n]) == H(mac)


@pytest.mark.parametrize("key,nonce,header,msg,cipher_tag", [
    ("233952DEE4D5ED5F9B9C6D6FF80FF478", "62EC67F9C3A4A407FCB2A8C49031A8B3", "6BFB914FD07EAE6B",
     "", "E037830E8389F27B025A2D6527E79D01"),
    ("91945D3F4DCBEE0BF45EF52255F095A4", "BECAF043B0A23D843194BA972C66DEBD", "FA3BFD4806EB53FA",
     "F7FB", "19DD5C4C9331049D0BDAB0277408F67967E5"),
])
def test_eax_paper_vectors(key, nonce, header, msg, cipher_tag):
    ct, tag = p.Aes(H(key)).eax_encrypt(H(nonce), H(header), H(msg))
    assert ct + tag == H(cipher_tag)
    assert p.Aes(H(key)).eax_decrypt(H(nonce), H(header), ct, tag) == H(msg)
    with pytest.raises(InvalidSignature):
        p.Aes(H(key)).eax_decrypt(H(nonce), H(header) + b"x", ct, tag)


def test_key_setup_is_rfc_construction():
    psk = bytes(range(16))
    ak, kdk = p.key_setup(psk)
    b = p.aes_block(psk, bytes(16))
    assert ak == p.aes_block(psk, b[:15] + bytes([b[15] ^ 1]))
    assert kdk == p.aes_block(psk, b[:15] + bytes([b[15] ^ 2]))
    tek, msk, emsk = p.derive_keys(kdk, bytes(16))
    assert (len(tek), len(msk), len(emsk)) == (16, 64, 64)
    assert len({tek, msk[:16], msk[16:32], emsk[:16], emsk[48:]}) == 5
    with pytest.raises(ValueError):
        p.key_setup(b"short")


def run(psk_peer, psk_server, id_p=b"c1t1@crs.example", tamper=None):
    ak, kdk = p.key_setup(psk_peer)
    db = {id_p: p.key_setup(psk_server)}
    srv = p.PskServer(id_s=b"crs-eac", lookup=db.get)
    peer = p.PskPeer(id_p=id_p, ak=ak, kdk=kdk)
    req = srv.first(10)
    r2 = peer.process(req)
    assert r2.reply is not None
    s3 = srv.process(r2.reply, 11)
    if s3.done:
        return s3, None
    msg3 = s3.reply if tamper is None else tamper(s3.reply)
    r4 = peer.process(msg3)
    if r4.reply is None:
        return None, r4
    return srv.process(r4.reply, 12), r4


def test_peer_against_server_success_and_same_keys():
    psk = os.urandom(16)
    s, c = run(psk, psk)
    assert s.success and c.success
    assert s.msk == c.msk and s.emsk == c.emsk and len(s.msk) == 64
    assert s.id_p == b"c1t1@crs.example"


def test_message_layouts():
    psk = bytes(16)
    ak, kdk = p.key_setup(psk)
    srv = p.PskServer(b"crs-eac", {b"me": (ak, kdk)}.get, rng=lambda n: b"S" * n)
    peer = p.PskPeer(b"me", ak, kdk, rng=lambda n: b"P" * n)
    m1 = parse_eap(srv.first(1))
    assert (m1.code, m1.type, m1.data) == (EapCode.REQUEST, EapType.PSK,
                                           b"\x00" + b"S" * 16 + b"crs-eac")
    m2 = parse_eap(peer.process(m1.encode()).reply)
    assert m2.data[0] == 0x40 and m2.data[1:17] == b"S" * 16 and m2.data[17:33] == b"P" * 16
    assert m2.data[33:49] == p.Aes(ak).cmac(b"me" + b"crs-eac" + b"S" * 16 + b"P" * 16)
    assert m2.data[49:] == b"me"
    raw3 = srv.process(m2.encode(), 2).reply
    m3 = parse_eap(raw3)
    assert m3.data[0] == 0x80 and m3.data[17:33] == p.Aes(ak).cmac(b"crs-eac" + b"P" * 16)
    assert m3.data[33:37] == bytes(4) and len(m3.data) == 33 + 4 + 16 + 1
    m4 = parse_eap(peer.process(raw3).reply)
    assert m4.data[0] == 0xC0 and m4.data[17:21] == b"\x00\x00\x00\x01" and len(m4.data) == 38


def test_wrong_psk_fails_at_server():
    s, _ = run(os.urandom(16), os.urandom(16))
    assert s.done and not s.success and "MAC_P" in s.reason


def test_unknown_identity_fails():
    ak, kdk = p.key_setup(bytes(16))
    srv = p.PskServer(b"eac", {}.get)
    peer = p.PskPeer(b"nobody", ak, kdk)
    r = srv.process(peer.process(srv.first(1)).reply, 2)
    assert r.done and not r.success and r.reason == "unknown ID_P"


def test_tampered_pchannel_is_ignored_by_peer():
    psk = os.urandom(16)

    def flip(raw):
        return raw[:-1] + bytes([raw[-1] ^ 0x40])
    s, c = run(psk, psk, tamper=flip)
    assert s is None and c.reply is None and "PCHANNEL" in c.reason


def test_server_reject_ends_in_failure_on_both_sides():
    psk = os.urandom(16)
    ak, kdk = p.key_setup(psk)
    srv = p.PskServer(b"eac", {b"x": (ak, kdk)}.get)
    peer = p.PskPeer(b"x", ak, kdk)
    s3 = srv.process(peer.process(srv.first(1)).reply, 2, accept=False)
    c = peer.process(s3.reply)
    assert c.done and not c.success
    s4 = srv.process(c.reply, 3)
    assert s4.done and not s4.success


def test_replayed_psk2_from_old_run_dropped():
    psk = os.urandom(16)
    ak, kdk = p.key_setup(psk)
    db = {b"x": (ak, kdk)}.get
    old = p.PskServer(b"eac", db)
    old_reply = p.PskPeer(b"x", ak, kdk).process(old.first(1)).reply
    new = p.PskServer(b"eac", db)
    new.first(1)
    r = new.process(old_reply, 2)
    assert not r.done and r.reply is None and "RAND_S" in r.reason


@given(st.binary(max_size=120), st.integers(0, 3))
@settings(max_examples=400, deadline=None)
def test_garbage_never_raises(data, which):
    ak, kdk = p.key_setup(bytes(16))
    srv = p.PskServer(b"eac", {b"x": (ak, kdk)}.get)
    srv.first(1)
    peer = p.PskPeer(b"x", ak, kdk)
    for obj in (srv, peer):
        pkt = (bytes([1 if obj is peer else 2, 1]) + (len(data) + 5).to_bytes(2, "big")
               + b"\x2f" + data)
        res = obj.process(pkt, 2) if obj is srv else obj.process(pkt)
        assert not res.success


def test_kept_aes_contexts_give_the_library_results():
    """A subscriber's KDK context is kept (derive_keys): the same bytes as a fresh one,
    call after call; key derivation matches RFC 4764's construction on fresh contexts."""
    import os

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from controller.admission import eap_psk
    kdk, rand_p = os.urandom(16), os.urandom(16)

    def fresh(*blocks):
        return Cipher(algorithms.AES(kdk), modes.ECB()).encryptor().update(b"".join(blocks))
    b = fresh(rand_p)
    want = fresh(*(b[:-1] + bytes([b[-1] ^ i]) for i in range(1, 10)))
    for _ in range(3):
        tek, msk, emsk = eap_psk.derive_keys(kdk, rand_p)
        assert tek + msk + emsk == want
    assert kdk in eap_psk._KEPT


def _ref_cmac(key, data):
    from cryptography.hazmat.primitives import cmac
    from cryptography.hazmat.primitives.ciphers import algorithms
    c = cmac.CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def _ref_ctr(key, counter, data):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    e = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()
    return e.update(data) + e.finalize()


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), data=st.binary(max_size=100),
       counter=st.binary(min_size=16, max_size=16), t=st.integers(0, 2))
def test_kept_context_matches_openssl_cmac_and_ctr(key, data, counter, t):
    """One context serves every call, in any order: each result is OpenSSL's own."""
    aes = p.Aes(key)
    for _ in range(2):
        assert aes.cmac(data) == _ref_cmac(key, data)
        assert aes.omac(t, data) == _ref_cmac(key, bytes(15) + bytes([t]) + data)
        assert aes.ctr(counter, data) == _ref_ctr(key, counter, data)
    assert aes.ctr(b"\xff" * 16, data) == _ref_ctr(key, b"\xff" * 16, data)   # wraps


@settings(max_examples=100, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), nonce=st.binary(max_size=20),
       header=st.binary(max_size=40), msg=st.binary(max_size=40))
def test_eax_round_trip_and_any_change_refused(key, nonce, header, msg):
    aes = p.Aes(key)
    ct, tag = aes.eax_encrypt(nonce, header, msg)
    n = _ref_cmac(key, bytes(16) + nonce)
    assert ct == _ref_ctr(key, n, msg)
    assert p.Aes(key).eax_decrypt(nonce, header, ct, tag) == msg
    for bad in ((nonce + b"x", header, ct, tag), (nonce, header + b"x", ct, tag),
                (nonce, header, ct + b"x", tag), (nonce, header, ct, tag[:15]),
                (nonce, header, ct, bytes([tag[0] ^ 1]) + tag[1:])):
        with pytest.raises(InvalidSignature):
            aes.eax_decrypt(*bad)


def test_kept_contexts_are_bounded_and_reused(monkeypatch):
    monkeypatch.setattr(p, "_KEPT", {})
    monkeypatch.setattr(p, "_KEPT_MAX", 3)
    keys = [bytes([i]) * 16 for i in range(5)]
    first = p.kept(keys[0])
    assert p.kept(keys[0]) is first
    for k in keys[1:]:
        p.kept(k)
    assert len(p._KEPT) == 3 and keys[0] not in p._KEPT     # least recently used went
    assert p.kept(keys[4]).cmac(b"x") == _ref_cmac(keys[4], b"x")
    with pytest.raises(ValueError):
        p.Aes(b"short")
    with pytest.raises(ValueError):
        p.Aes(keys[0]).blocks(b"not a block")


@settings(max_examples=60, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), data=st.binary(min_size=100, max_size=1500),
       t=st.integers(0, 2))
def test_long_messages_chain_in_openssl_and_still_match(key, data, t):
    """An ID_P of up to MAX_ID_LEN or a forged channel: past _LONG blocks the chain runs as
    one CBC pass; the MAC is the same."""
    aes = p.Aes(key)
    assert aes.cmac(data) == _ref_cmac(key, data)
    assert aes.omac(t, data) == _ref_cmac(key, bytes(15) + bytes([t]) + data)
    n = p._LONG * 16
    for cut in (n - 1, n, n + 1, n + 16, n + 17):
        assert aes.cmac(data[:cut]) == _ref_cmac(key, data[:cut])


def test_forged_psk2_never_keeps_a_key(monkeypatch):
    """A PSK-2 with a wrong MAC_P (anyone can claim an identity) leaves no trace in the kept
    contexts; a verified one keeps only the KDK, never the AK."""
    monkeypatch.setattr(p, "_KEPT", {})
    psk = os.urandom(16)
    ak, kdk = p.key_setup(psk)
    db = {b"me": (ak, kdk)}
    srv = p.PskServer(id_s=b"crs-eac", lookup=db.get, expected_id_p=b"me")
    req = srv.first(1)
    forger = p.PskPeer(id_p=b"me", ak=os.urandom(16), kdk=os.urandom(16))
    res = srv.process(forger.process(req).reply, 2)
    assert res.done and not res.success and "MAC_P" in res.reason
    assert p._KEPT == {}
    srv = p.PskServer(id_s=b"crs-eac", lookup=db.get, expected_id_p=b"me")
    peer = p.PskPeer(id_p=b"me", ak=ak, kdk=kdk)
    m3 = srv.process(peer.process(srv.first(1)).reply, 2).reply
    assert srv.process(peer.process(m3).reply, 3).success
    assert set(p._KEPT) == {kdk}
