"""CRSAP messages (X.1125 clause 9, Annex A element names) in one JSON encoding.

This module keeps the element names of X.1125 Annex A; the fields, their types and the JSON
encoding are this project's own (docs/crs.md, CRSAP). One envelope carries every message:

    {"crsap": "1.0", "type": "SCIReport", "sender": "h1", "key_id": "<isr-id>",
     "seq": 1764300000123, "ts": 1764300000.12, "body": {...}, "mac": "<64 hex>"}

`mac` is HMAC-SHA256, under the terminal's crs-report key (X.1124 purpose key), over the
canonical JSON (sorted keys, no spaces) of the envelope without `mac`: body, sequence number
and timestamp are all covered. The SCS signs its replies with the same per-terminal key.

Parsing is strict because the SCS takes input from terminals it does not trust: a size limit,
no duplicate keys, no NaN/Infinity, every object checked against the schema below (required
and typed fields, unknown keys rejected, bounded lists and strings). Anything else raises
`BadMessage(reason)`; nothing here raises another exception type on bad input.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

VERSION = "1.0"
MAX_SIZE = 16 * 1024          # bytes of one encoded message
MAX_STR = 256                 # characters of any string field
MAX_LIST = 64                 # elements of any list field
MAX_INT = 2 ** 63 - 1
DEFAULT_SKEW_S = 30.0         # accepted clock difference, both directions
HTTP_PATH = "/crsap/v1/messages"


class BadMessage(Exception):
    """A message that must be ignored; `reason` says why (for the counter and the log)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


# --- schema as data --------------------------------------------------------------------
# A spec is a dict: {"t": "str"|"int"|"num"|"bool"|"list"|"obj", ...options}.
# obj: "f": {name: (spec, required)}; list: "of": spec, "max": n;
# str: "re" (a regex the whole value must match) or "ipv4": True, "enum": [...];
# int/num: "min"/"max".

def _s(**kw: Any) -> dict[str, Any]:
    return {"t": "str", **kw}


def _i(lo: int = 0, hi: int = MAX_INT) -> dict[str, Any]:
    return {"t": "int", "min": lo, "max": hi}


def _n(lo: float = 0.0, hi: float = 1e12) -> dict[str, Any]:
    return {"t": "num", "min": lo, "max": hi}


def _b() -> dict[str, Any]:
    return {"t": "bool"}


def _obj(**fields: tuple[dict[str, Any], bool]) -> dict[str, Any]:
    return {"t": "obj", "f": fields}


def _list(of: dict[str, Any], hi: int = MAX_LIST) -> dict[str, Any]:
    return {"t": "list", "of": of, "max": hi}


REQ, OPT = True, False
ID_RE = r"[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}"
LEVELS = ["COMPLIANT", "VULNERABLE", "INFECTED", "UNKNOWN"]

SCI = _obj(
    os=(_obj(name=(_s(), REQ), patch_level=(_i(), REQ)), REQ),
    antivirus=(_obj(engine=(_s(), REQ), signature_version=(_i(), REQ)), REQ),
    agent_version=(_s(re=r"\d{1,6}(\.\d{1,6}){0,3}"), REQ),
    firewall=(_b(), REQ),
    threats=(_list(_obj(name=(_s(), REQ), count=(_i(), REQ), cleaned=(_b(), REQ),
                        detected_at=(_n(), OPT))), REQ),
    attackers=(_list(_obj(source=(_s(ipv4=True), REQ), threat=(_s(), OPT),
                          count=(_i(), OPT), last_seen=(_n(), OPT))), REQ),
)

INSTALL = _obj(patch_level=(_i(), OPT), signature_version=(_i(), OPT),
               agent_version=(_s(re=r"\d{1,6}(\.\d{1,6}){0,3}"), OPT), clean=(_b(), OPT),
               firewall=(_b(), OPT))

UPDATE = _obj(id=(_s(re=ID_RE), REQ), item=(_s(re=ID_RE), REQ), url=(_s(re=r"https?://\S+"), REQ),
              install=(INSTALL, REQ))

