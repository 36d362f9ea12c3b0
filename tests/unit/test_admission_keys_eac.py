"""EMSK key hierarchy, the EAC (ISR-ID / IAC-ID / inquiry) and SS-SP mutual authentication."""
import os
from dataclasses import replace

import pytest

from controller.admission import mutual_auth
from controller.admission.authenticator import Session
from controller.admission.authorization import Allowed, Authorization
from controller.admission.credentials import Credentials, ServiceProvider
from controller.admission.eac import (
    Eac,
    Grant,
    MemoryStore,
    Refusal,
    SpLogin,
    open_grant,
    seal_grant,
    sp_proof,
    sp_session_key,
)
from controller.admission.keys import isr_id, purpose_key, sp_service_key

EMSK = bytes(range(64))


def test_purpose_keys_differ_and_are_deterministic():
    a, b = purpose_key(EMSK, "crs-report"), purpose_key(EMSK, "sp-root")
    assert a != b and len(a) == 32 and a == purpose_key(EMSK, "crs-report")
    assert len(purpose_key(EMSK, "crs-report", 16)) == 16
    assert purpose_key(bytes(64), "crs-report") != a
    with pytest.raises(ValueError):
        purpose_key(b"short", "crs-report")


def test_hkdf_is_rfc_5869_and_agrees_with_the_cryptography_package():
    """The keys' HKDF-SHA256 (on the standard library's HMAC) gives RFC 5869's test
    vectors and the `cryptography` package's HKDF for random inputs of every length class."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    from controller.admission.keys import hkdf_sha256
    # RFC 5869 A.1 and A.3 (SHA-256; A.3: no salt, no info)
    okm = hkdf_sha256(b"\x0b" * 22, bytes(range(13)), bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")
    assert hkdf_sha256(b"\x0b" * 22, b"", b"", 42).hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
        "9d201395faa4b61a96c8")
    for length in (1, 12, 32, 33, 64, 100, 8160):
        ikm, salt, info = os.urandom(32), os.urandom(17), os.urandom(9)
        ref = HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)
        assert hkdf_sha256(ikm, salt, info, length) == ref
    with pytest.raises(ValueError):
        hkdf_sha256(b"k" * 32, b"s", b"i", 8161)


def test_isr_id_and_service_keys():
    i = isr_id(EMSK)
    assert i.startswith("isr-") and i == isr_id(EMSK) and i != isr_id(bytes(64))
    k = sp_service_key(EMSK, i, "web", "http")
    assert len(k) == 32
    assert len({k, sp_service_key(EMSK, i, "mail", "http"),
                sp_service_key(EMSK, i, "web", "portal"),
                sp_service_key(EMSK, "isr-other", "web", "http")}) == 4


SP_KEYS = {"web": os.urandom(32), "mail": os.urandom(32)}


def make_eac():
    creds = Credentials(service_providers={
        "web": ServiceProvider("web", ("http",), SP_KEYS["web"]),
        "mail": ServiceProvider("mail", ("smtp",), SP_KEYS["mail"])})
    authz = Authorization(
        services={("web", "http"): Allowed("web", "http", "tcp", 80),
                  ("mail", "smtp"): Allowed("mail", "smtp", "tcp", 25),
                  ("web", "ftp"): Allowed("web", "ftp", "tcp", 21)},
        groups={"cell1": frozenset({("web", "http"), ("mail", "smtp"), ("web", "ftp")}),
                "cell3": frozenset({("web", "http")})})
    return Eac(MemoryStore(), creds, authz, iac_lifetime_s=100)


def login(eac, name="web", now=0.0, key=None):
    n_eac = eac.sp_challenge(name, now)
    n_sp = os.urandom(16)
    k = key or SP_KEYS[name]
    res = eac.sp_authenticate(name, n_eac, n_sp, sp_proof(k, "sp", name, n_eac, n_sp), now)
    if isinstance(res, SpLogin):
        assert res.eac_proof == sp_proof(k, "eac", name, n_eac, n_sp)
        assert res.session_key == sp_session_key(k, name, n_eac, n_sp)
    return res


def session(group="cell1", emsk=EMSK, expires=50.0):
    return Session("c1t1@crs.example", group, isr_id(emsk), b"m" * 64, emsk, 0.0, expires, "psk")


def test_full_x1124_flow_both_ends_get_same_key():
    eac = make_eac()
    s = session()
    eac.register(s)
    sp = login(eac)
    g = eac.inquire(sp.iac_id, s.isr_id, "http", 1.0)
    assert isinstance(g, Grant) and g.expires == 1.0 + eac.grant_s      # re-asked soon
    ss_key = sp_service_key(EMSK, s.isr_id, "web", "http")     # the terminal computes it alone
    assert g.key == ss_key
    sealed = seal_grant(sp.session_key, sp.iac_id, g)
    assert open_grant(sp.session_key, sp.iac_id, g, sealed) == ss_key
    assert open_grant(sp.session_key, "iac-other", g, sealed) is None
    # mutual authentication between SS and SP with that key
    n_ss, n_sp = mutual_auth.new_nonce(), mutual_auth.new_nonce()
    p_sp = mutual_auth.proof(g.key, "sp", n_ss, n_sp, s.isr_id, "web", "http")
    assert mutual_auth.verify(ss_key, "sp", n_ss, n_sp, s.isr_id, "web", "http", p_sp)
    p_ss = mutual_auth.proof(ss_key, "ss", n_ss, n_sp, s.isr_id, "web", "http")
    assert mutual_auth.verify(g.key, "ss", n_ss, n_sp, s.isr_id, "web", "http", p_ss)
    # reflection
    assert not mutual_auth.verify(g.key, "ss", n_ss, n_sp, s.isr_id, "web", "http", p_sp)
    assert not mutual_auth.verify(os.urandom(32), "sp", n_ss, n_sp, s.isr_id, "web", "http", p_sp)
    assert not mutual_auth.verify(g.key, "ss", n_ss, n_ss, s.isr_id, "web", "http", p_ss)


def test_keys_differ_per_sp_and_service():
    eac = make_eac()
    s = session()
    eac.register(s)
    a = eac.inquire(login(eac, "web").iac_id, s.isr_id, "http", 1.0)
    b = eac.inquire(login(eac, "mail").iac_id, s.isr_id, "smtp", 1.0)
    c = eac.inquire(login(eac, "web").iac_id, s.isr_id, "ftp", 1.0)
    assert isinstance(a, Grant) and isinstance(b, Grant)
    assert isinstance(c, Refusal) and c.reason == "sp_not_entitled"   # web does not offer ftp
    assert a.key != b.key


@pytest.mark.parametrize("case,reason", [
    ("unknown_iac", "unknown_iac_id"), ("expired_iac", "expired_iac_id"),
    ("sp_service", "sp_not_entitled"), ("unknown_isr", "unknown_isr_id"),
    ("expired_isr", "expired_isr_id"), ("ss_group", "ss_not_entitled"),
])
def test_refusals(case, reason):
    eac = make_eac()
    s = session(group="cell3" if case == "ss_group" else "cell1")
    eac.register(s)
    sp = login(eac, "mail" if case == "ss_group" else "web")
    iac, isr, svc, now = sp.iac_id, s.isr_id, "smtp" if case == "ss_group" else "http", 1.0
    if case == "unknown_iac":
        iac = "iac-nope"
    elif case == "expired_iac":
        now = 100.0
    elif case == "sp_service":
        svc = "smtp"
    elif case == "unknown_isr":
        isr = "isr-nope"
    elif case == "expired_isr":
        now = 60.0
    r = eac.inquire(iac, isr, svc, now)
    assert isinstance(r, Refusal) and r.reason == reason


def test_reauth_new_isr_and_revoke_old():
    eac = make_eac()
    old = session()
    eac.register(old)
    new = replace(session(emsk=bytes(64), expires=200.0))
    eac.register(new)
    eac.revoke(old.isr_id)
    sp = login(eac, now=60.0)
    assert eac.inquire(sp.iac_id, old.isr_id, "http", 60.0).reason == "unknown_isr_id"
    assert isinstance(eac.inquire(sp.iac_id, new.isr_id, "http", 60.0), Grant)


def test_sp_login_failures():
    eac = make_eac()
    assert login(eac, key=os.urandom(32)).reason == "bad_sp_proof"
    assert eac.sp_challenge("nobody", 0.0).reason == "unknown_sp"
    n = eac.sp_challenge("web", 0.0)
    n_sp = os.urandom(16)
    good = sp_proof(SP_KEYS["web"], "sp", "web", n, n_sp)
    assert isinstance(eac.sp_authenticate("web", n, n_sp, good, 1.0), SpLogin)
    assert eac.sp_authenticate("web", n, n_sp, good, 1.0).reason == "unknown_challenge"  # one-time
    n2 = eac.sp_challenge("web", 0.0)
    late = eac.sp_authenticate("web", n2, n_sp,
                               sp_proof(SP_KEYS["web"], "sp", "web", n2, n_sp), 31.0)
    assert late.reason == "unknown_challenge"


def test_md5_sessions_have_no_isr():
    eac = make_eac()
    r = eac.register(Session("old", "legacy", "", b"", b"", 0.0, 10.0, "md5"))
    assert isinstance(r, Refusal) and r.reason == "no_keys"


def test_a_grant_lasts_grant_s_at_most_so_a_revocation_reaches_sps_in_that_time():
    eac = make_eac()                 # grant_s 5 s by default
    s = session(expires=5000.0)
    eac.register(s)
    sp = login(eac, now=10.0)
    assert eac.inquire(sp.iac_id, s.isr_id, "http", 10.0).expires == 15.0
    eac.grant_s = 3600.0             # never beyond the SS session nor the SP's login
    assert eac.inquire(sp.iac_id, s.isr_id, "http", 10.0).expires == min(5000.0, sp.expires)
