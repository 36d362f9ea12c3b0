"""Logistic model, its fit, the containment formulas, and the outbreak simulation."""
from __future__ import annotations

import math
import random
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.experiment import model as m


def fitted_k(vulnerable: int, omega: int, rate: float, duration: float, seed: int) -> m.LogisticFit:
    out = m.simulate_si(vulnerable, omega, rate, duration, random.Random(seed))
    grid = np.arange(0.0, duration + 1e-9, 1.0)
    return m.fit_logistic(grid, out.infected_at(grid) / vulnerable)


def test_staniford_code_red_numbers():
    # 10 scans/s, 300,000 vulnerable, Omega = 2^32: K = 2.51 per hour (paper's fit: 2.6)
    k_per_hour = m.predicted_k(10, 300_000, 2**32) * 3600
    assert k_per_hour == pytest.approx(2.51, abs=0.01)
    assert abs(k_per_hour - 2.6) / 2.6 < 0.04


@pytest.mark.parametrize("v, rate, k, t50", [(24, 0.1, 0.0094, 332), (100, 1, 0.394, 12),
                                             (200, 0.1, 0.079, 67), (50, 1, 0.197, 20)])
def test_k_and_t50_for_a_slash_24(v, rate, k, t50):
    """K = s*V/Omega and t50 = ln(V-1)/K for V vulnerable hosts in one /24 (Omega = 254)."""
    kk = m.predicted_k(rate, v, 254)
    assert kk == pytest.approx(k, rel=0.02)
    assert m.t50(kk, v) == pytest.approx(t50, rel=0.03)


def test_fit_recovers_an_exact_logistic():
    t = np.linspace(0, 60, 61)
    fit = m.fit_logistic(t, m.logistic(t, 0.3, 25.0))
    assert fit.k == pytest.approx(0.3, rel=1e-4)
    assert fit.t_mid == pytest.approx(25.0, abs=1e-3)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(k=st.floats(0.02, 2.0), t_mid=st.floats(5, 95), noise_seed=st.integers(0, 1000))
def test_fit_property_noisy_logistic(k, t_mid, noise_seed):
    t = np.linspace(0, 100, 201)
    a = m.logistic(t, k, t_mid)
    if np.ptp(a) < 0.5:          # curve mostly outside the window: nothing to recover
        return
    noisy = np.clip(a + np.random.default_rng(noise_seed).normal(0, 0.01, t.size), 0, 1)
    fit = m.fit_logistic(t, noisy)
    assert fit.k == pytest.approx(k, rel=0.15)
    assert fit.t_mid == pytest.approx(t_mid, abs=max(1.0, 0.5 / k))
    assert fit.r2 > 0.95


@pytest.mark.parametrize("v, omega, rate, duration", [(100, 254, 1.0, 60), (200, 254, 0.1, 300)])
def test_fit_of_simulated_outbreak_matches_svomega(v, omega, rate, duration):
    """docs/experiments.md check 1: R^2 >= 0.95 and K within +-25 % of s*V/Omega, run by run."""
    predicted = m.predicted_k(rate, v, omega)
    for seed in range(5):
        fit = fitted_k(v, omega, rate, duration, seed)
        assert fit.r2 >= 0.95
        assert abs(fit.k / predicted - 1) <= 0.25, (seed, fit)


def test_fit_small_population_median_of_runs():
    """24 hosts: single runs are noisy (hence >= 10 runs per configuration); the median of
    the fitted K stays within +-25 %."""
    predicted = m.predicted_k(3.0, 24, 378)
    fits = [fitted_k(24, 378, 3.0, 60, seed) for seed in range(11)]
    assert min(f.r2 for f in fits) >= 0.9
    assert abs(statistics.median(f.k for f in fits) / predicted - 1) <= 0.25


@pytest.mark.parametrize("times, fractions, reason", [
    ([0, 1], [0.1, 0.2], "at least 3"),
    ([0, 1, 2], [0.5, 0.5, 0.5], "never changes"),
    ([0, 1, 2], [0.1, float("nan"), 0.3], "finite"),
    ([0, 1, 2], [0.1, 1.5, 0.3], "0..1"),
    ([0, 1, 2], [0.1, 0.2], "same length"),
    ([3, 3, 3], [0.1, 0.2, 0.3], "same time"),
])
def test_fit_refuses_bad_input_with_reason(times, fractions, reason):
    with pytest.raises(ValueError, match=reason):
        m.fit_logistic(times, fractions)


def test_fit_handles_step_shaped_small_population():
    # 8 hosts: two jumps only, much time at 1/8 and at 1
    t = np.arange(0, 40.0)
    a = np.where(t < 10, 1 / 8, np.where(t < 14, 4 / 8, 1.0))
    fit = m.fit_logistic(t, a)
    assert fit.k > 0 and 9 < fit.t_mid < 15 and fit.r2 > 0.8