BODIES: dict[str, dict[str, Any]] = {
    # SCS/NAC -> SCA: discovery (11.1); the agent answers with SCAProbeResponse.
    "SCAProbeRequest": _obj(scs_url=(_s(re=r"https?://\S+"), OPT),
                            report_interval_s=(_n(0.1, 86400), OPT),
                            nonce=(_s(re=r"[0-9A-Za-z_-]{1,64}"), REQ)),
    "SCAProbeResponse": _obj(ms_id=(_s(re=ID_RE), REQ), sca_version=(_s(), REQ),
                             nonce=(_s(re=r"[0-9A-Za-z_-]{1,64}"), REQ)),
    # MS attach (11.2 step 1); sent by the SCA at start (the NAC's report is `SCS.connect`).
    "MSConnectReport": _obj(ms_id=(_s(re=ID_RE), REQ), ip=(_s(ipv4=True), OPT),
                            mac=(_s(re=r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}"), OPT),
                            sca_version=(_s(), OPT)),
    "SCIReport": _obj(ms_id=(_s(re=ID_RE), REQ), sci=(SCI, REQ)),
    "SCIResponse": _obj(ms_id=(_s(re=ID_RE), REQ), level=(_s(enum=LEVELS), REQ),
                        actions=(_list(_s(re=r"[a-z_]{1,32}")), REQ),
                        scope=(_s(enum=["none", "group", "all"]), OPT),
                        reason=(_s(), OPT), policy_version=(_i(), REQ),
                        report_interval_s=(_n(0.1, 86400), OPT), update=(UPDATE, OPT)),
    # SCS -> NAC/ASC control delivery (11.4) and its acknowledgement.
    "Control": _obj(ms_id=(_s(re=ID_RE), REQ), policy_version=(_i(), REQ),
                    level=(_s(enum=LEVELS), REQ), actions=(_list(_s(re=r"[a-z_]{1,32}")), REQ)),
    "ControlAck": _obj(ms_id=(_s(re=ID_RE), REQ), policy_version=(_i(), REQ),
                       result=(_s(enum=["ok", "failed"]), REQ)),
    "UpdateCommand": _obj(ms_id=(_s(re=ID_RE), REQ), update=(UPDATE, REQ)),
    "Leave": _obj(ms_id=(_s(re=ID_RE), REQ), reason=(_s(), OPT)),
    # SCS <-> SCS roaming (13.3), signed with the two domains' peer key (crs/roaming.py):
    # the visited SCS asks about the identity its NAC authenticated; the peer answers.
    "RoamQuery": _obj(receiver=(_s(re=ID_RE), REQ), ms_id=(_s(re=ID_RE), REQ),
                      nonce=(_s(re=r"[0-9a-f]{32}"), REQ)),
    "RoamTransfer": _obj(receiver=(_s(re=ID_RE), REQ), ms_id=(_s(re=ID_RE), REQ),
                         nonce=(_s(re=r"[0-9a-f]{32}"), REQ), known=(_b(), REQ),
                         level=(_s(enum=LEVELS), OPT), reason=(_s(), OPT),
                         quarantine=(_b(), OPT), online=(_b(), OPT),
                         last_report=(_n(), OPT), left_at=(_n(), OPT), sci=(SCI, OPT)),
}

ENVELOPE = _obj(
    crsap=(_s(enum=[VERSION]), REQ),
    type=(_s(enum=sorted(BODIES)), REQ),
    sender=(_s(re=ID_RE), REQ),
    key_id=(_s(re=ID_RE), OPT),
    seq=(_i(), REQ),
    ts=(_n(), REQ),
    body=({"t": "any_obj"}, REQ),
    mac=(_s(re=r"[0-9a-f]{64}"), REQ),
)


def check(value: Any, spec: dict[str, Any], where: str = "") -> None:
    """Raise BadMessage unless `value` fits `spec`; `where` names the path in the reason."""
    checker = _COMPILED.get(id(spec))
    if checker is None or checker[0] is not spec:
        checker = _COMPILED[id(spec)] = (spec, _compile(spec))
    checker[1](value, (None, where) if where else None)


_COMPILED: dict[int, tuple[dict[str, Any], Any]] = {}
_ABSENT = object()


def _compile(spec: dict[str, Any]) -> Any:
    """A function doing what `_check(value, spec, path)` does, with the spec's branches
    taken once, here, instead of at every value (the report path checks every message).
    Same refusals, same reasons: a unit test holds the two to agree."""
    t = spec["t"]
    if t == "any_obj":
        def any_obj(v: Any, path: Any) -> None:
            if not isinstance(v, dict):
                raise BadMessage(f"{_name(path)}: expected an object")
        return any_obj
    if t == "obj":
        fields = [(k, _compile(sub), required) for k, (sub, required) in spec["f"].items()]
        names = frozenset(spec["f"])

        def obj(v: Any, path: Any) -> None:
            if not isinstance(v, dict):
                raise BadMessage(f"{_name(path)}: expected an object")
            if not names.issuperset(v):
                for k in v:
                    if k not in names:
                        raise BadMessage(f"{_name((path, str(k)))}: unknown key")
            for k, sub, required in fields:
                x = v.get(k, _ABSENT)
                if x is _ABSENT:
                    if required:
                        raise BadMessage(f"{_name((path, k))}: missing")
                    continue
                sub(x, (path, k))
        return obj
    if t == "list":
        of, hi = _compile(spec["of"]), spec["max"]

        def lst(v: Any, path: Any) -> None:
            if not isinstance(v, list):
                raise BadMessage(f"{_name(path)}: expected a list")
            if len(v) > hi:
                raise BadMessage(f"{_name(path)}: more than {hi} elements")
            for i, x in enumerate(v):
                of(x, (path, i))
        return lst
    if t in ("str", "int", "num", "bool"):
        def leaf(v: Any, path: Any) -> None:
            _check(v, spec, path)
        if t == "bool":
            def boolean(v: Any, path: Any) -> None:
                if v is not True and v is not False:
                    raise BadMessage(f"{_name(path)}: expected true or false")
            return boolean
        if t == "int":
            lo, hi = spec["min"], spec["max"]

            def integer(v: Any, path: Any) -> None:
                if type(v) is not int or not lo <= v <= hi:
                    leaf(v, path)       # (a subclass of int, or out of range: says why)
            return integer
        if t == "str" and not spec.get("ipv4"):
            enum = spec.get("enum")
            rx = _regex(spec["re"]).fullmatch if "re" in spec else None

            def string(v: Any, path: Any) -> None:
                if type(v) is not str or len(v) > MAX_STR or \
                        (enum is not None and v not in enum) or (rx is not None and not rx(v)):
                    leaf(v, path)
            return string
        return leaf
    raise AssertionError(f"unknown spec type {t}")     # pragma: no cover - a schema bug


def _name(path: Any) -> str:
    """The dotted name of a path (parent, key) built while checking: formatted only for
    a refusal, never for a value that fits. An int key is a list index."""
    parts = []
    while path is not None:
        path, key = path
        parts.append(key)
    out = ""
    for key in reversed(parts):
        if isinstance(key, int):
            out = f"{out or '<message>'}[{key}]"
        else:
            out = f"{out}.{key}" if out else key
    return out or "<message>"


def _check(value: Any, spec: dict[str, Any], path: Any) -> None:
    t = spec["t"]
    if t in ("obj", "any_obj"):
        if not isinstance(value, dict):
            raise BadMessage(f"{_name(path)}: expected an object")
        if t == "any_obj":
            return
        fields = spec["f"]
        for k in value:
            if k not in fields:
                raise BadMessage(f"{_name((path, str(k)))}: unknown key")
        for k, (sub, required) in fields.items():
            if k not in value:
                if required:
                    raise BadMessage(f"{_name((path, k))}: missing")
                continue
            _check(value[k], sub, (path, k))
    elif t == "list":
        if not isinstance(value, list):
            raise BadMessage(f"{_name(path)}: expected a list")
        if len(value) > spec["max"]:
            raise BadMessage(f"{_name(path)}: more than {spec['max']} elements")
        of = spec["of"]
        for i, v in enumerate(value):
            _check(v, of, (path, i))
    elif t == "str":
        if not isinstance(value, str):
            raise BadMessage(f"{_name(path)}: expected a string")
        if len(value) > MAX_STR:
            raise BadMessage(f"{_name(path)}: longer than {MAX_STR} characters")
        if "enum" in spec and value not in spec["enum"]:
            raise BadMessage(f"{_name(path)}: {value[:40]!r} not one of "
                             f"{', '.join(spec['enum'])}")
        if "re" in spec and not _regex(spec["re"]).fullmatch(value):
            raise BadMessage(f"{_name(path)}: {value[:40]!r} has a bad format")
        if spec.get("ipv4"):
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                raise BadMessage(f"{_name(path)}: {value[:40]!r} is not an IPv4 address") \
                    from None
    elif t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadMessage(f"{_name(path)}: expected an integer")
        if not spec["min"] <= value <= spec["max"]:
            raise BadMessage(f"{_name(path)}: {value} out of range")
    elif t == "num":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadMessage(f"{_name(path)}: expected a number")
        if not math.isfinite(value) or not spec["min"] <= value <= spec["max"]:
            raise BadMessage(f"{_name(path)}: {value} out of range")
    elif t == "bool":
        if not isinstance(value, bool):
            raise BadMessage(f"{_name(path)}: expected true or false")
    else:  # pragma: no cover - a bug in the schema itself
        raise AssertionError(f"unknown spec type {t}")


_REGEX: dict[str, re.Pattern[str]] = {}


def _regex(pattern: str) -> re.Pattern[str]:
    rx = _REGEX.get(pattern)
    if rx is None:
        rx = _REGEX[pattern] = re.compile(pattern)
    return rx


# --- the message -----------------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    """A decoded, schema-valid CRSAP message (not yet authenticated: see `verify`)."""

    type: str
    sender: str
    seq: int
    ts: float
    body: dict[str, Any]
    mac: str = ""
    key_id: str | None = None
    version: str = VERSION
    # the exact bytes the MAC covers, when the message arrived in canonical form (what our
    # agents send): verifying then needs no second encoding of the message
    signed: bytes | None = field(default=None, compare=False, repr=False)

    def signed_part(self) -> dict[str, Any]:
        out: dict[str, Any] = {"crsap": self.version, "type": self.type, "sender": self.sender,
                               "seq": self.seq, "ts": self.ts, "body": self.body}
        if self.key_id is not None:
            out["key_id"] = self.key_id
        return out


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                              allow_nan=False)
_ESCAPE = json.encoder.encode_basestring_ascii


