"""Subscriber and service-provider credentials (config/credentials.yaml), validated on load.

EAP-PSK subscribers are stored as AK/KDK (RFC 4764 §3.1, one-way from the PSK), so the PSK
itself never sits on the controller. That is all it buys: AK and KDK are everything an
EAP-PSK server needs, so whoever reads this file can impersonate the server to every peer
(MAC_S) and every peer to the server (MAC_P), and derive their session keys (TEK, MSK, EMSK
from KDK and the RAND_P sent in clear). The SP keys log in as any SP, and a template's
master secret gives every template terminal's PSK. The file must be protected exactly like
the PSKs: the loader refuses one that group or others may read or write (0600 or stricter).
Legacy EAP-MD5 secrets must be recoverable (MD5 needs the cleartext), so they are Fernet
tokens under a key file kept outside the file (same rule). Templates cover many terminals
(c1t1..c3t8..) without listing them: their PSK is HMAC(master, identity), demo only.

The secrets shipped in config/credentials.yaml are public (they are in the repository). The
loader knows them by fingerprint (``DEMO_FINGERPRINTS``), whatever the file is called or its
comments say, and a controller accepts a file holding any of them only with ``demo: true``
in its own configuration (``load_credentials(path, demo=...)``, docs/authentication.md).
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from controller.config import ConfigError, Field, Validator, is_name, load_yaml, one_of

from .eap_psk import key_setup

HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")

# fingerprint() of each secret shipped in config/credentials.yaml (public, demo only).
DEMO_FINGERPRINTS = frozenset({
    "c78915b2ab4f09dedb662392d9a83f0aea48d5906e5e2c6f5dc6d52e967904d7",   # template cells
    "9fa292c1a4952cbd6bd123f6f959769adc78eb2bccb329f24a0c996ca1b52417",   # ops1 AK
    "68b556075425e48c7de05d1d4a642e937dcdce2738cf4938edc518e23fffa7bc",   # ops1 KDK
    "4c45f7fe475147945204b5ebdebd73643448f16d124faa0f4967dc827a02b1d3",   # SP web
    "f19c574ae6c933ed80c7474c447bb7cfc2101510119d19801e69a25f7cc72025",   # SP mail
    "27ddef7d2bb100eb0b0adcdbcb5e4c3be970c5bc1a179940911f75ed7791fd58",   # SP msg
    "8ff02ef2a2759344a3420c30da25ed05dc115aa342e4742f48259300a2c4032e",   # SP update
})


def fingerprint(secret: bytes) -> str:
    """SHA-256 fingerprint of a stored secret, to recognise the shipped demo ones."""
    return hashlib.sha256(b"crs-shipped-demo-secret-v1\x00" + secret).hexdigest()


def is_demo_secret(secret: bytes) -> bool:
    return fingerprint(secret) in DEMO_FINGERPRINTS


def private_file_problem(path: str | Path, what: str) -> str | None:
    """Why a secrets file is not private (group/others may read or change it), or None.

    A missing file is not this check's business (the loader reports it)."""
    try:
        mode = Path(path).stat().st_mode & 0o7777
    except OSError:
        return None
    loose = mode & 0o077
    if not loose:
        return None
    verbs = [v for bits, v in ((0o044, "read"), (0o022, "change")) if loose & bits] or ["reach"]
    return f"mode {mode:04o} lets group/others {' and '.join(verbs)} {what}; chmod 600 it"


def _hex_check(rx: re.Pattern, what: str):
    def check(v: str) -> str | None:
        return None if rx.match(v) else f"must be {what}"
    return check


def _regex_check(v: str) -> str | None:
    try:
        re.compile(v)
    except re.error as exc:
        return f"invalid regular expression: {exc}"
    return None


def _identity_pattern_check(v: str) -> str | None:
    return None if v.count("{host}") == 1 else "must contain '{host}' exactly once"


def hash_psk(psk_hex: str) -> tuple[str, str]:
    """Operator helper: 32-hex-digit PSK -> (AK hex, KDK hex) to put in credentials.yaml."""
    if not isinstance(psk_hex, str) or not HEX32.match(psk_hex.strip()):
        raise ValueError("the EAP-PSK key is exactly 32 hex digits (16 bytes)")
    ak, kdk = key_setup(bytes.fromhex(psk_hex.strip()))
    return ak.hex(), kdk.hex()


def template_psk(master: bytes, identity: str) -> bytes:
    """Demo-only PSK of a template terminal: HMAC-SHA256(master, identity), first 16 bytes."""
    return hmac.new(master, identity.encode(), hashlib.sha256).digest()[:16]


def sp_key_from_psk(psk_hex: str) -> str:
    """The SP's EAC credential (hex, 32 bytes) from an SP PSK; the SP computes the same."""
    if not isinstance(psk_hex, str) or not re.match(r"^([0-9a-fA-F]{2}){16,64}$", psk_hex):
        raise ValueError("the SP PSK is 32..128 hex digits")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"crs-x1124-sp-eac-v1",
                info=b"sp-eac-auth").derive(bytes.fromhex(psk_hex)).hex()


