"""The EAC's SP REST handlers: status codes per refusal, request/answer MACs, and bad input."""
import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.admission.authenticator import Session
from controller.admission.authorization import Allowed, Authorization
from controller.admission.credentials import Credentials, ServiceProvider
from controller.admission.eac import Eac, MemoryStore, sp_proof, sp_session_key
from controller.admission.eac_rest import answer_mac, handle, inquiry_mac, open_answer
from controller.admission.keys import isr_id, sp_service_key

SP_KEYS = {"web": os.urandom(32), "mail": os.urandom(32)}
EMSK = os.urandom(64)
EMSK3 = os.urandom(64)


def make_eac():
    creds = Credentials(service_providers={
        "web": ServiceProvider("web", ("http",), SP_KEYS["web"]),
        "mail": ServiceProvider("mail", ("smtp",), SP_KEYS["mail"])})
    authz = Authorization(
        services={("web", "http"): Allowed("web", "http", "tcp", 80),
                  ("mail", "smtp"): Allowed("mail", "smtp", "tcp", 25)},
        groups={"cell1": frozenset({("web", "http"), ("mail", "smtp")}),
                "cell3": frozenset({("web", "http")})})
    eac = Eac(MemoryStore(), creds, authz, iac_lifetime_s=100)
    eac.register(Session("c1t1@crs.example", "cell1", isr_id(EMSK), b"m" * 64, EMSK, 0.0, 50.0,
                         "psk"))
    eac.register(Session("c3t1@crs.example", "cell3", isr_id(EMSK3), b"m" * 64, EMSK3, 0.0, 50.0,
                         "psk"))
    return eac


def post(eac, path, doc, now=1.0):
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    status, out = handle("POST", "/eac/v1" + path, body, now, eac)
    json.dumps(out)                                   # always JSON-serialisable
    return status, out


def login(eac, name="web", now=1.0, key=None):
    st_, ch = post(eac, "/sp/challenge", {"sp": name}, now)
    assert st_ == 200, ch
    n_eac, n_sp = bytes.fromhex(ch["nonce_eac"]), os.urandom(16)
    k = key or SP_KEYS[name]
    status, out = post(eac, "/sp/login", {"sp": name, "nonce_eac": n_eac.hex(),
                                          "nonce_sp": n_sp.hex(),
                                          "proof": sp_proof(k, "sp", name, n_eac, n_sp).hex()}, now)
    if status == 200:
        assert bytes.fromhex(out["eac_proof"]) == sp_proof(k, "eac", name, n_eac, n_sp)
    return status, out, sp_session_key(k, name, n_eac, n_sp)


def inquiry(eac, iac, skey, isr, service="http", now=2.0, nonce=None, mac=None):
    nonce = nonce or os.urandom(16).hex()
    doc = {"iac_id": iac, "isr_id": isr, "service": service, "nonce": nonce,
           "mac": mac or inquiry_mac(skey, iac, isr, service, nonce)}
    status, out = post(eac, "/inquiry", doc, now)
    return status, out, nonce


def test_login_then_inquiry_gives_the_key_the_terminal_derives():
    eac = make_eac()
    status, lg, skey = login(eac)
    assert status == 200 and lg["iac_id"].startswith("iac-") and lg["lifetime_s"] == 100.0
    status, ans, nonce = inquiry(eac, lg["iac_id"], skey, isr_id(EMSK))
    assert status == 200, ans
    assert ans["identity"] == "c1t1@crs.example" and ans["group"] == "cell1"
    # a grant lasts sp_grant_s (5 s) at most: the SP re-asks, a revocation reaches it then
    assert ans["lifetime_s"] == 5.0 and ans["expires"] == 2.0 + 5.0
    assert "key" not in ans and "emsk" not in json.dumps(ans)
    # The answer survives JSON transport and opens to the key the terminal computes alone.
    grant = open_answer(skey, lg["iac_id"], nonce, json.loads(json.dumps(ans)))
    assert grant is not None and grant.key == sp_service_key(EMSK, isr_id(EMSK), "web", "http")


def test_answer_tampering_or_wrong_nonce_is_detected_by_the_sp():
    eac = make_eac()
    _, lg, skey = login(eac)
    _, ans, nonce = inquiry(eac, lg["iac_id"], skey, isr_id(EMSK))
    assert open_answer(skey, lg["iac_id"], os.urandom(16).hex(), ans) is None      # not our request
    assert open_answer(skey, lg["iac_id"], nonce, {**ans, "identity": "ops1@crs.example"}) is None
    forged = {**ans, "identity": "x"}
    forged["mac"] = answer_mac(os.urandom(32), nonce, forged)
    assert open_answer(skey, lg["iac_id"], nonce, forged) is None
    assert open_answer(os.urandom(32), lg["iac_id"], nonce, ans) is None
    assert open_answer(skey, lg["iac_id"], nonce, {"mac": 5}) is None
    assert open_answer(skey, lg["iac_id"], nonce, {**ans, "key_sealed": "zz"}) is None