def canonical(obj: Any) -> bytes:
    """The byte string that is signed: sorted keys, no whitespace, ASCII only."""
    return _CANONICAL.encode(obj).encode("ascii")


def _envelope(msg: Message, mac: str | None) -> bytes:
    return _envelope_from(msg, _CANONICAL.encode(msg.body), mac)


def _envelope_from(msg: Message, body_json: str, mac: str | None) -> bytes:
    """canonical(msg.signed_part(), plus `mac` when given), built around one encoding of
    the body: the envelope's keys are fixed, so their sorted order is too (body, crsap,
    key_id, mac, sender, seq, ts, type). Signing and sending a message then encode its
    body once, not twice."""
    enc = _scalar
    parts = ['{"body":', body_json, ',"crsap":', enc(msg.version)]
    if msg.key_id is not None:
        parts += [',"key_id":', enc(msg.key_id)]
    if mac is not None:
        parts += [',"mac":', enc(mac)]
    parts += [',"sender":', enc(msg.sender), ',"seq":', enc(msg.seq), ',"ts":', enc(msg.ts),
              ',"type":', enc(msg.type), "}"]
    return "".join(parts).encode("ascii")


def _scalar(value: Any) -> str:
    """_CANONICAL.encode(value) for the envelope's fields, without the encoder's set-up
    for numbers: a str is escaped by the same C function, an int or a finite float is its
    repr (what the encoder writes); anything else goes through the encoder."""
    kind = type(value)
    if kind is str:
        return _ESCAPE(value)
    if kind is int or (kind is float and math.isfinite(value)):
        return repr(value)
    return _CANONICAL.encode(value)


