"""CRSAP encoding: schema, size limit, HMAC, replay and clock-skew checks, parser fuzzing."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.crs import messages as m

KEY = bytes(range(32))
NOW = 1_764_300_000.0


def sci(**over):
    base = {
        "os": {"name": "MobileOS", "patch_level": 12},
        "antivirus": {"engine": "1.0", "signature_version": 2041},
        "agent_version": "1.0.0", "firewall": True,
        "threats": [{"name": "Worm.Demo", "count": 1, "cleaned": False, "detected_at": NOW}],
        "attackers": [{"source": "10.0.1.3", "threat": "Worm.Demo", "count": 2,
                       "last_seen": NOW}],
    }
    base.update(over)
    return base


def report(seq=1, ts=NOW, key=KEY, sender="h1", body=None):
    body = body if body is not None else {"ms_id": sender, "sci": sci()}
    return m.encode("SCIReport", sender, seq, ts, body, key, key_id="isr-1")


def test_roundtrip_and_verify():
    msg = m.decode(report())
    assert msg.type == "SCIReport" and msg.sender == "h1" and msg.key_id == "isr-1"
    assert msg.body["sci"]["os"]["patch_level"] == 12
    state = m.ReplayState()
    m.verify(msg, KEY, state, NOW + 1)
    assert state.last_seq["h1"] == 1


def test_every_message_type_roundtrips():
    upd = {"id": "u1", "item": "sig-2041", "url": "http://10.0.100.1:8080/updates/sig-2041",
           "install": {"signature_version": 2041, "clean": True}}
    bodies = {
        "SCAProbeRequest": {"nonce": "abc", "scs_url": "http://10.0.100.254:8080"},
        "SCAProbeResponse": {"ms_id": "h1", "sca_version": "1.0.0", "nonce": "abc"},
        "MSConnectReport": {"ms_id": "h1", "ip": "10.0.1.1", "mac": "00:00:00:00:01:01"},
        "SCIReport": {"ms_id": "h1", "sci": sci()},
        "SCIResponse": {"ms_id": "h1", "level": "VULNERABLE", "actions": ["rate_limit"],
                        "policy_version": 3, "update": upd},
        "Control": {"ms_id": "h1", "policy_version": 3, "level": "INFECTED",
                    "actions": ["isolate"]},
        "ControlAck": {"ms_id": "h1", "policy_version": 3, "result": "ok"},
        "UpdateCommand": {"ms_id": "h1", "update": upd},
        "Leave": {"ms_id": "h1", "reason": "SIGTERM"},
        "RoamQuery": {"receiver": "home", "ms_id": "h1", "nonce": "0" * 32},
        "RoamTransfer": {"receiver": "visited", "ms_id": "h1", "nonce": "0" * 32,
                         "known": True, "level": "INFECTED", "quarantine": False,
                         "online": False, "last_report": NOW, "left_at": NOW, "sci": sci()},
    }
    assert set(bodies) == set(m.BODIES)
    for i, (t, b) in enumerate(bodies.items()):
        msg = m.decode(m.encode(t, "h1", i + 1, NOW, b, KEY))
        assert msg.type == t and msg.body == b


@pytest.mark.parametrize("mutate,reason", [
    (lambda d: d.update(crsap="2.0"), "crsap"),
    (lambda d: d.update(extra=1), "unknown key"),
    (lambda d: d["body"].update(extra=1), "body.extra: unknown key"),
    (lambda d: d["body"]["sci"]["os"].update(patch_level="12"), "expected an integer"),
    (lambda d: d["body"]["sci"]["os"].update(patch_level=True), "expected an integer"),
    (lambda d: d["body"]["sci"].pop("firewall"), "missing"),
    (lambda d: d["body"]["sci"]["attackers"][0].update(source="10.0.1.300"), "IPv4"),
    (lambda d: d["body"]["sci"].update(threats=[{"name": "x", "count": 1, "cleaned": False}] * 65),
     "more than 64"),
    (lambda d: d.update(seq=-1), "out of range"),
    (lambda d: d.update(type="Nope"), "type"),
    (lambda d: d.update(sender="a b"), "bad format"),
])
def test_schema_rejects(mutate, reason):
    data = json.loads(report())
    mutate(data)
    with pytest.raises(m.BadMessage) as err:
        m.decode(json.dumps(data).encode())
    assert reason in err.value.reason


def test_size_duplicates_nan_and_garbage():
    with pytest.raises(m.BadMessage, match="limit"):
        m.decode(b" " * (m.MAX_SIZE + 1))
    with pytest.raises(m.BadMessage, match="duplicate"):
        m.decode(b'{"type": "Leave", "type": "Leave"}')
    with pytest.raises(m.BadMessage, match="NaN"):
        m.decode(report().replace(b'"ts":1764300000.0', b'"ts":NaN'))
    with pytest.raises(m.BadMessage, match="out of range"):
        m.decode(report().replace(b'"ts":1764300000.0', b'"ts":1e999'))
    with pytest.raises(m.BadMessage, match="not JSON"):
        m.decode(b"\xff\xfe")
    with pytest.raises(m.BadMessage, match="not JSON"):
        m.decode(b"[" * 10000)
    with pytest.raises(m.BadMessage, match="expected an object"):
        m.decode(b"[]")


def test_bad_mac_wrong_key_and_tamper():
    state = m.ReplayState()
    with pytest.raises(m.BadMessage, match="bad MAC"):
        m.verify(m.decode(report(key=b"other-key")), KEY, state, NOW)
    tampered = report().replace(b'"patch_level":12', b'"patch_level":99')
    with pytest.raises(m.BadMessage, match="bad MAC"):
        m.verify(m.decode(tampered), KEY, state, NOW)
    with pytest.raises(m.BadMessage, match="no key"):
        m.verify(m.decode(report()), None, state, NOW)
    assert state.last_seq == {}  # rejections record nothing


def test_replay_and_old_sequence_rejected():
    state = m.ReplayState()
    m.verify(m.decode(report(seq=5)), KEY, state, NOW)
    for seq in (5, 4):
        with pytest.raises(m.BadMessage, match="sequence"):
            m.verify(m.decode(report(seq=seq)), KEY, state, NOW)
    m.verify(m.decode(report(seq=6)), KEY, state, NOW)
    # another sender has its own counter
    m.verify(m.decode(report(seq=1, sender="h2")), KEY, state, NOW)


def test_clock_skew_window():
    state = m.ReplayState()
    with pytest.raises(m.BadMessage, match="stale"):
        m.verify(m.decode(report(ts=NOW - 31)), KEY, state, NOW)
    with pytest.raises(m.BadMessage, match="future"):
        m.verify(m.decode(report(ts=NOW + 31)), KEY, state, NOW)
    m.verify(m.decode(report(ts=NOW - 29, seq=2)), KEY, state, NOW)


def test_encode_refuses_bad_body_and_next_seq_rises():
    with pytest.raises(m.BadMessage):
        m.encode("Leave", "h1", 1, NOW, {"ms_id": "h1", "bogus": 1}, KEY)
    assert m.next_seq(None, NOW) == int(NOW * 1000)
    assert m.next_seq(int(NOW * 1000) + 10, NOW) == int(NOW * 1000) + 11


# --- fuzzing ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                               max_size=4),
    max_leaves=6)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_only_badmessage(raw):
    try:
        m.decode(raw)
    except m.BadMessage as exc:
        assert exc.reason


@settings(max_examples=800, deadline=None)
@given(json_values)
def test_fuzz_random_json_only_badmessage(value):
    try:
        m.decode(json.dumps(value).encode())
    except m.BadMessage as exc:
        assert exc.reason


def _paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


VALID = json.loads(report())
PATHS = [p for p in _paths(VALID) if p != ("mac",)]


def _mutated(path: tuple, new) -> dict | None:
    """A signed report (parsed) with the field at `path` set to `new`; None if that is what
    it holds already."""
    data = json.loads(report())
    target = data
    for p in path[:-1]:
        target = target[p]
    if target[path[-1]] == new and type(target[path[-1]]) is type(new):
        return None
    target[path[-1]] = new
    return data


@settings(max_examples=800, deadline=None)
@given(st.sampled_from(PATHS), json_values)
def test_fuzz_mutated_valid_report_never_verifies(path, new):
    """Changing any one field of a signed report either fails the parser or the MAC."""
    data = _mutated(path, new)
    if data is None:
        return
    try:
        msg = m.decode(json.dumps(data).encode())
    except m.BadMessage:
        return
    with pytest.raises(m.BadMessage):
        m.verify(msg, KEY, m.ReplayState(), NOW)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 2 ** 40), st.floats(0, 1e10, allow_nan=False),
       st.integers(0, 10 ** 6), st.integers(0, 10 ** 6), st.booleans())
def test_fuzz_valid_reports_roundtrip(seq, ts, patch, sig, fw):
    body = {"ms_id": "h1", "sci": sci(os={"name": "X", "patch_level": patch},
                                      antivirus={"engine": "1", "signature_version": sig},
                                      firewall=fw)}
    msg = m.decode(m.encode("SCIReport", "h1", seq, ts, body, KEY))
    assert msg.body == body and msg.seq == seq
    m.verify(msg, KEY, m.ReplayState(), ts)


@given(body=st.dictionaries(st.text(max_size=8), st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.text(max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3), max_leaves=8),
    max_size=5),
    key_id=st.none() | st.text(max_size=10), seq=st.integers(0, 2**53),
    ts=st.floats(0, 4e9), sender=st.text(min_size=1, max_size=20))
@settings(max_examples=300, deadline=None)
def test_the_envelope_built_around_the_body_is_the_canonical_json(body, key_id, seq, ts,
                                                                  sender):
    """Signing encodes the body once and assembles the envelope by hand: byte for byte
    what canonical() of the whole envelope gives, with and without the MAC."""
    from controller.crs.messages import Message, _envelope, canonical
    msg = Message(type="SCIReport", sender=sender, seq=seq, ts=ts, body=body, key_id=key_id)
    assert _envelope(msg, None) == canonical(msg.signed_part())
    assert _envelope(msg, "ab" * 32) == canonical(msg.signed_part() | {"mac": "ab" * 32})


# --- the canonical fast path: a message in canonical form is parsed by the plain C parser
# and verified over its own bytes; anything else goes through the strict parser as before

def test_canonical_messages_take_the_fast_path_and_verify_over_their_own_bytes():
    from controller.crs.messages import _envelope
    raw = report()
    msg = m.decode(raw)
    assert msg.signed == _envelope(msg, None)      # the bytes the MAC covers, unchanged
    m.verify(msg, KEY, m.ReplayState(), NOW)
    # the same message with whitespace: the strict parser, the same verdict
    spaced = json.dumps(json.loads(raw)).encode()
    slow = m.decode(spaced)
    assert slow.signed is None and slow == msg
    m.verify(slow, KEY, m.ReplayState(), NOW)
    # a body holding its own "mac" key (MSConnectReport) still verifies
    body = {"ms_id": "h1", "mac": "00:00:00:00:01:01"}
    connect = m.decode(m.encode("MSConnectReport", "h1", 5, NOW, body, KEY))
    assert connect.signed is not None
    m.verify(connect, KEY, m.ReplayState(), NOW)


def test_the_fast_path_refuses_what_the_strict_parser_refuses():
    raw = report()
    dup = raw.replace(b'{"body":', b'{"body":{},"body":', 1)
    with pytest.raises(m.BadMessage, match="duplicate"):
        m.decode(dup)
    with pytest.raises(m.BadMessage, match="NaN"):
        m.decode(raw.replace(b'"ts":1764300000.0', b'"ts":NaN'))
    extra = raw[:-1] + b',"zzz":{"a":1,"mac":' + json.dumps(json.loads(raw)["mac"]).encode() \
        + b'}}'
    with pytest.raises(m.BadMessage, match="unknown key"):
        m.decode(extra)
    assert m._canonical_parts(b'{"mac":"' + b"0" * 64 + b'"}') is None   # no member before


@settings(max_examples=800, deadline=None)
@given(st.sampled_from(PATHS), json_values)
def test_fuzz_mutated_canonical_report_never_verifies(path, new):
    """The fuzz above in canonical form (the fast path): any one changed field fails the
    parser or the MAC."""
    data = _mutated(path, new)
    if data is None:
        return
    try:
        msg = m.decode(m.canonical(data))
    except (m.BadMessage, ValueError):
        return
    with pytest.raises(m.BadMessage):
        m.verify(msg, KEY, m.ReplayState(), NOW)


def _verdict(fn):
    try:
        fn()
    except m.BadMessage as exc:
        return exc.reason
    return None


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(PATHS + [()]), json_values,
       st.sampled_from(["SCIReport", "MSConnectReport", "Leave", "SCIResponse"]))
def test_the_compiled_schema_check_agrees_with_the_interpreted_one(path, new, type_):
    """Every value, at every place of a valid report: the same refusal, with the same
    reason, or both accept."""
    data = json.loads(report())
    if path:
        target = data
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = new
    else:
        data = new
    for spec in (m.ENVELOPE, m.SCI, m.BODIES[type_]):
        value = data.get("body", {}).get("sci") if spec is m.SCI and isinstance(data, dict) \
            and isinstance(data.get("body"), dict) else data.get("body") \
            if spec is not m.ENVELOPE and isinstance(data, dict) else data
        assert _verdict(lambda: m.check(value, spec)) == \
            _verdict(lambda: m._check(value, spec, None))


# --- a sender's known body: only the envelope is checked ---------------------------------

def _outcome(raw, bodies=None):
    try:
        msg = m.decode(raw, bodies)
    except m.BadMessage:
        return "refused"
    return (msg, msg.signed)


def _bodies_after(raw):
    bodies = {}
    m.remember_body(m.decode(raw), raw, bodies)
    return bodies


def test_a_known_body_decodes_like_the_full_parse_and_is_not_reparsed():
    first = report(seq=1)
    bodies = _bodies_after(first)
    assert set(bodies) == {"h1"} and bodies["h1"][0] == "SCIReport"
    nxt = report(seq=2, ts=NOW + 0.5)
    got = m.decode(nxt, bodies)
    assert got.body is bodies["h1"][2]                  # the body parsed before, reused
    assert _outcome(nxt, bodies) == _outcome(nxt)
    m.verify(got, KEY, m.ReplayState(), NOW)
    # an integer timestamp, a message without key_id: the same as the full parse
    for raw in (m.encode("SCIReport", "h1", 3, 1764300001, {"ms_id": "h1", "sci": sci()},
                         KEY, key_id="isr-1"),):
        assert _outcome(raw, bodies) == _outcome(raw)
    # the same body under another type is checked again (Leave's schema refuses it)
    leave = m.encode("Leave", "h1", 4, NOW, {"ms_id": "h1", "sci": sci()}, KEY,
                     key_id="isr-1", check=False)
    assert _outcome(leave, bodies) == _outcome(leave) == "refused"
    # non-canonical forms go to the full parse, which says what it says
    for bad in (nxt.replace(b'"ts":1764300000.5', b'"ts":1764300000.50'),
                nxt.replace(b'"seq":2', b'"seq":02'), nxt[:-1] + b' }',
                nxt.replace(b'"seq":2', b'"seq":9223372036854775808'),
                nxt.replace(b'"ts":1764300000.5', b'"ts":1e13'),
                nxt.replace(b'"type":"SCIReport"', b'"type":"Nonsense"')):
        assert _outcome(bad, bodies) == _outcome(bad)


@settings(max_examples=1500, deadline=None)
@given(st.integers(0, 400), st.binary(min_size=0, max_size=3), st.integers(0, 2))
def test_fuzz_a_known_body_never_changes_the_verdict(at, new, cut):
    """Bytes replaced, inserted or cut anywhere in a report whose body is known: decoded
    with the known bodies or without, the same message or the same refusal."""
    bodies = _bodies_after(report(seq=1))
    raw = report(seq=2, ts=NOW + 0.25)
    at = min(at, len(raw))
    mutated = raw[:at] + new + raw[at + cut:]
    assert _outcome(mutated, bodies) == _outcome(mutated)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(PATHS), json_values)
def test_fuzz_a_known_body_with_one_field_changed(path, new):
    bodies = _bodies_after(report(seq=1))
    data = json.loads(report(seq=2))
    target = data
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = new
    try:
        raw = m.canonical(data)
    except ValueError:
        return
    assert _outcome(raw, bodies) == _outcome(raw)