def encrypt_md5_secret(key_file: str | Path, secret: str) -> str:
    """Operator helper: Fernet token (text) of a legacy MD5 secret under the key file."""
    return Fernet(Path(key_file).read_bytes().strip()).encrypt(secret.encode()).decode()


def new_md5_key_file(path: str | Path) -> None:
    """Create a Fernet key file, mode 0600, refusing to overwrite an existing one."""
    p = Path(path)
    with open(p, "xb") as f:
        f.write(Fernet.generate_key() + b"\n")
    p.chmod(0o600)


SUBSCRIBER = {
    "identity": Field(str, required=True, doc="EAP identity (NAI)"),
    "group": Field(str, required=True, check=is_name),
    "method": Field(str, default="psk", check=one_of("psk", "md5")),
    "legacy": Field(bool, default=False, doc="allowed to use EAP-MD5"),
    "ak": Field(str, check=_hex_check(HEX32, "32 hex digits")),
    "kdk": Field(str, check=_hex_check(HEX32, "32 hex digits")),
    "md5_token": Field(str, doc="Fernet token of the MD5 secret"),
}
TEMPLATE = {
    "name": Field(str, required=True, check=is_name),
    "host_regex": Field(str, required=True, check=_regex_check),
    "identity": Field(str, required=True, check=_identity_pattern_check),
    "group": Field(str, required=True, doc="may use {host} and the regex's named groups"),
    "master_secret": Field(str, required=True, check=_hex_check(HEX64, "64 hex digits")),
    "demo_only": Field(bool, required=True),
}
SP = {
    "name": Field(str, required=True, check=is_name),
    "services": Field(list, required=True, items=Field(str, check=is_name)),
    "key": Field(str, required=True, check=_hex_check(HEX64, "64 hex digits")),
}
SCHEMA = {
    "server_identity": Field(str, default="crs-eac", doc="EAP-PSK ID_S"),
    "md5_key_file": Field(str, doc="Fernet key file for md5 tokens, relative to this file"),
    "subscribers": Field(list, default=[], items=SUBSCRIBER),
    "templates": Field(list, default=[], items=TEMPLATE),
    "service_providers": Field(list, default=[], items=SP),
}


@dataclass(frozen=True)
class Subscriber:
    identity: str
    group: str
    method: str = "psk"
    legacy: bool = False
    ak: bytes = b""
    kdk: bytes = b""
    md5_token: str = ""
    template: str = ""


@dataclass(frozen=True)
class ServiceProvider:
    name: str
    services: tuple[str, ...]
    key: bytes


@dataclass(frozen=True)
class Template:
    name: str
    host_regex: re.Pattern
    prefix: str
    suffix: str
    group: str
    master: bytes

    def match(self, identity: str) -> tuple[str, dict[str, str]] | None:
        if not (identity.startswith(self.prefix) and identity.endswith(self.suffix)):
            return None
        host = identity[len(self.prefix):len(identity) - len(self.suffix) or None]
        m = self.host_regex.fullmatch(host)
        return (host, {k: v for k, v in m.groupdict().items() if v is not None}) if m else None


MAX_DERIVED = 100_000    # template subscribers kept derived (bounded: identities are input)


@dataclass
class Credentials:
    """Lookups the authenticator and the EAC need; all keyed by identity / SP name."""

    server_identity: str = "crs-eac"
    subscribers: dict[str, Subscriber] = field(default_factory=dict)
    templates: list[Template] = field(default_factory=list)
    service_providers: dict[str, ServiceProvider] = field(default_factory=dict)
    fernet: Fernet | None = None
    demo_secrets: tuple[str, ...] = ()     # keys holding a shipped (public) demo secret
    # template subscribers already derived (the key derivation costs AES blocks each time)
    _derived: dict[str, Subscriber] = field(default_factory=dict, repr=False, compare=False)

    def subscriber(self, identity: str | bytes) -> Subscriber | None:
        """Explicit entry first, then the first matching template (PSK via HMAC(master, id))."""
        if isinstance(identity, bytes):
            try:
                identity = identity.decode()
            except UnicodeDecodeError:
                return None
        sub = self.subscribers.get(identity) or self._derived.get(identity)
        if sub is not None:
            return sub
        for t in self.templates:
            m = t.match(identity)
            if m is None:
                continue
            host, groups = m
            try:
                group = t.group.format(host=host, **groups)
            except (KeyError, IndexError, ValueError):
                return None
            ak, kdk = key_setup(template_psk(t.master, identity))
            sub = Subscriber(identity, group, "psk", False, ak, kdk, template=t.name)
            if len(self._derived) >= MAX_DERIVED:
                self._derived.pop(next(iter(self._derived)))     # oldest first
            self._derived[identity] = sub
            return sub
        return None

    def psk_keys(self, identity: str | bytes) -> tuple[bytes, bytes] | None:
        sub = self.subscriber(identity)
        if sub is None or sub.method != "psk":
            return None
        return sub.ak, sub.kdk

    def md5_secret(self, identity: str | bytes) -> bytes | None:
        """Decrypted legacy secret, or None (unknown, not legacy, or undecryptable)."""
        sub = self.subscriber(identity)
        if sub is None or not sub.legacy or not sub.md5_token or self.fernet is None:
            return None
        try:
            return self.fernet.decrypt(sub.md5_token.encode())
        except InvalidToken:
            return None

    def demo_psk(self, identity: str) -> bytes | None:
        """The PSK a template terminal must be configured with (demo setups only)."""
        for t in self.templates:
            if t.match(identity):
                return template_psk(t.master, identity)
        return None


