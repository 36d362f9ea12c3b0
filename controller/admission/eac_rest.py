"""The EAC's service-provider REST API (X.1124 §8.2 SP login, §8.4 key inquiry), pure.

The Ryu shell hands each HTTP request under /eac/v1/ to ``handle`` and sends back the
(status, JSON) it returns; nothing here touches sockets. Requests come from the network, so
every malformed body (bad JSON, wrong types, unknown fields, oversize) is a 400 with a
reason, never an exception.

Binary values travel as lowercase hex. Endpoints:

  POST /eac/v1/sp/challenge {"sp"}                          -> {"nonce_eac"}
  POST /eac/v1/sp/login {"sp","nonce_eac","nonce_sp","proof"}
       -> {"iac_id","expires","lifetime_s","eac_proof"}
  POST /eac/v1/inquiry {"iac_id","isr_id","service","nonce","mac"}
       -> {"key_sealed","expires","lifetime_s","isr_id","sp","service","identity","group","mac"}

The inquiry is authenticated by ``mac`` = HMAC-SHA256 under the SP session key of this
login over (iac_id, isr_id, service, nonce), see ``inquiry_mac``. The answer carries its own
MAC over the request nonce and every answer field (``answer_mac``), so the SP knows the
answer is fresh and that nobody changed the identity or group on the way; the derived key
itself is sealed with AES-GCM (``eac.seal_grant``). A replayed inquiry yields only a sealed
key that only the SP can open, so no timestamp (and no clock agreement) is needed.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

from .eac import NONCE_LEN, Eac, Grant, Refusal, open_grant, seal_grant

PREFIX = "/eac/v1"
MAX_BODY = 4096
MAX_STR = 128
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ID_RE = re.compile(r"^(isr|iac)-[0-9a-f]{8,64}$")
HEX_RE = re.compile(r"^(?:[0-9a-fA-F]{2})+$")

# Refusal reason -> HTTP status (401 who-are-you, 403 not allowed, 404 unknown SS, 410 expired).
STATUS = {
    "unknown_sp": 401, "bad_sp_proof": 401, "unknown_challenge": 401, "unknown_iac_id": 401,
    "bad_request_mac": 401,
    "sp_not_entitled": 403, "ss_not_entitled": 403, "no_keys": 403,
    "unknown_isr_id": 404,
    "expired_iac_id": 410, "expired_isr_id": 410,
    "challenge_table_full": 503,
}

Reply = tuple[int, dict]


class BadRequest(ValueError):
    """A request we refuse with 400; the message is the reason sent back."""


# --- MACs shared with SP implementations (sp_demo uses these) ---------------------------------

def inquiry_mac(session_key: bytes, iac_id: str, isr_id: str, service: str, nonce: str) -> str:
    """The SP's authenticator of an inquiry (hex HMAC-SHA256 under the SP session key)."""
    msg = "\x00".join(["x1124-inquiry-v1", iac_id, isr_id, service, nonce]).encode()
    return hmac.new(session_key, msg, hashlib.sha256).hexdigest()


ANSWER_FIELDS = ("key_sealed", "expires", "lifetime_s", "isr_id", "sp", "service", "identity",
                 "group")