def test_sp_login_refusals_are_401():
    eac = make_eac()
    assert post(eac, "/sp/challenge", {"sp": "nobody"})[0] == 401
    status, out, _ = login(eac, key=os.urandom(32))
    assert (status, out["error"]) == (401, "bad_sp_proof")
    # a challenge is single use
    _, ch = post(eac, "/sp/challenge", {"sp": "web"})
    n_eac, n_sp = bytes.fromhex(ch["nonce_eac"]), os.urandom(16)
    doc = {"sp": "web", "nonce_eac": ch["nonce_eac"], "nonce_sp": n_sp.hex(),
           "proof": sp_proof(SP_KEYS["web"], "sp", "web", n_eac, n_sp).hex()}
    assert post(eac, "/sp/login", doc)[0] == 200
    assert post(eac, "/sp/login", doc) == (401, {
        "error": "unknown_challenge",
        "detail": "challenge unknown, used, expired or for another SP"})


def test_inquiry_refusals_map_to_statuses():
    eac = make_eac()
    _, lg, skey = login(eac)
    iac = lg["iac_id"]
    unknown = inquiry(eac, "iac-" + "00" * 12, skey, isr_id(EMSK))
    assert unknown[:2] == (401, {"error": "unknown_iac_id"})
    st_, out, _ = inquiry(eac, iac, os.urandom(32), isr_id(EMSK))
    assert (st_, out["error"]) == (401, "bad_request_mac")
    st_, out, _ = inquiry(eac, iac, skey, "isr-" + "ab" * 12)
    assert (st_, out["error"]) == (404, "unknown_isr_id")
    st_, out, _ = inquiry(eac, iac, skey, isr_id(EMSK), service="smtp")       # web offers no smtp
    assert (st_, out["error"]) == (403, "sp_not_entitled")
    _, lg_mail, skey_mail = login(eac, "mail")
    st_, out, _ = inquiry(eac, lg_mail["iac_id"], skey_mail, isr_id(EMSK3), service="smtp")
    assert (st_, out["error"]) == (403, "ss_not_entitled")                      # cell3: no mail
    assert inquiry(eac, lg_mail["iac_id"], skey_mail, isr_id(EMSK), service="smtp")[0] == 200
    st_, out, _ = inquiry(eac, iac, skey, isr_id(EMSK), now=60.0)
    assert (st_, out["error"]) == (410, "expired_isr_id")
    st_, out, _ = inquiry(eac, iac, skey, isr_id(EMSK), now=200.0)
    assert (st_, out["error"]) == (410, "expired_iac_id")


def test_mac_binds_every_request_field():
    eac = make_eac()
    _, lg, skey = login(eac)
    nonce = os.urandom(16).hex()
    good = inquiry_mac(skey, lg["iac_id"], isr_id(EMSK), "http", nonce)
    # a MAC made for another ISR-ID does not authorise this one
    other = inquiry_mac(skey, lg["iac_id"], isr_id(EMSK3), "http", nonce)
    assert inquiry(eac, lg["iac_id"], skey, isr_id(EMSK), nonce=nonce, mac=other)[0] == 401
    assert inquiry(eac, lg["iac_id"], skey, isr_id(EMSK), nonce=nonce, mac=good)[0] == 200


def test_routing_and_malformed_bodies_are_clean_errors():
    eac = make_eac()
    assert handle("GET", "/eac/v1/sp/challenge", b"", 0.0, eac)[0] == 405
    assert handle("POST", "/eac/v1/nothing", b"{}", 0.0, eac)[0] == 404
    cases = [b"", b"{", b"[1,2]", b"\xff\xfe", b"null", json.dumps({"sp": 5}).encode(),
             json.dumps({"sp": "web", "x": 1}).encode(), json.dumps({}).encode(),
             json.dumps({"sp": "../etc"}).encode(), json.dumps({"sp": "a" * 300}).encode(),
             b" " * 5000]
    for body in cases:
        status, out = handle("POST", "/eac/v1/sp/challenge", body, 0.0, eac)
        assert status == 400 and out["error"] == "bad_request" and out["detail"], body
    bad_login = {"sp": "web", "nonce_eac": "00" * 4, "nonce_sp": "00" * 16, "proof": "00" * 32}
    assert "nonce" in post(eac, "/sp/login", bad_login)[1]["detail"]
    assert post(eac, "/sp/login", {**bad_login, "nonce_eac": "zz" * 16})[0] == 400
    assert post(eac, "/sp/login",
                {**bad_login, "nonce_eac": "00" * 16, "proof": "00" * 8})[0] == 400
    assert post(eac, "/inquiry", {"iac_id": "nope", "isr_id": "isr-00", "service": "http",
                                  "nonce": "00" * 16, "mac": "00" * 32})[0] == 400


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(["/eac/v1/sp/challenge", "/eac/v1/sp/login", "/eac/v1/inquiry", "/x"]),
       body=st.one_of(st.binary(max_size=300),
                      st.dictionaries(st.sampled_from(["sp", "nonce_eac", "nonce_sp", "proof",
                                                       "iac_id", "isr_id", "service", "nonce",
                                                       "mac", "z"]),
                                      st.one_of(st.text(max_size=70), st.integers(), st.none(),
                                                st.binary(min_size=16, max_size=32).map(bytes.hex)))
                      .map(lambda d: json.dumps(d).encode())))
def test_fuzz_never_raises_never_200_without_credentials(path, body):
    eac = make_eac()
    status, out = handle("POST", path, body, 1.0, eac)
    assert isinstance(status, int) and isinstance(out, dict)
    assert status != 500, out
    if path != "/eac/v1/sp/challenge":
        assert status != 200          # login and inquiry need a proof / MAC we never made
