"""Issue 8, items 10, 11 and 14: EAP-PSK ID_P checked at PSK-2, secrets files (mode 0600, demo
secrets only with `demo: true`, audit log 0600) and bounded, counted SP login challenges."""
import json
import logging
import os
import stat

import pytest
import yaml

from controller import cli, launcher
from controller.admission.authenticator import Admit, Authenticator, Count, Log, SendFrame
from controller.admission.authorization import Allowed, Authorization
from controller.admission.credentials import (
    DEMO_FINGERPRINTS,
    Credentials,
    ServiceProvider,
    Subscriber,
    encrypt_md5_secret,
    fingerprint,
    load_credentials,
    new_md5_key_file,
)
from controller.admission.eac import CHALLENGE_LEN, Eac, MemoryStore, Refusal, SpLogin, sp_proof
from controller.admission.eac_rest import handle
from controller.admission.eap_psk import PskPeer, PskServer, key_setup
from controller.admission.eapol import EapCode, EapType, parse_frame
from controller.admission.supplicant import Supplicant
from controller.audit import AuditLog
from controller.config import ConfigError
from controller.emulation.processes import ROOT
from controller.settings import load_settings

SHIPPED = ROOT / "config" / "credentials.yaml"
CTRL, MAC = "02:00:00:00:00:fe", "02:00:00:01:01:02"
PSK1, PSK2 = bytes(range(16)), bytes(range(16, 32))


# --- item 10: ID_P must be the EAP identity, checked at PSK-2 ------------------------------

def two_subscribers() -> Credentials:
    subs = {f"c1t{i}@crs.example": Subscriber(f"c1t{i}@crs.example", "cell1", "psk", False,
                                              *key_setup(psk))
            for i, psk in ((1, PSK1), (2, PSK2))}
    return Credentials("crs-eac", subs)


def run_exchange(auth, sup, now=0.0):
    """Shuttle frames until nobody has more to say; returns every effect and every frame the
    authenticator sent."""
    effects = auth.new_station(11, 3, MAC, now)
    sent, queue = [], [e.data for e in effects if isinstance(e, SendFrame)]
    while queue:
        frame = queue.pop(0)
        sent.append(parse_frame(frame))
        for reply in sup.handle(frame).frames:
            eff = auth.handle_frame(11, 3, reply, now)
            effects += eff
            queue += [e.data for e in eff if isinstance(e, SendFrame)]
    return effects, sent


def psk_requests(frames, t):
    return [f for f in frames if f.eap.code == EapCode.REQUEST and f.eap.type == EapType.PSK
            and f.eap.data[0] >> 6 == t]


def test_psk2_with_another_subscribers_id_p_fails_at_once_without_psk3():
    auth = Authenticator(two_subscribers(), CTRL)
    # answers Identity as c1t2, then proves c1t1's key with ID_P c1t1 (a valid pair)
    attacker = Supplicant("c1t2@crs.example", MAC, psk=PSK1, psk_id_p="c1t1@crs.example")
    effects, sent = run_exchange(auth, attacker)
    assert len(psk_requests(sent, 0)) == 1 and psk_requests(sent, 2) == []     # no PSK-3
    assert sent[-1].eap.code == EapCode.FAILURE and attacker.status == "failure"
    assert not [e for e in effects if isinstance(e, Admit)]
    names = [e.name for e in effects if isinstance(e, Count)]
    assert "dot1x_failure" in names and "dot1x_psk_id_mismatch" in names
    logs = [e.text for e in effects if isinstance(e, Log) and e.level == logging.WARNING]
    assert any("ID_P 'c1t1@crs.example' differs from the EAP identity 'c1t2@crs.example'" in t
               for t in logs), logs
    assert auth.session(11, 3, MAC) is None
    # the failure counts for the port's hold-off like any other
    assert auth.new_station(11, 3, MAC, 0.5)[0] == Count("dot1x_holdoff_drop")


def test_honest_peer_still_gets_in():
    auth = Authenticator(two_subscribers(), CTRL)
    effects, sent = run_exchange(auth, Supplicant("c1t2@crs.example", MAC, psk=PSK2))
    assert len(psk_requests(sent, 2)) == 1 and sent[-1].eap.code == EapCode.SUCCESS
    assert [e.identity for e in effects if isinstance(e, Admit)] == ["c1t2@crs.example"]


