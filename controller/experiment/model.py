"""Worm models the experiments are checked against (docs/experiments.md, "The models";
sources in docs/references.md).

- Random constant spread (Staniford, Paxson, Weaver 2002): a(t) = 1 / (1 + e^(-K(t-T))),
  K = s*V/Omega for uniform scanning.
- Containment formulas (the two defences Moore et al., INFOCOM 2003, compare; derived in
  docs/experiments.md): content filtering everywhere at R, address blacklisting R after each
  host's own infection.
- A stochastic outbreak simulation (exact event-driven, Poisson scanning) with per-host
  reactions, for predictions of small populations and for testing the fit.

numpy only (no scipy): the logistic fit is a small Levenberg-Marquardt on (K, T).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np

REACTIONS = ("none", "block", "seal", "slow")


# --- closed forms ------------------------------------------------------------------------

def predicted_k(scan_rate: float, vulnerable: int, omega: int) -> float:
    """K = s*V/Omega (per second when s is in probes per second)."""
    if omega <= 0:
        raise ValueError(f"address space size must be > 0, got {omega}")
    return scan_rate * vulnerable / omega


def t50(k: float, vulnerable: int) -> float:
    """Time from one infected host to half of V infected: ln(V-1)/K."""
    if k <= 0 or vulnerable < 2:
        return math.inf
    return math.log(vulnerable - 1) / k


def time_to_fraction(k: float, vulnerable: int, fraction: float) -> float:
    """Time from one infected host (a0 = 1/V) until the logistic reaches `fraction`."""
    if not 1.0 / vulnerable < fraction < 1.0:
        raise ValueError(f"fraction {fraction} must be between 1/V and 1")
    if k <= 0:
        return math.inf
    return (math.log(fraction / (1 - fraction)) + math.log(vulnerable - 1)) / k


def logistic(t: np.ndarray | float, k: float, t_mid: float) -> np.ndarray | float:
    """a(t) = e^(K(t-T)) / (1 + e^(K(t-T))), computed without overflow."""
    x = np.clip(k * (np.asarray(t, dtype=float) - t_mid), -500, 500)
    return 1.0 / (1.0 + np.exp(-x))


def content_filter_final(vulnerable: int, k: float, reaction_s: float) -> float:
    """Hosts infected when content filtering everywhere stops the worm at R:
    I(R) = V / (1 + (V-1) e^(-K R))."""
    return vulnerable / (1 + (vulnerable - 1) * math.exp(-k * reaction_s))


def blacklist_expected_total(k: float, reaction_s: float) -> float:
    """Expected hosts infected from one seed when each host is cut off R after its own
    infection: each makes about K*R new infections, total 1/(1-K*R); inf if K*R >= 1."""
    kr = k * reaction_s
    return math.inf if kr >= 1 else 1.0 / (1.0 - kr)


def blacklist_expected_fraction(vulnerable: int, k: float, reaction_s: float) -> float:
    """The same as a fraction of V, capped at 1 (the branching approximation holds while
    the total is small against V)."""
    return min(1.0, blacklist_expected_total(k, reaction_s) / vulnerable)


def blacklist_mean_final_fraction(vulnerable: int, k: float, reaction_s: float) -> float:
    """Expected final fraction under blacklisting for any K*R, from one seed: below the
    threshold the branching total 1/(1-K*R) hosts; above it an outbreak takes off with
    probability 1-q (q = e^(-KR(1-q)), extinction of a Poisson(KR) branching process) and
    then reaches z = 1 - e^(-KR*z) (the epidemic final size, which holds for a fixed
    infectious period R), so the mean is (1-q)*z plus the small outbreaks' share."""
    kr = k * reaction_s
    if kr < 1:
        return min(1.0, blacklist_expected_total(k, reaction_s) / vulnerable)
    q = z = 0.5
    for _ in range(2000):
        q, z = math.exp(-kr * (1 - q)), 1 - math.exp(-kr * z)
    small = q / (1 - kr * q) / vulnerable if kr * q < 1 else 0.0   # dual subcritical process
    return min(1.0, (1 - q) * z + small)


def k_mle_terms(infection_times: Sequence[float], vulnerable: int) -> tuple[int, float]:
    """One undefended run's share of the maximum-likelihood K of the SI model: while I hosts
    are infected the next infection comes at rate K*I*(V-I)/V, so K = (infections after
    the seed) / (integral of I*(V-I)/V dt) over the runs. Unlike a logistic fitted to a
    curve (or to the median of curves shifted by their random starts), it uses every
    infection time as it is: the estimator for small V."""
    ts = sorted(infection_times)
    integral = sum(i * (vulnerable - i) / vulnerable * (ts[i] - ts[i - 1])
                   for i in range(1, len(ts)))
    return len(ts) - 1, integral


