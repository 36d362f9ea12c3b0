"""REST guards, pure: per-source connection accounting and the operator token check."""
import os
import stat
from collections import Counter

import pytest

from controller import restguard
from controller.restguard import REFUSED_COUNTER, SourceCap, operator_post_refusal

# --- per-source cap -------------------------------------------------------------------------

def test_a_source_gets_its_cap_and_no_more_and_others_are_unaffected():
    counters = Counter()
    cap = SourceCap(per_source=3, counters=counters)
    assert [cap.acquire("10.0.1.1") for _ in range(5)] == [True] * 3 + [False] * 2
    assert cap.open("10.0.1.1") == 3
    assert counters[REFUSED_COUNTER] == 2
    assert cap.acquire("10.0.2.1")                 # another terminal still gets in
    cap.release("10.0.1.1")
    assert cap.acquire("10.0.1.1")                 # a freed slot is usable again
    assert not cap.acquire("10.0.1.1")


def test_release_drops_idle_sources_and_never_goes_negative():
    cap = SourceCap(per_source=2)
    for i in range(1000):
        src = f"10.1.{i // 250}.{i % 250}"
        assert cap.acquire(src)
        cap.release(src)
    assert cap._open == {}                          # memory: only sources with open conns
    cap.release("10.9.9.9")                         # a stray release is harmless
    assert cap.open("10.9.9.9") == 0 and cap._open == {}


@pytest.mark.parametrize("addr", ["127.0.0.1", "127.5.6.7", "::1", "::ffff:127.0.0.1"])
def test_loopback_has_its_own_cap(addr):
    cap = SourceCap(per_source=1, per_loopback=4)
    assert [cap.acquire(addr) for _ in range(5)] == [True] * 4 + [False]


def test_loopback_cap_zero_means_no_cap_but_terminals_stay_capped():
    cap = SourceCap(per_source=1, per_loopback=0)
    assert all(cap.acquire("127.0.0.1") for _ in range(5000))
    assert cap.acquire("::ffff:10.0.1.1") and not cap.acquire("::ffff:10.0.1.1")
    assert cap.acquire("garbage") and not cap.acquire("garbage")   # unknown: capped


def test_one_log_line_per_source_per_interval_with_the_refusals_since():
    cap = SourceCap(per_source=1, log_every_s=60)
    cap.acquire("10.0.1.1")
    assert not cap.acquire("10.0.1.1")
    line = cap.note_refused("10.0.1.1", 1000.0)
    assert "10.0.1.1" in line and "cap 1" in line and "refused 1" in line
    for _ in range(50):
        assert not cap.acquire("10.0.1.1")
        assert cap.note_refused("10.0.1.1", 1001.0) is None
    assert not cap.acquire("10.0.1.1")
    assert "refused 51" in cap.note_refused("10.0.1.1", 1061.0)
    assert cap.acquire("10.0.1.2") and not cap.acquire("10.0.1.2")
    assert cap.note_refused("10.0.1.2", 1061.5) is not None        # another source: own line


def test_log_bookkeeping_stays_bounded():
    cap = SourceCap(per_source=1, log_every_s=60, max_noted=100)
    for i in range(10_000):
        src = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        cap.acquire(src)
        cap.acquire(src)
        cap.note_refused(src, float(i))              # time moves: old entries expire
    assert len(cap._last_log) <= 101 and len(cap._refused_since_log) <= 101


def test_bad_caps_are_refused():
    with pytest.raises(ValueError):
        SourceCap(per_source=0)
    with pytest.raises(ValueError):
        SourceCap(per_source=1, per_loopback=-1)


# --- operator token -------------------------------------------------------------------------

def test_token_file_defaults_next_to_the_database():
    assert restguard.token_file("var/crs.db") == os.path.join("var", "operator.token")
    assert restguard.token_file("/srv/x/crs.db") == "/srv/x/operator.token"
    assert restguard.token_file("/srv/x/crs.db", "/etc/t") == "/etc/t"


def test_written_token_is_0600_random_and_replaced_at_each_start(tmp_path):
    path = tmp_path / "sub" / "operator.token"
    t1 = restguard.write_token(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert restguard.read_token(str(path)) == t1 and len(t1) >= 32
    path.chmod(0o644)                                # a stale, too open file is replaced
    t2 = restguard.write_token(str(path))
    assert t2 != t1 and restguard.read_token(str(path)) == t2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["operator.token"]   # no temp left


def test_empty_or_missing_token_file_is_an_error(tmp_path):
    (tmp_path / "t").write_text("\n")
    with pytest.raises(ValueError):
        restguard.read_token(str(tmp_path / "t"))
    with pytest.raises(OSError):
        restguard.read_token(str(tmp_path / "missing"))


TOKEN = "s3cret-token"
GOOD = "Bearer " + TOKEN


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8",
                                   "Application/JSON"])
def test_right_token_and_json_is_accepted(ctype):
    assert operator_post_refusal(ctype, GOOD, TOKEN) is None
    assert operator_post_refusal(ctype, "bearer  " + TOKEN + " ", TOKEN) is None


@pytest.mark.parametrize("auth", [None, "", "Bearer", "Bearer ", "Bearer wrong", TOKEN,
                                  "Basic " + TOKEN, "Bearer " + TOKEN + "x",
                                  "Bearer " + TOKEN[:-1]])
def test_missing_or_wrong_token_is_403(auth):
    status, counter, reason = operator_post_refusal("application/json", auth, TOKEN)
    assert status == 403 and counter == "operator_refused_token" and "token" in reason


def test_no_configured_token_refuses_everything():
    for token in (None, ""):
        assert operator_post_refusal("application/json", "Bearer ", token)[0] == 403
        assert operator_post_refusal("application/json", GOOD, token)[0] == 403


@pytest.mark.parametrize("ctype", [None, "", "text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", "application/jsonx",
                                   "text/json"])
def test_browser_form_content_types_are_415_with_a_token_and_403_without(ctype):
    assert operator_post_refusal(ctype, GOOD, TOKEN)[:2] == (415,
                                                             "operator_refused_content_type")
    assert operator_post_refusal(ctype, None, TOKEN)[0] == 403


def test_auth_header_is_what_the_check_accepts():
    h = restguard.auth_header(TOKEN)
    assert operator_post_refusal("application/json", h["Authorization"], TOKEN) is None