def load_credentials(path: str | Path, demo: bool | None = None) -> Credentials:
    """Load and validate credentials.yaml; every problem is reported as FILE: KEY: PROBLEM.

    The file must be mode 0600 (it holds everything needed to impersonate the server and
    every peer). ``demo`` is the controller's ``demo:`` setting: with False, a file holding
    any shipped demo secret is refused; None (offline checks, test helpers) only loads."""
    path = Path(path)
    loose = private_file_problem(path, "the subscribers' keys")
    if loose:
        raise ConfigError([(str(path), "", loose)])
    v = Validator(str(path))
    doc = v.mapping(load_yaml(path), SCHEMA)
    demo_keys: list[str] = []
    creds = Credentials(server_identity=doc["server_identity"] or "crs-eac")
    has_md5 = False
    seen: set[str] = set()
    for i, s in enumerate(doc["subscribers"]):
        key = f"subscribers[{i}]"
        if not s or s.get("identity") is None:
            continue
        if s["identity"] in seen:
            v.problem(f"{key}.identity", f"duplicate identity {s['identity']!r}")
            continue
        seen.add(s["identity"])
        if s["method"] == "psk":
            if not s["ak"] or not s["kdk"] or not HEX32.match(s["ak"]) or not HEX32.match(s["kdk"]):
                v.problem(key, "method psk needs ak and kdk (use hash_psk)")
                continue
            ak, kdk = bytes.fromhex(s["ak"]), bytes.fromhex(s["kdk"])
            demo_keys += [f"{key}.{k}" for k, b in (("ak", ak), ("kdk", kdk)) if is_demo_secret(b)]
        else:
            ak = kdk = b""
            has_md5 = True
            if not s["legacy"]:
                v.problem(f"{key}.method", "md5 is allowed only for subscribers with legacy: true")
            if not s["md5_token"]:
                v.problem(key, "method md5 needs md5_token")
        creds.subscribers[s["identity"]] = Subscriber(
            s["identity"], s["group"], s["method"], s["legacy"], ak, kdk, s["md5_token"] or "")
    for i, t in enumerate(doc["templates"]):
        if not t or not t.get("identity") or not t.get("master_secret") or not t.get("host_regex"):
            continue
        if not t["demo_only"]:
            v.problem(f"templates[{i}].demo_only",
                      "template PSKs derive from a master secret in this file: demo only, set true")
        if _regex_check(t["host_regex"]) or _identity_pattern_check(t["identity"]):
            continue
        prefix, suffix = t["identity"].split("{host}")
        master = bytes.fromhex(t["master_secret"])
        if is_demo_secret(master):
            demo_keys.append(f"templates[{i}].master_secret")
        creds.templates.append(Template(t["name"], re.compile(t["host_regex"]), prefix, suffix,
                                        t["group"], master))
    for i, sp in enumerate(doc["service_providers"]):
        if not sp or not sp.get("key") or HEX64.match(sp["key"]) is None:
            continue
        if sp["name"] in creds.service_providers:
            v.problem(f"service_providers[{i}].name", f"duplicate service provider {sp['name']!r}")
        creds.service_providers[sp["name"]] = ServiceProvider(
            sp["name"], tuple(sp["services"]), bytes.fromhex(sp["key"]))
        if is_demo_secret(bytes.fromhex(sp["key"])):
            demo_keys.append(f"service_providers[{i}].key")
    if doc["md5_key_file"]:
        kf = Path(doc["md5_key_file"])
        kf = kf if kf.is_absolute() else path.parent / kf
        loose = private_file_problem(kf, "the key of the MD5 secrets") if has_md5 else None
        if loose:
            v.problem("md5_key_file", f"{kf}: {loose}")
        try:
            creds.fernet = Fernet(kf.read_bytes().strip())
        except OSError as exc:
            if has_md5:
                v.problem("md5_key_file", f"cannot read {kf}: {exc.strerror}")
        except ValueError:
            v.problem("md5_key_file", f"{kf} is not a Fernet key")
    elif has_md5:
        v.problem("md5_key_file", "md5 subscribers need md5_key_file")
    v.raise_if_any()
    if demo is False and demo_keys:
        raise ConfigError([(str(path), "", (
            f"holds shipped demo secrets ({', '.join(demo_keys)}), public in the repository: "
            "a controller accepts them only with `demo: true` in its configuration; "
            "replace them for real use"))])
    creds.demo_secrets = tuple(demo_keys)
    return creds


def validate_only(path: str | Path) -> list[str]:
    """For the offline config check: the problem lines, empty when the file is fine."""
    try:
        load_credentials(path)
    except ConfigError as exc:
        return str(exc).splitlines()
    return []