def compute_mac(msg: Message, key: bytes) -> str:
    signed = msg.signed if msg.signed is not None else _envelope(msg, None)
    return hmac.digest(key, signed, "sha256").hex()


def encode(type_: str, sender: str, seq: int, ts: float, body: dict[str, Any], key: bytes,
           key_id: str | None = None, check: bool = True) -> bytes:
    """Build, check and sign one message. Raises BadMessage if our own data is malformed.
    `check=False` skips the schema check for a body the caller built from checked values
    (the SCS's answer on the report path: the receiver checks it anyway)."""
    msg = Message(type=type_, sender=sender, seq=seq, ts=ts, body=body, key_id=key_id)
    if check:
        _check_message(msg.signed_part() | {"mac": "0" * 64})
    return encode_body(msg, _CANONICAL.encode(body), key)


def body_json(body: dict[str, Any]) -> str:
    """The canonical encoding of a body, for `encode_body` (a caller that sends the same
    body again and again encodes it once)."""
    return _CANONICAL.encode(body)


def encode_body(msg: Message, body_json: str, key: bytes) -> bytes:
    """Sign and encode `msg` whose body is already encoded (`body_json`, canonical)."""
    mac = hmac.digest(key, _envelope_from(msg, body_json, None), "sha256").hex()
    raw = _envelope_from(msg, body_json, mac)
    if len(raw) > MAX_SIZE:
        raise BadMessage(f"message is {len(raw)} bytes, limit {MAX_SIZE}")
    return raw