def answer_mac(session_key: bytes, nonce: str, answer: dict) -> str:
    """The EAC's authenticator of an inquiry answer, bound to the request nonce."""
    parts = ["x1124-inquiry-answer-v1", nonce] + [repr(answer.get(k)) for k in ANSWER_FIELDS]
    return hmac.new(session_key, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()


def open_answer(session_key: bytes, iac_id: str, nonce: str, answer: dict) -> Grant | None:
    """SP side: check the answer's MAC and unseal the derived key; None if anything is off."""
    try:
        mac = answer.get("mac")
        if not isinstance(mac, str) or not hmac.compare_digest(
                mac, answer_mac(session_key, nonce, answer)):
            return None
        meta = Grant(b"", answer["expires"], answer["isr_id"], answer["identity"], answer["group"],
                     answer["sp"], answer["service"])
        key = open_grant(session_key, iac_id, meta, bytes.fromhex(answer["key_sealed"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if key is None:
        return None
    return Grant(key, meta.expires, meta.isr_id, meta.identity, meta.group, meta.sp_name,
                 meta.service)


# --- request handling --------------------------------------------------------------------------

def handle(method: str, path: str, body: bytes, now: float, eac: Eac) -> Reply:
    """One HTTP request to the EAC's SP API -> (HTTP status, JSON object). Never raises."""
    try:
        route = ROUTES.get(path.split("?", 1)[0].rstrip("/") if isinstance(path, str) else "")
        if route is None:
            return 404, {"error": "not_found", "detail": f"no EAC resource {path!r}"}
        if method != "POST":
            return 405, {"error": "method_not_allowed", "detail": "use POST"}
        fields, fn = route
        req = _parse(body, fields)
        return fn(req, now, eac)
    except BadRequest as exc:
        return 400, {"error": "bad_request", "detail": str(exc)}
    except Exception as exc:  # a bug must not take the controller's REST server down
        return 500, {"error": "internal", "detail": type(exc).__name__}


def _refuse(r: Refusal) -> Reply:
    out = {"error": r.reason}
    if r.detail:
        out["detail"] = r.detail
    return STATUS.get(r.reason, 400), out


def _challenge(req: dict, now: float, eac: Eac) -> Reply:
    res = eac.sp_challenge(req["sp"], now)
    if isinstance(res, Refusal):
        return _refuse(res)
    return 200, {"nonce_eac": res.hex()}


def _login(req: dict, now: float, eac: Eac) -> Reply:
    res = eac.sp_authenticate(req["sp"], req["nonce_eac"], req["nonce_sp"], req["proof"], now)
    if isinstance(res, Refusal):
        return _refuse(res)
    return 200, {"iac_id": res.iac_id, "expires": res.expires,
                 "lifetime_s": max(0.0, res.expires - now), "eac_proof": res.eac_proof.hex()}


def _inquiry(req: dict, now: float, eac: Eac) -> Reply:
    sp = eac.store.get_sp(req["iac_id"])
    if sp is None:
        return _refuse(Refusal("unknown_iac_id"))
    expect = inquiry_mac(sp.session_key, req["iac_id"], req["isr_id"], req["service"], req["nonce"])
    if not hmac.compare_digest(expect, req["mac"].lower()):
        return _refuse(Refusal("bad_request_mac",
                               "inquiry MAC does not verify under this IAC-ID's key"))
    res = eac.inquire(req["iac_id"], req["isr_id"], req["service"], now)
    if isinstance(res, Refusal):
        return _refuse(res)
    answer: dict[str, Any] = {
        "key_sealed": seal_grant(sp.session_key, req["iac_id"], res).hex(),
        "expires": res.expires, "lifetime_s": max(0.0, res.expires - now),
        "isr_id": res.isr_id, "sp": res.sp_name, "service": res.service,
        "identity": res.identity, "group": res.group}
    answer["mac"] = answer_mac(sp.session_key, req["nonce"], answer)
    return 200, answer


# Field kinds: "name" (SP / service name), "id" (ISR-/IAC-ID), "nonce" (hex, >= 16 bytes),
# "mac" (hex, 32 bytes). Hex kinds are returned as bytes except where the handler wants text.
ROUTES = {
    f"{PREFIX}/sp/challenge": ({"sp": "name"}, _challenge),
    f"{PREFIX}/sp/login": ({"sp": "name", "nonce_eac": "nonce", "nonce_sp": "nonce",
                            "proof": "mac"}, _login),
    f"{PREFIX}/inquiry": ({"iac_id": "id", "isr_id": "id", "service": "name", "nonce": "nonce_text",
                           "mac": "mac_text"}, _inquiry),
}


def _parse(body: bytes, fields: dict[str, str]) -> dict:
    if not isinstance(body, (bytes, bytearray)):
        raise BadRequest("body is not bytes")
    if len(body) > MAX_BODY:
        raise BadRequest(f"body of {len(body)} bytes exceeds {MAX_BODY}")
    try:
        doc = json.loads(bytes(body).decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8") from None
    except ValueError as exc:
        raise BadRequest(f"body is not JSON: {exc.msg} at {exc.pos}") from None
    if not isinstance(doc, dict):
        raise BadRequest("body must be a JSON object")
    extra = sorted(set(doc) - set(fields))
    if extra:
        raise BadRequest(f"unexpected field(s): {', '.join(map(str, extra))}")
    out = {}
    for name, kind in fields.items():
        if name not in doc:
            raise BadRequest(f"missing field {name!r}")
        out[name] = _field(name, kind, doc[name])
    return out


def _field(name: str, kind: str, v: Any) -> Any:
    if not isinstance(v, str):
        raise BadRequest(f"{name}: must be a string, not {type(v).__name__}")
    if len(v) > MAX_STR:
        raise BadRequest(f"{name}: longer than {MAX_STR} characters")
    if kind == "name":
        if not NAME_RE.match(v):
            raise BadRequest(f"{name}: {v!r} is not a valid name")
        return v
    if kind == "id":
        if not ID_RE.match(v):
            raise BadRequest(f"{name}: {v!r} is not an ISR-/IAC-ID")
        return v
    if not HEX_RE.match(v):
        raise BadRequest(f"{name}: must be hex digits")
    if kind in ("nonce", "nonce_text"):
        if len(v) < 2 * NONCE_LEN:
            raise BadRequest(f"{name}: a nonce is at least {NONCE_LEN} bytes")
        return v.lower() if kind == "nonce_text" else bytes.fromhex(v)
    if len(v) != 64:
        raise BadRequest(f"{name}: a MAC is 32 bytes (64 hex digits)")
    return v.lower() if kind == "mac_text" else bytes.fromhex(v)