def test_psk_server_checks_id_p_before_looking_up_any_key():
    looked_up = []

    def lookup(id_p):
        looked_up.append(id_p)
        return key_setup(PSK1)
    server = PskServer(b"crs-eac", lookup, expected_id_p=b"c1t2@crs.example")
    peer = PskPeer(b"c1t1@crs.example", *key_setup(PSK1))
    psk2 = peer.process(server.first(7)).reply
    res = server.process(psk2, 8)
    assert res.done and not res.success and res.reply is None and res.id_mismatch
    assert looked_up == [] and server.state == "failed"
    # nothing more is accepted from this exchange
    assert not server.process(psk2, 9).success


# --- item 11: secrets files --------------------------------------------------------------

def fresh_credentials(tmp_path, mode=0o600, name="creds.yaml"):
    ak, kdk = key_setup(os.urandom(16))
    p = tmp_path / name
    p.write_text(yaml.safe_dump({"subscribers": [
        {"identity": "a@x", "group": "g", "ak": ak.hex(), "kdk": kdk.hex()}]}))
    p.chmod(mode)
    return p


@pytest.mark.parametrize("mode,verb", [(0o644, "read"), (0o640, "read"), (0o604, "read"),
                                       (0o620, "change"), (0o666, "read and change")])
def test_credentials_readable_or_writable_by_others_refused(tmp_path, mode, verb):
    p = fresh_credentials(tmp_path, mode)
    with pytest.raises(ConfigError) as e:
        load_credentials(p)
    assert str(e.value) == (f"{p}: mode {mode:04o} lets group/others {verb} the subscribers' "
                            "keys; chmod 600 it")
    p.chmod(0o600)
    assert load_credentials(p).subscriber("a@x") is not None
    p.chmod(0o400)
    assert load_credentials(p).subscriber("a@x") is not None


def test_md5_key_file_must_be_private_too(tmp_path):
    kf = tmp_path / "md5.key"
    new_md5_key_file(kf)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"md5_key_file": "md5.key", "subscribers": [
        {"identity": "old", "group": "legacy", "method": "md5", "legacy": True,
         "md5_token": encrypt_md5_secret(kf, "s")}]}))
    p.chmod(0o600)
    assert load_credentials(p).md5_secret("old") == b"s"
    kf.chmod(0o644)
    with pytest.raises(ConfigError, match="md5_key_file: .*md5.key: mode 0644 lets group/others "
                                          "read the key of the MD5 secrets; chmod 600 it"):
        load_credentials(p)


def test_shipped_demo_secrets_are_all_recognised():
    doc = yaml.safe_load(SHIPPED.read_text())
    secrets = [t["master_secret"] for t in doc["templates"]]
    secrets += [sp["key"] for sp in doc["service_providers"]]
    secrets += [s[k] for s in doc["subscribers"] for k in ("ak", "kdk")]
    assert {fingerprint(bytes.fromhex(s)) for s in secrets} == DEMO_FINGERPRINTS
    creds = load_credentials(SHIPPED)                 # offline load: not enforced
    assert len(creds.demo_secrets) == len(secrets)
    assert load_credentials(SHIPPED, demo=True).demo_psk("c1t1@crs.example")