# Bodies already seen in authenticated canonical messages, per sender: (type, the body's
# canonical bytes, the body parsed from them). A steady terminal sends the same body again
# and again; only its envelope's sequence number, timestamp and MAC change.
Bodies = dict[str, tuple[str, bytes, dict[str, Any]]]
_BODY_AT = len(b'{"body":')
_TAIL_AT = b',"crsap":"' + VERSION.encode() + b'"'
_ID = rb"[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}"
_TAIL = re.compile(re.escape(_TAIL_AT) + rb'(?:,"key_id":"(' + _ID + rb')")?,"mac":"([0-9a-f]{64})"'
                   rb',"sender":"(' + _ID + rb')","seq":(0|[1-9][0-9]{0,18}),'
                   rb'"ts":([0-9][0-9.eE+-]{0,31}),"type":"([A-Za-z]{1,32})"\}\Z')


def remember_body(msg: Message, raw: bytes, bodies: Bodies, limit: int = 1 << 18) -> None:
    """After `msg` (decoded from `raw`) was authenticated: keep its body for `decode`, when
    it came canonical. At most `limit` senders (then it starts again)."""
    if msg.signed is None:
        return
    i = raw.rfind(_TAIL_AT)     # the envelope's: nothing after the body can hold it
    if i < _BODY_AT:
        return
    if len(bodies) >= limit and msg.sender not in bodies:
        bodies.clear()
    bodies[msg.sender] = (msg.type, raw[_BODY_AT:i], msg.body)


def _known_body(raw: bytes, bodies: Bodies) -> Message | None:
    """`raw` as a Message when it is canonical and its body is byte for byte the body its
    sender last sent in an authenticated message of the same type: then only the envelope
    is new, and it is checked here field by field (the strict pattern, the number ranges,
    the timestamp written as the encoder writes it). None: the full parse decides."""
    if not raw.startswith(b'{"body":'):
        return None
    i = raw.rfind(_TAIL_AT)
    m = _TAIL.match(raw, i) if i >= _BODY_AT else None
    if m is None:
        return None
    sender, type_ = m[3].decode("ascii"), m[6].decode("ascii")
    known = bodies.get(sender)
    if known is None or known[0] != type_ or known[1] != raw[_BODY_AT:i] \
            or type_ not in BODIES:
        return None
    seq, text = int(m[4]), m[5].decode("ascii")
    try:
        ts: float = int(text) if text.isdigit() else float(text)
    except ValueError:
        return None
    if repr(ts) != text or not 0 <= ts <= 1e12 or seq > MAX_INT:
        return None
    key_id = m[1].decode("ascii") if m[1] is not None else None
    member = (m.start(2) - len(b',"mac":"'), m.end(2) + 1)
    return Message(type=type_, sender=sender, seq=seq, ts=ts, body=known[2],
                   mac=m[2].decode("ascii"), key_id=key_id, version=VERSION,
                   signed=raw[:member[0]] + raw[member[1]:])


