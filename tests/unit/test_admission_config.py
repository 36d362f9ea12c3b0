"""credentials.yaml / authorization.yaml loading, helpers, and EAP-MD5."""
import hashlib
import hmac

import pytest
import yaml
from corekit import ROOT
from cryptography.fernet import Fernet

from controller.admission.authorization import load_authorization
from controller.admission.credentials import (
    encrypt_md5_secret,
    hash_psk,
    load_credentials,
    new_md5_key_file,
    sp_key_from_psk,
    template_psk,
)
from controller.admission.eap_md5 import Md5Server, md5_response
from controller.admission.eap_psk import key_setup
from controller.admission.eapol import EapCode, EapType, build_eap, parse_eap
from controller.config import ConfigError


def test_shipped_files_load_and_cover_terminals():
    creds = load_credentials(ROOT / "config/credentials.yaml")
    authz = load_authorization(ROOT / "config/authorization.yaml")
    for cell in (1, 2, 3):
        for t in range(1, 9):
            ident = f"c{cell}t{t}@crs.example"
            sub = creds.subscriber(ident)
            assert sub.group == f"cell{cell}" and sub.method == "psk"
            assert (sub.ak, sub.kdk) == key_setup(creds.demo_psk(ident))
            assert authz.allowed(sub.group)
    assert creds.subscriber("c200t1@crs.example").group == "cell200"
    assert creds.subscriber("x1@crs.example") is None and creds.subscriber("c1t1@other") is None
    assert set(creds.service_providers) == {"web", "mail", "msg", "update"}
    assert {(a.server, a.port) for a in authz.allowed("cell3")} >= {("web", 80)}
    assert not authz.entitled("cell3", "mail", "smtp") and authz.entitled("cell1", "mail", "smtp")
    assert len(authz.allowed("operators")) == 6 and authz.allowed("nobody") == []


def test_helpers():
    ak, kdk = hash_psk("00112233445566778899aabbccddeeff")
    expected = key_setup(bytes.fromhex("00112233445566778899aabbccddeeff"))
    assert (bytes.fromhex(ak), bytes.fromhex(kdk)) == expected
    with pytest.raises(ValueError):
        hash_psk("0011")
    assert template_psk(b"m", "a") == hmac.new(b"m", b"a", hashlib.sha256).digest()[:16]
    assert len(bytes.fromhex(sp_key_from_psk("00" * 16))) == 32


def write(tmp_path, doc, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc))
    p.chmod(0o600)          # the loader refuses credentials that group/others may read
    return p


def test_errors_name_file_key_and_problem(tmp_path):
    p = write(tmp_path, {
        "subscribers": [{"identity": "a", "group": "g", "ak": "zz"},
                        {"identity": "b", "group": "g", "method": "md5", "md5_token": "x"},
                        {"identity": "a", "group": "g", "ak": "00" * 16, "kdk": "00" * 16}],
        "templates": [{"name": "t", "host_regex": "(", "identity": "nohost", "group": "g",
                       "master_secret": "00" * 32, "demo_only": False}],
        "bogus": 1})
    with pytest.raises(ConfigError) as e:
        load_credentials(p)
    text = str(e.value)
    for needle in ("subscribers[0].ak: must be 32 hex digits",
                   "subscribers[1].method: md5 is allowed only",
                   "md5_key_file: md5 subscribers need", "subscribers[2].identity: duplicate",
                   "templates[0].host_regex: invalid regular expression",
                   "templates[0].identity: must contain",
                   "templates[0].demo_only", "bogus: unknown key"):
        assert f"{p}: {needle}" in text


def test_md5_subscriber_with_key_file(tmp_path):
    kf = tmp_path / "md5.key"
    new_md5_key_file(kf)
    assert kf.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        new_md5_key_file(kf)
    token = encrypt_md5_secret(kf, "s3cret")
    p = write(tmp_path, {"md5_key_file": "md5.key", "subscribers": [
        {"identity": "old", "group": "legacy", "method": "md5", "legacy": True,
         "md5_token": token}]})
    creds = load_credentials(p)
    assert creds.md5_secret("old") == b"s3cret" and creds.psk_keys("old") is None
    creds.fernet = Fernet(Fernet.generate_key())           # wrong key: no secret, no crash
    assert creds.md5_secret("old") is None


def test_authorization_errors(tmp_path):
    http = {"proto": "sctp", "port": 99999}
    p = write(tmp_path, {"servers": {"web": {"services": {"http": http}}},
                         "groups": {"g": ["web/ftp"]}})
    with pytest.raises(ConfigError) as e:
        load_authorization(p)
    text = str(e.value)
    assert "servers.web.services.http.proto" in text and "servers.web.services.http.port" in text
    assert "groups.g[0]: 'web/ftp' is not a server/service" in text


def test_md5_server():
    srv = Md5Server(b"pw", rng=lambda n: b"C" * n)
    req = parse_eap(srv.first(7))
    assert req.type == EapType.MD5_CHALLENGE and req.data == b"\x10" + b"C" * 16
    good = build_eap(EapCode.RESPONSE, 7, EapType.MD5_CHALLENGE,
                     b"\x10" + hashlib.md5(b"\x07pw" + b"C" * 16).digest())
    assert md5_response(7, b"pw", b"C" * 16) == hashlib.md5(b"\x07pw" + b"C" * 16).digest()
    assert srv.process(good).success
    stale = build_eap(EapCode.RESPONSE, 6, EapType.MD5_CHALLENGE, b"\x10" + bytes(16))
    assert not srv.process(stale).done
    assert not srv.process(b"\x02\x07\x00\x06\x04\x20").done      # Value-Size lies
    wrong = build_eap(EapCode.RESPONSE, 7, EapType.MD5_CHALLENGE, b"\x10" + bytes(16))
    r = srv.process(wrong)
    assert r.done and not r.success
