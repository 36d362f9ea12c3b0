"""Where the emulated worm aims: address spaces and target-selection strategies.

Kept apart from the socket code so the target sequence (which decides K = s*V/Omega) can be
tested without a network. Every picker draws only from the `random.Random` it is given, so a
seed fixes the whole sequence.
"""
from __future__ import annotations

import bisect
import ipaddress
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

STRATEGIES = ("uniform", "local", "hitlist")


class TargetError(ValueError):
    """A bad address space, hitlist or strategy parameter."""


@dataclass(frozen=True)
class AddressSpace:
    """A union of IPv4 networks, counted by usable host addresses (Omega).

    For prefixes up to /30 the network and broadcast addresses of each listed network are
    left out (a /24 gives 254 hosts a worm can infect); /31 and /32 count every address.
    Overlapping networks count their common addresses once.
    """

    ranges: tuple[tuple[int, int], ...]      # (first address as int, count)

    @property
    def size(self) -> int:
        return sum(n for _, n in self.ranges)

    def address(self, index: int) -> str:
        """The index-th host address of the space (0 <= index < size)."""
        if not 0 <= index < self.size:
            raise TargetError(f"index {index} outside an address space of {self.size}")
        for first, count in self.ranges:
            if index < count:
                return str(ipaddress.IPv4Address(first + index))
            index -= count
        raise AssertionError("unreachable")

    def __contains__(self, ip: object) -> bool:
        try:
            value = int(ipaddress.IPv4Address(str(ip)))
        except ValueError:
            return False
        starts = [f for f, _ in self.ranges]
        i = bisect.bisect_right(starts, value) - 1
        return i >= 0 and value < self.ranges[i][0] + self.ranges[i][1]

    def addresses(self) -> Iterable[str]:
        for first, count in self.ranges:
            for k in range(count):
                yield str(ipaddress.IPv4Address(first + k))


def parse_space(spec: str | Iterable[str]) -> AddressSpace:
    """Parse "10.0.1.0/25" or "10.0.1.0/25,10.0.2.0/25" (or a list of CIDRs)."""
    parts = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in s.split(",")]
    parts = [p.strip() for p in parts if p.strip()]
    if not parts:
        raise TargetError("empty address space")
    nets = []
    for p in parts:
        try:
            nets.append(ipaddress.IPv4Network(p, strict=False))
        except ValueError as exc:
            raise TargetError(f"{p!r} is not an IPv4 network: {exc}") from None
    # host range of each network as given (a /24 always counts 254, even next to another
    # /24), then the union of the ranges so overlaps count once
    spans = []
    for net in nets:
        first, last = int(net.network_address), int(net.broadcast_address)
        if net.prefixlen <= 30:
            first, last = first + 1, last - 1
        spans.append((first, last))
    merged: list[list[int]] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return AddressSpace(tuple((lo, hi - lo + 1) for lo, hi in merged))


def load_hitlist(path: str | Path) -> list[str]:
    """One IPv4 address per line; blank lines and '#' comments ignored."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise TargetError(f"{path}: cannot read hitlist: {exc.strerror}") from None
    out = []
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            out.append(str(ipaddress.IPv4Address(text)))
        except ValueError:
            raise TargetError(f"{path}: line {n}: {text!r} is not an IPv4 address") from None
    return out


class TargetPicker:
    """Yields probe targets, never the worm's own address.

    uniform: every host address of `space` with equal probability (Staniford's random
      constant spread; this is the strategy the logistic model describes).
    local: with probability `local_preference` from `local_space` (the own cell), otherwise
      uniform over `space` (Code Red II style).
    hitlist: the hitlist addresses first, in file order, then uniform over `space`
      (Warhol-style; the hitlist shortens the slow start).
    """

    def __init__(self, strategy: str, space: AddressSpace, own_ip: str, rng: random.Random,
                 local_space: AddressSpace | None = None, local_preference: float = 0.0,
                 hitlist: Iterable[str] = ()):
        if strategy not in STRATEGIES:
            raise TargetError(f"unknown strategy {strategy!r} (use {', '.join(STRATEGIES)})")
        if not 0.0 <= local_preference <= 1.0:
            raise TargetError(f"local preference {local_preference} is outside 0..1")
        if strategy == "local" and local_space is None:
            raise TargetError("strategy 'local' needs a local space")
        self.strategy, self.space, self.own_ip, self.rng = strategy, space, own_ip, rng
        self.local_space, self.local_preference = local_space, local_preference
        self._hitlist = [ip for ip in hitlist if ip != own_ip]
        self._hit_index = 0
        for s in (space, local_space):
            if s is not None and s.size - (own_ip in s) < 1:
                raise TargetError("address space has no address other than the worm's own")

    def next(self) -> str:
        if self.strategy == "hitlist" and self._hit_index < len(self._hitlist):
            self._hit_index += 1
            return self._hitlist[self._hit_index - 1]
        space = self.space
        if self.strategy == "local" and self.rng.random() < self.local_preference:
            space = self.local_space  # type: ignore[assignment]
        while True:
            ip = space.address(self.rng.randrange(space.size))
            if ip != self.own_ip:
                return ip


def host_rng(seed: int, ip: str) -> random.Random:
    """The per-host generator: same (seed, ip) gives the same sequence on every run and
    machine (string seeds go through SHA-512, independent of PYTHONHASHSEED); different hosts
    of one run get independent sequences."""
    return random.Random(f"worm:{seed}:{ip}")