def decode(raw: bytes, bodies: Bodies | None = None) -> Message:
    """Parse and schema-check one message. Raises BadMessage(reason) on any problem.
    `bodies` (see `remember_body`): a message whose body its sender sent before is
    decoded by checking its envelope alone (a unit test holds the result equal)."""
    if not isinstance(raw, (bytes, bytearray)):
        raise BadMessage("not bytes")
    if len(raw) > MAX_SIZE:
        raise BadMessage(f"message is {len(raw)} bytes, limit {MAX_SIZE}")
    raw = bytes(raw)
    if bodies:
        known = _known_body(raw, bodies)
        if known is not None:
            return known
    fast = _canonical_parts(raw)
    if fast is not None:
        data, signed = fast
    else:
        signed = None
        try:
            text = raw.decode("utf-8")
            data = json.loads(text, object_pairs_hook=_no_duplicates,
                              parse_constant=_no_constant)
        except BadMessage:
            raise
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise BadMessage(f"not JSON: {str(exc)[:80]}") from None
    _check_message(data)
    return Message(type=data["type"], sender=data["sender"], seq=data["seq"],
                   ts=data["ts"], body=data["body"], mac=data["mac"],
                   key_id=data.get("key_id"), version=data["crsap"], signed=signed)


def _canonical_parts(raw: bytes) -> tuple[dict[str, Any], bytes] | None:
    """(parsed message, the bytes its MAC covers) when `raw` is exactly the canonical
    encoding of what it parses to, else None (the strict parser then decides).

    Canonical bytes can hold no duplicate key (the encoding of the parsed object would
    lose one), no NaN or Infinity (the encoder refuses them), no whitespace and no
    non-ASCII byte, so the plain C parser is enough; and the signed bytes are `raw` less
    its top-level `"mac"` member, which is the last one in the text: after it come only
    sender, seq, ts and type, whose values cannot hold an unescaped quote."""
    try:
        data = json.loads(raw.decode("ascii"))     # (canonical is ASCII)
        if type(data) is not dict or type(data.get("mac")) is not str:
            return None
        if _CANONICAL.encode(data).encode("ascii") != raw:
            return None
        member = b',"mac":' + _CANONICAL.encode(data["mac"]).encode("ascii")
    except (ValueError, TypeError, RecursionError):
        return None
    i = raw.rfind(member)
    if i < 0:
        return None
    return data, raw[:i] + raw[i + len(member):]


def _check_message(data: Any) -> None:
    check(data, ENVELOPE)
    check(data["body"], BODIES[data["type"]], "body")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise BadMessage(f"duplicate key {k[:40]!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise BadMessage(f"{name} is not allowed")


# --- authentication and replay ---------------------------------------------------------

@dataclass
class ReplayState:
    """Highest accepted sequence number per sender: each new message must exceed it.

    Senders use a time-based counter (milliseconds since the epoch, and +1 if that does not
    advance), so numbers keep increasing across restarts without stored state."""

    last_seq: dict[str, int] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)   # senders accepted since last stored

    def forget(self, sender: str) -> None:
        self.last_seq.pop(sender, None)


def verify(msg: Message, key: bytes | None, replay: ReplayState, now: float,
           skew_s: float = DEFAULT_SKEW_S) -> None:
    """Authenticate `msg`, then record its sequence number. Raises BadMessage (and records
    nothing) on an unknown key, a bad MAC, a replayed/old sequence number or a timestamp
    more than `skew_s` away from `now` (stale or from the future)."""
    if not key:
        raise BadMessage(f"no key for sender {msg.sender!r}")
    if not hmac.compare_digest(compute_mac(msg, key), msg.mac):
        raise BadMessage("bad MAC")
    if msg.ts < now - skew_s:
        raise BadMessage(f"stale timestamp ({now - msg.ts:.1f} s old)")
    if msg.ts > now + skew_s:
        raise BadMessage(f"timestamp {msg.ts - now:.1f} s in the future")
    last = replay.last_seq.get(msg.sender)
    if last is not None and msg.seq <= last:
        raise BadMessage(f"replayed or old sequence number {msg.seq} (last {last})")
    replay.last_seq[msg.sender] = msg.seq
    replay.dirty.add(msg.sender)


def next_seq(last: int | None, now: float) -> int:
    """A sequence number above `last`, based on the clock so that restarts keep it rising."""
    return max((last or 0) + 1, int(now * 1000))
