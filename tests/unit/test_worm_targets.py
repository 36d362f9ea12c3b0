"""Target selection of the emulated worm: address spaces, strategies, determinism."""
from __future__ import annotations

import collections
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.worm.targets import (
    TargetError,
    TargetPicker,
    host_rng,
    load_hitlist,
    parse_space,
)


def test_space_counts_usable_host_addresses():
    assert parse_space("10.0.0.0/24").size == 254
    assert parse_space("10.0.1.0/25,10.0.2.0/25").size == 252
    assert parse_space(["10.0.1.0/25", "10.0.2.0/25"]).size == 252
    assert parse_space("10.0.0.5/32").size == 1
    # overlaps are merged, not counted twice
    assert parse_space("10.0.0.0/24,10.0.0.0/25").size == 254
    # adjacent networks are not merged into a bigger one (whose inner .255/.0 would count)
    assert parse_space("10.0.2.0/24,10.0.3.0/24").size == 508
    assert "10.0.2.255" not in parse_space("10.0.2.0/24,10.0.3.0/24")


def test_space_addresses_and_membership():
    s = parse_space("10.0.1.0/30,10.0.3.0/30")
    assert list(s.addresses()) == ["10.0.1.1", "10.0.1.2", "10.0.3.1", "10.0.3.2"]
    assert s.address(2) == "10.0.3.1"
    assert "10.0.3.2" in s and "10.0.3.3" not in s and "10.0.2.1" not in s
    with pytest.raises(TargetError):
        s.address(4)


@pytest.mark.parametrize("bad", ["", "10.0.0.0/33", "foo", "10.0.0.0/24,bar"])
def test_bad_space_is_refused_with_reason(bad):
    with pytest.raises(TargetError):
        parse_space(bad)


def test_space_of_only_own_address_is_refused():
    with pytest.raises(TargetError, match="no address other"):
        TargetPicker("uniform", parse_space("10.0.0.1/32"), "10.0.0.1", random.Random(1))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), prefix=st.integers(26, 30), own=st.integers(1, 2))
def test_uniform_never_targets_itself_and_stays_in_space(seed, prefix, own):
    space = parse_space(f"10.0.7.0/{prefix}")
    me = f"10.0.7.{own}"
    p = TargetPicker("uniform", space, me, host_rng(seed, me))
    for _ in range(200):
        ip = p.next()
        assert ip != me and ip in space


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**63))
def test_sequence_is_deterministic_per_seed_and_host(seed):
    space = parse_space("10.0.0.0/24")
    a = TargetPicker("uniform", space, "10.0.0.1", host_rng(seed, "10.0.0.1"))
    b = TargetPicker("uniform", space, "10.0.0.1", host_rng(seed, "10.0.0.1"))
    c = TargetPicker("uniform", space, "10.0.0.2", host_rng(seed, "10.0.0.2"))
    sa, sb, sc = ([x.next() for _ in range(50)] for x in (a, b, c))
    assert sa == sb
    assert sa != sc          # other host, independent sequence


def test_uniform_is_uniform():
    space = parse_space("10.0.0.0/29")          # 6 addresses, 5 targets
    p = TargetPicker("uniform", space, "10.0.0.1", host_rng(3, "10.0.0.1"))
    counts = collections.Counter(p.next() for _ in range(10000))
    assert set(counts) == {f"10.0.0.{i}" for i in range(2, 7)}
    assert all(1800 < c < 2200 for c in counts.values())


def test_local_preference_fraction():
    space = parse_space("10.0.0.0/16")
    local = parse_space("10.0.3.0/24")
    p = TargetPicker("local", space, "10.0.3.1", host_rng(5, "10.0.3.1"), local, 0.75)
    picks = [p.next() for _ in range(4000)]
    in_local = sum(ip in local for ip in picks) / len(picks)
    # 0.75 local + 0.25 * (254/65534) from the uniform part
    assert 0.72 < in_local < 0.78


def test_hitlist_first_then_uniform(tmp_path):
    f = tmp_path / "hit.txt"
    f.write_text("# seeds\n10.0.0.9\n10.0.0.1\n\n10.0.0.4  # comment\n")
    hit = load_hitlist(f)
    assert hit == ["10.0.0.9", "10.0.0.1", "10.0.0.4"]
    space = parse_space("10.0.0.0/24")
    p = TargetPicker("hitlist", space, "10.0.0.1", host_rng(1, "10.0.0.1"), hitlist=hit)
    assert [p.next(), p.next()] == ["10.0.0.9", "10.0.0.4"]     # own address skipped
    assert all(p.next() in space for _ in range(20))


def test_bad_hitlist_and_parameters(tmp_path):
    f = tmp_path / "hit.txt"
    f.write_text("10.0.0.1\nnot-an-ip\n")
    with pytest.raises(TargetError, match="line 2"):
        load_hitlist(f)
    with pytest.raises(TargetError, match="cannot read"):
        load_hitlist(tmp_path / "missing.txt")
    space = parse_space("10.0.0.0/24")
    with pytest.raises(TargetError, match="unknown strategy"):
        TargetPicker("sequential", space, "10.0.0.1", random.Random())
    with pytest.raises(TargetError, match="outside 0..1"):
        TargetPicker("local", space, "10.0.0.1", random.Random(), space, 1.5)