def test_demo_secrets_refused_without_demo_true_even_in_a_disguised_copy(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_credentials(SHIPPED, demo=False)
    text = str(e.value)
    assert text.startswith(f"{SHIPPED}: holds shipped demo secrets (")
    assert "templates[0].master_secret" in text and "service_providers[0].key" in text
    assert "`demo: true`" in text
    # a copy without comments, with renamed entries, only one SP: still the demo secrets
    doc = yaml.safe_load(SHIPPED.read_text())
    doc["templates"][0]["name"] = "prod"
    doc["subscribers"] = []
    doc["service_providers"] = doc["service_providers"][1:2]
    doc["service_providers"][0]["name"] = "mymail"
    p = tmp_path / "production.yaml"
    p.write_text(yaml.safe_dump(doc))
    p.chmod(0o600)
    with pytest.raises(ConfigError) as e:
        load_credentials(p, demo=False)
    assert "templates[0].master_secret, service_providers[0].key)" in str(e.value)
    # fresh secrets are fine without demo
    assert load_credentials(fresh_credentials(tmp_path), demo=False).demo_secrets == ()


def controller_config(tmp_path, creds, demo=None):
    cfg = {"admission": {"mode": "authenticate", "credentials": str(creds),
                         "authorization": str(ROOT / "config/authorization.yaml")},
           "audit_log": str(tmp_path / "audit.jsonl")}
    if demo is not None:
        cfg["demo"] = demo
    p = tmp_path / "controller.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_controller_settings_demo_flag_gates_the_shipped_secrets(tmp_path):
    assert load_settings(str(controller_config(tmp_path, SHIPPED))).demo is False
    for demo in (None, False):
        s = load_settings(str(controller_config(tmp_path, SHIPPED, demo)))
        with pytest.raises(ConfigError, match="`demo: true`"):
            launcher.check(s)
    launcher.check(load_settings(str(controller_config(tmp_path, SHIPPED, True))))
    launcher.check(load_settings(str(controller_config(tmp_path, fresh_credentials(tmp_path)))))
    with pytest.raises(ConfigError, match="expected a boolean"):
        load_settings(str(controller_config(tmp_path, SHIPPED, "yes")))


def test_crs_controller_and_crs_check_exit_2_with_the_reason(tmp_path, capsys):
    args = ["--db", str(tmp_path / "crs.db")]
    assert cli.main(["controller", "--config", str(controller_config(tmp_path, SHIPPED)),
                     *args]) == 2
    assert "holds shipped demo secrets" in capsys.readouterr().err
    loose = fresh_credentials(tmp_path, 0o644, "loose.yaml")
    assert cli.main(["controller", "--config",
                     str(controller_config(tmp_path, loose, True)), *args]) == 2
    err = capsys.readouterr().err
    assert f"{loose}: mode 0644 lets group/others read the subscribers' keys; chmod 600 it" in err
    assert cli.main(["check", str(loose)]) == 2
    assert "mode 0644 lets group/others read" in capsys.readouterr().out
    assert cli.main(["check", str(fresh_credentials(tmp_path, name="ok.yaml"))]) == 0


def test_shipped_configs_set_demo():
    assert yaml.safe_load((ROOT / "config/crs.yaml").read_text())["demo"] is True
    setup = (ROOT / "scripts/setup.sh").read_text()
    assert "chmod 600 config/credentials.yaml" in setup


def test_audit_log_is_private_new_or_existing(tmp_path):
    p = tmp_path / "var" / "audit.jsonl"
    AuditLog(p).write({"event": "x"})
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    old = tmp_path / "old.jsonl"
    old.write_text('{"event": "before"}\n')
    old.chmod(0o644)
    AuditLog(old).write({"event": "after"})
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
    assert old.read_text().count("\n") == 2


# --- item 14: SP challenges: no state per challenge, bounded spent table, counters --------

SP_KEYS = {"web": os.urandom(32), "mail": os.urandom(32)}
EXPIRY_LAST_BYTE = 16 + 7   # in a challenge: random(16) | expiry(8) | MAC(16)


def make_eac(**kw) -> Eac:
    creds = Credentials(service_providers={
        name: ServiceProvider(name, ("http",), key) for name, key in SP_KEYS.items()})
    authz = Authorization(services={("web", "http"): Allowed("web", "http", "tcp", 80)},
                          groups={})
    return Eac(MemoryStore(), creds, authz, **kw)


def login(eac, name="web", now=0.0, nonce=None, key=None):
    n_eac = nonce if nonce is not None else eac.sp_challenge(name, now)
    n_sp = os.urandom(16)
    return eac.sp_authenticate(name, n_eac, n_sp,
                               sp_proof(key or SP_KEYS[name], "sp", name, n_eac, n_sp), now)


def test_a_flood_of_challenges_keeps_no_state_and_a_real_login_still_works():
    eac = make_eac()
    for i in range(100_000):
        n = eac.sp_challenge("web" if i % 2 else "mail", i / 1000)
        assert len(n) == CHALLENGE_LEN
    assert eac.spent_challenges() == 0
    assert eac.counters["eac_sp_challenge_issued"] == 100_000
    assert isinstance(login(eac, now=100.0), SpLogin)
    assert eac.spent_challenges() == 1 and eac.counters["eac_sp_login"] == 1
    # the same through the REST handler, and unknown SPs are refused and counted
    for _ in range(1000):
        assert handle("POST", "/eac/v1/sp/challenge", b'{"sp": "web"}', 100.0, eac)[0] == 200
        assert handle("POST", "/eac/v1/sp/challenge", b'{"sp": "evil"}', 100.0, eac)[0] == 401
    assert eac.counters["eac_sp_challenge_refused"] == 1000 and eac.spent_challenges() == 1


def test_forged_foreign_expired_and_reused_challenges_refused_and_counted():
    eac = make_eac(challenge_lifetime_s=30)
    for forged in (os.urandom(CHALLENGE_LEN), os.urandom(16), make_eac().sp_challenge("web", 0)):
        r = login(eac, nonce=forged)
        assert isinstance(r, Refusal) and r.reason == "unknown_challenge"
    n = eac.sp_challenge("web", 0.0)
    bad = bytearray(n)
    bad[EXPIRY_LAST_BYTE] ^= 1                                 # a later expiry, say: MAC breaks
    assert login(eac, nonce=bytes(bad)).reason == "unknown_challenge"
    assert login(eac, "mail", nonce=n).reason == "unknown_challenge"      # bound to "web"
    assert eac.counters["eac_sp_challenge_invalid"] == 5
    assert login(eac, nonce=n, now=30.0).reason == "unknown_challenge"
    assert eac.counters["eac_sp_challenge_expired"] == 1
    assert isinstance(login(eac, nonce=n, now=29.9), SpLogin)
    assert login(eac, nonce=n, now=29.95).reason == "unknown_challenge"
    assert eac.counters["eac_sp_challenge_reused"] == 1


def test_a_failed_proof_does_not_spend_the_challenge():
    """Someone who sees an SP's challenge cannot void it with a bogus login first."""
    eac = make_eac()
    n = eac.sp_challenge("web", 0.0)
    assert login(eac, nonce=n, key=os.urandom(32)).reason == "bad_sp_proof"
    assert eac.counters["eac_sp_login_bad_proof"] == 1 and eac.spent_challenges() == 0
    assert isinstance(login(eac, nonce=n), SpLogin)


def test_spent_table_bounded_per_sp_and_in_total_expired_dropped_first():
    eac = make_eac(challenge_lifetime_s=30, max_spent=3, max_spent_per_sp=2)
    assert all(isinstance(login(eac, "web", now=t), SpLogin) for t in (0.0, 1.0))
    full = login(eac, "web", now=2.0)
    assert full.reason == "challenge_table_full" and "retry later" in full.detail
    assert isinstance(login(eac, "mail", now=2.0), SpLogin)
    assert login(eac, "mail", now=3.0).reason == "challenge_table_full"      # total of 3
    assert eac.counters["eac_sp_challenge_table_full"] == 2 and eac.spent_challenges() == 3
    # the first web challenge expires at 30: dropped before the bound is checked
    assert isinstance(login(eac, "web", now=30.5), SpLogin)
    assert eac.counters["eac_sp_challenge_spent_expired"] == 1
    assert eac.spent_challenges() == 3
    # the REST API says so with 503 and the reason
    n = handle("POST", "/eac/v1/sp/challenge", b'{"sp": "web"}', 30.6, eac)[1]["nonce_eac"]
    n_sp = os.urandom(16)
    body = {"sp": "web", "nonce_eac": n, "nonce_sp": n_sp.hex(),
            "proof": sp_proof(SP_KEYS["web"], "sp", "web", bytes.fromhex(n), n_sp).hex()}
    status, out = handle("POST", "/eac/v1/sp/login", json.dumps(body).encode(), 30.6, eac)
    assert status == 503 and out["error"] == "challenge_table_full"