def critical_reaction_s(scan_rate: float, vulnerable: int, omega: int) -> float:
    """Blacklisting contains only below R = Omega/(s*V) = 1/K."""
    k = predicted_k(scan_rate, vulnerable, omega)
    return math.inf if k == 0 else 1.0 / k


def throttled_rate(scan_rate: float, new_dest_per_s: float) -> float:
    """A virus throttle lets through at most r new destinations/s: a scanning worm, whose
    probes are all new destinations, slows to min(s, r) (t50 grows by s/r)."""
    return min(scan_rate, new_dest_per_s)


def metered_rate(scan_rate: float, rate_kbps: float, frame_bytes: int) -> float:
    """An OpenFlow meter limits bits, not probes: probes/s that fit under rate_kbps."""
    return min(scan_rate, rate_kbps * 1000.0 / (8.0 * frame_bytes))


# --- fit ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class LogisticFit:
    k: float          # per second
    t_mid: float      # seconds, where a = 0.5 (T of Staniford et al.)
    r2: float
    n: int            # points used

    def t50_from(self, t0: float) -> float:
        """Time from t0 (e.g. the seed's infection) to half infected."""
        return self.t_mid - t0


def fit_logistic(times: Sequence[float], infected_fraction: Sequence[float]) -> LogisticFit:
    """Least-squares logistic fit of infected fraction against time.

    Robust for small populations: the fraction moves in steps of 1/V and often sits at 0
    or 1, so the start comes from a clipped-logit line and several damped Gauss-Newton
    (Levenberg-Marquardt) runs from spread-out starts; the best sum of squares wins.
    Raises ValueError with the reason when the data cannot define a curve.
    """
    t = np.asarray(times, dtype=float)
    a = np.asarray(infected_fraction, dtype=float)
    if t.shape != a.shape or t.ndim != 1:
        raise ValueError("times and fractions must be two sequences of the same length")
    if len(t) < 3:
        raise ValueError(f"need at least 3 points, got {len(t)}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(a))):
        raise ValueError("times and fractions must be finite numbers")
    if np.any(a < 0) or np.any(a > 1):
        raise ValueError("fractions must lie in 0..1")
    if np.ptp(a) == 0:
        raise ValueError("the fraction never changes: no spread to fit")
    if np.ptp(t) == 0:
        raise ValueError("all points at the same time")

    span = float(np.ptp(t))
    starts = []
    inner = (a > 0) & (a < 1)
    positive = a[a > 0]
    eps = min(0.01, float(positive.min()) / 2) if positive.size else 0.01
    y = np.log(np.clip(a, eps, 1 - eps) / (1 - np.clip(a, eps, 1 - eps)))
    sel = inner if np.count_nonzero(inner) >= 2 and np.ptp(t[inner]) > 0 else np.ones_like(a, bool)
    slope, icept = np.polyfit(t[sel], y[sel], 1)
    if slope > 0:
        starts.append((slope, -icept / slope))
    # the time the curve first reaches half (or its middle value) is a robust T guess
    half = min(0.5, (a.min() + a.max()) / 2)
    t_half = float(t[np.argmax(a >= half)])
    for k0 in (4.0 / span, 10.0 / span, 30.0 / span, 1.0 / span):
        starts.append((k0, t_half))
    best: tuple[float, float, float] | None = None
    for k0, tm0 in starts:
        k, tm, sse = _levenberg_marquardt(t, a, k0, tm0)
        if math.isfinite(sse) and (best is None or sse < best[2]):
            best = (k, tm, sse)
    assert best is not None
    k, tm, sse = best
    sst = float(np.sum((a - a.mean()) ** 2))
    return LogisticFit(k=k, t_mid=tm, r2=1.0 - sse / sst, n=len(t))


def _levenberg_marquardt(t: np.ndarray, a: np.ndarray, k: float, tm: float,
                         iterations: int = 200) -> tuple[float, float, float]:
    def sse_of(k_: float, tm_: float) -> float:
        return float(np.sum((a - logistic(t, k_, tm_)) ** 2))

    lam, sse = 1e-3, sse_of(k, tm)
    for _ in range(iterations):
        f = logistic(t, k, tm)
        g = f * (1 - f)
        jac = np.column_stack([g * (t - tm), -k * g])
        r = a - f
        jtj, jtr = jac.T @ jac, jac.T @ r
        improved = False
        while lam < 1e12:
            step = np.linalg.solve(jtj + lam * np.diag(np.diag(jtj) + 1e-12), jtr) \
                if np.all(np.isfinite(jtj)) else np.zeros(2)
            nk, ntm = k + step[0], tm + step[1]
            if nk > 0:
                nsse = sse_of(nk, ntm)
                if nsse < sse:
                    done = sse - nsse < 1e-12 * max(sse, 1e-12)
                    k, tm, sse, lam, improved = nk, ntm, nsse, max(lam / 10, 1e-9), True
                    break
            lam *= 10
        if not improved or done:
            break
    return k, tm, sse


# --- stochastic simulation ---------------------------------------------------------------

@dataclass(frozen=True)
class Outbreak:
    """Infection times (s, seeds at 0, sorted) of one simulated run of `duration_s`."""

    infection_times: tuple[float, ...]
    vulnerable: int
    duration_s: float

    def infected_at(self, t: float | Sequence[float]) -> np.ndarray:
        """Number infected at time(s) t."""
        return np.searchsorted(np.asarray(self.infection_times), np.asarray(t, float), "right")

    @property
    def final_fraction(self) -> float:
        return len(self.infection_times) / self.vulnerable


def simulate_outbreak(vulnerable: int, omega: int, scan_rate: float, duration_s: float,
                      rng: random.Random, reaction_s: float | None = None,
                      reaction: str = "none", groups: Sequence[int] | None = None,
                      reduced_rate: float | None = None, seeds: int = 1) -> Outbreak:
    """Exact event-driven simulation of uniform scanning with Poisson probes.

    Each infected host probes at `scan_rate`, uniformly over the Omega-1 addresses other
    than its own; a probe to a susceptible vulnerable host infects it. `reaction_s` after a
    host's own infection the defence acts on it:
      block - it sends nothing more (CRS isolate, blacklisting);
      seal  - its probes land only in its own group (`groups[i]` = cell of host i);
      slow  - it probes at `reduced_rate` (throttle, meter).
    """
    if reaction not in REACTIONS:
        raise ValueError(f"unknown reaction {reaction!r} (use {', '.join(REACTIONS)})")
    if vulnerable < 1 or omega < 2 or vulnerable > omega or not 1 <= seeds <= vulnerable:
        raise ValueError("need 1 <= seeds <= vulnerable <= omega and omega >= 2")
    if scan_rate < 0 or duration_s < 0:
        raise ValueError("scan rate and duration must be >= 0")
    if reaction == "seal" and (groups is None or len(groups) != vulnerable):
        raise ValueError("reaction 'seal' needs one group per vulnerable host")
    if reaction == "slow" and reduced_rate is None:
        raise ValueError("reaction 'slow' needs reduced_rate")
    react = math.inf if reaction == "none" or reaction_s is None else reaction_s
    groups = list(groups) if groups is not None else [0] * vulnerable

    state_time: list[float | None] = [None] * vulnerable   # infection time per host
    order = list(range(vulnerable))
    rng.shuffle(order)
    times = []
    for i in order[:seeds]:
        state_time[i] = 0.0
        times.append(0.0)
    t = 0.0
    while True:
        susceptible = [i for i in range(vulnerable) if state_time[i] is None]
        if not susceptible:
            break
        sus_by_group: dict[int, list[int]] = {}
        for i in susceptible:
            sus_by_group.setdefault(groups[i], []).append(i)
        rates, pools, next_change = [], [], math.inf
        for j, tj in enumerate(state_time):
            if tj is None:
                continue
            reacted = t >= tj + react
            if not reacted:
                next_change = min(next_change, tj + react)
                rate, pool = scan_rate, susceptible
            elif reaction == "block":
                continue
            elif reaction == "seal":
                rate, pool = scan_rate, sus_by_group.get(groups[j], [])
            else:
                rate, pool = float(reduced_rate), susceptible   # type: ignore[arg-type]
            if pool:
                rates.append(rate * len(pool) / (omega - 1))
                pools.append(pool)
        total = sum(rates)
        dt = rng.expovariate(total) if total > 0 else math.inf
        if t + dt >= next_change and next_change < duration_s:
            t = next_change                       # a host's reaction: rates change
            continue
        if t + dt > duration_s:
            break
        t += dt
        pick = rng.random() * total
        for rate, pool in zip(rates, pools):
            if pick < rate:
                break
            pick -= rate
        victim = pool[rng.randrange(len(pool))]
        state_time[victim] = t
        times.append(t)
    return Outbreak(tuple(sorted(times)), vulnerable, duration_s)


def simulate_si(vulnerable: int, omega: int, scan_rate: float, duration_s: float,
                rng: random.Random) -> Outbreak:
    """No defence: the random constant spread model's stochastic counterpart."""
    return simulate_outbreak(vulnerable, omega, scan_rate, duration_s, rng)
