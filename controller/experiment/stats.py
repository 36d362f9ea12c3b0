"""Summary statistics every experiment reports the same way (emulated runs and simulations).

A student compares numbers across runs, seeds and tools, so each summary carries its
uncertainty: the mean with a 95 % percentile-bootstrap interval (fixed resampling seed, so
a summary is reproducible byte for byte), the median, the nearest-rank p95 and the seeds.
Shares of runs (e.g. "contained") get the exact Clopper-Pearson interval, which never
claims more than the data allow (with 10 runs and 0 successes it says up to 31 %).
Pure functions, numpy only (no scipy: the binomial tails are summed in log space).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20030401          # fixed: the same values always give the same interval


def nearest_rank(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with 10 runs p95 is the worst run)."""
    if not values:
        raise ValueError("no values")
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def bootstrap_mean_ci(values: Sequence[float], level: float = 0.95,
                      resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean. One value (or all equal): a point."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("no values")
    if x.size == 1 or np.ptp(x) == 0:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _binom_log_pmf(k: int, n: int, p: float) -> float:
    if p <= 0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1:
        return 0.0 if k == n else -math.inf
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return min(1.0, sum(math.exp(_binom_log_pmf(i, n, p)) for i in range(k + 1)))


def _solve(f: Any, target: float) -> float:
    """p in [0, 1] with f(p) = target for a decreasing f (bisection, 60 halvings)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of a proportion: it covers the true p in at least `level`
    of repetitions whatever p is."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    alpha = 1 - level
    # P(X >= k | lo) = alpha/2 and P(X <= k | hi) = alpha/2; both CDFs fall as p grows
    lo = 0.0 if successes == 0 else _solve(lambda p: binom_cdf(successes - 1, n, p),
                                           1 - alpha / 2)
    hi = 1.0 if successes == n else _solve(lambda p: binom_cdf(successes, n, p), alpha / 2)
    return lo, hi


def wilson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (approximate, narrower than Clopper-Pearson)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    z = _z(level)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _z(level: float) -> float:
    """Two-sided normal quantile (bisection on erf; only 0.9/0.95/0.99 are used)."""
    target = (1 + level) / 2
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def describe(values: Sequence[float], seeds: Sequence[int] | None = None,
             digits: int = 4) -> dict[str, Any]:
    """mean, its 95 % bootstrap interval, median, nearest-rank p95, n (and the seeds):
    the one summary of a measured quantity across runs."""
    vals = [float(v) for v in values]
    lo, hi = bootstrap_mean_ci(vals)
    out: dict[str, Any] = {"n": len(vals), "mean": round(float(np.mean(vals)), digits),
                           "ci95": [round(lo, digits), round(hi, digits)],
                           "median": round(float(np.median(vals)), digits),
                           "p95": round(nearest_rank(vals, 95), digits)}
    if seeds is not None:
        out["seeds"] = list(seeds)
    return out


def ratio_of_means(num: Sequence[float], den: Sequence[float], level: float = 0.95,
                   resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                   digits: int = 3) -> dict[str, Any]:
    """mean(num) / mean(den) with a percentile-bootstrap interval (both samples resampled
    independently): how much a defence stretches t50, against the model's s/r."""
    a, b = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if a.size == 0 or b.size == 0 or b.mean() == 0:
        raise ValueError("need values on both sides and a non-zero denominator")
    rng = np.random.default_rng(seed)
    ra = a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
    rb = b[rng.integers(0, b.size, size=(resamples, b.size))].mean(axis=1)
    ok = rb != 0
    alpha = (1 - level) / 2
    lo, hi = np.quantile(ra[ok] / rb[ok], [alpha, 1 - alpha])
    return {"ratio": round(float(a.mean() / b.mean()), digits),
            "ci95": [round(float(lo), digits), round(float(hi), digits)]}


def proportion(successes: int, n: int, digits: int = 4) -> dict[str, Any]:
    """A share of runs with its exact (Clopper-Pearson) 95 % interval."""
    lo, hi = clopper_pearson(successes, n)
    return {"successes": successes, "n": n, "fraction": round(successes / n, digits),
            "ci95": [round(lo, digits), round(hi, digits)]}