def test_blacklist_formula_and_simulation_agree():
    v, omega, rate, r = 200, 4000, 2.0, 5.0
    k = m.predicted_k(rate, v, omega)                  # 0.1/s, K*R = 0.5 -> 2 hosts
    assert m.blacklist_expected_total(k, r) == pytest.approx(2.0)
    totals = [len(m.simulate_outbreak(v, omega, rate, 300, random.Random(i), r, "block")
                  .infection_times) for i in range(400)]
    assert statistics.mean(totals) == pytest.approx(2.0, rel=0.15)
    assert m.blacklist_expected_total(k, 10.0) == math.inf          # K*R = 1: not contained
    assert m.critical_reaction_s(0.1, 100, 254) == pytest.approx(25.4)   # 1/K = Omega/(s*V)
    assert m.blacklist_expected_fraction(24, 0.19, 100) == 1.0


def test_content_filter_formula_and_simulation_agree():
    v, omega, rate, r = 100, 254, 1.0, 6.0
    k = m.predicted_k(rate, v, omega)
    expected = m.content_filter_final(v, k, r)
    assert expected == pytest.approx(100 / (1 + 99 * math.exp(-k * r)))
    got = [len(m.simulate_si(v, omega, rate, r, random.Random(i)).infection_times)
           for i in range(400)]
    assert statistics.mean(got) == pytest.approx(expected, rel=0.15)
    assert m.content_filter_final(v, k, 0) == pytest.approx(1.0)


def test_throttle_slows_t50_by_s_over_r():
    """docs/experiments.md check 2 (Williamson's throttle): t50 grows by s/r, within
    0.7..1.3 x s/r."""
    v, omega, s, r = 100, 254, 3.0, 1.0
    assert m.throttled_rate(s, r) == 1.0 and m.throttled_rate(0.5, r) == 0.5
    free = [m.simulate_si(v, omega, s, 300, random.Random(i)).infection_times[v // 2 - 1]
            for i in range(15)]
    slow = [m.simulate_outbreak(v, omega, s, 300, random.Random(100 + i), 0.0, "slow",
                                reduced_rate=m.throttled_rate(s, r)).infection_times[v // 2 - 1]
            for i in range(15)]
    ratio = statistics.median(slow) / statistics.median(free)
    assert 0.7 * s / r <= ratio <= 1.3 * s / r


def test_meter_rate_in_probes():
    # 2 kbps and 418-byte frames: 2000 / 3344 = 0.598 probes/s
    assert m.metered_rate(3.0, 2.0, 418) == pytest.approx(0.598, abs=0.001)
    assert m.metered_rate(0.1, 2.0, 418) == 0.1


def test_seal_confines_to_the_seed_group():
    groups = [i // 8 for i in range(24)]
    for i in range(20):
        out = m.simulate_outbreak(24, 378, 3.0, 200, random.Random(i), 0.0, "seal", groups)
        assert 1 <= len(out.infection_times) <= 8
    # with a reaction delay some hosts escape to other cells before sealing; a sealed cell
    # still burns out completely, so the outcome is whole cells, and not always all of them
    counts = [len(m.simulate_outbreak(24, 378, 3.0, 5000, random.Random(i), 1.0, "seal",
                                      groups).infection_times) for i in range(50)]
    assert set(counts) <= {8, 16, 24}
    assert 8 < statistics.mean(counts) < 0.9 * 24


def test_simulation_input_checks():
    rng = random.Random(1)
    with pytest.raises(ValueError, match="unknown reaction"):
        m.simulate_outbreak(10, 100, 1, 10, rng, 1, "quarantine")
    with pytest.raises(ValueError, match="one group per"):
        m.simulate_outbreak(10, 100, 1, 10, rng, 1, "seal", [0, 1])
    with pytest.raises(ValueError, match="reduced_rate"):
        m.simulate_outbreak(10, 100, 1, 10, rng, 1, "slow")
    with pytest.raises(ValueError):
        m.simulate_outbreak(300, 100, 1, 10, rng)
    with pytest.raises(ValueError):
        m.time_to_fraction(0.1, 10, 0.05)


def test_k_by_maximum_likelihood_from_infection_times():
    # V = 4, one infection a second: integral of I(V-I)/V = 0.75 + 1 + 0.75
    n, integral = m.k_mle_terms([0.0, 1.0, 2.0, 3.0], 4)
    assert n == 3 and integral == pytest.approx(2.5)
    # pooled over stochastic SI runs of 24 hosts it recovers K = s*V/Omega
    rng = random.Random(7)
    k = m.predicted_k(3.0, 24, 378)
    terms = [m.k_mle_terms(m.simulate_si(24, 378, 3.0, 400.0, rng).infection_times,
                               24) for _ in range(300)]
    est = sum(t[0] for t in terms) / sum(t[1] for t in terms)
    assert est == pytest.approx(k, rel=0.06)
