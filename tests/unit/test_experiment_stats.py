"""Summary statistics: known interval values, coverage of known truths, determinism, and
their place in the emulated experiments' summary.json."""
from __future__ import annotations

import random

import numpy as np
import pytest

from controller.experiment import stats
from controller.experiment.results import RunResult, summarize_configuration


def test_clopper_pearson_known_values():
    # reference values (R binom.test / scipy.stats.binomtest ... exact)
    assert stats.clopper_pearson(5, 10) == pytest.approx((0.187086, 0.812914), abs=1e-5)
    assert stats.clopper_pearson(0, 10) == pytest.approx((0.0, 0.308497), abs=1e-5)
    assert stats.clopper_pearson(10, 10) == pytest.approx((0.691503, 1.0), abs=1e-5)
    assert stats.clopper_pearson(1, 100) == pytest.approx((0.000253, 0.054460), abs=1e-5)


def test_wilson_known_value_and_bad_input():
    assert stats.wilson(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-5)
    for bad in ((11, 10), (-1, 10), (0, 0)):
        with pytest.raises(ValueError):
            stats.clopper_pearson(*bad)
        with pytest.raises(ValueError):
            stats.wilson(*bad)


def test_clopper_pearson_covers_the_true_proportion():
    rng = random.Random(7)
    for p in (0.05, 0.3, 0.5):
        hits = 0
        for _ in range(400):
            k = sum(rng.random() < p for _ in range(20))
            lo, hi = stats.clopper_pearson(k, 20)
            hits += lo <= p <= hi
        assert hits / 400 >= 0.93          # exact: at least 95 % up to sampling noise


def test_bootstrap_interval_covers_the_mean_and_is_reproducible():
    rng = np.random.default_rng(3)
    covered = 0
    for _ in range(200):
        x = rng.exponential(2.0, size=30)
        lo, hi = stats.bootstrap_mean_ci(x)
        covered += lo <= 2.0 <= hi
    assert 0.85 <= covered / 200 <= 0.99
    x = [0.1, 0.4, 0.2, 0.9, 0.3]
    assert stats.bootstrap_mean_ci(x) == stats.bootstrap_mean_ci(list(x))
    assert stats.bootstrap_mean_ci([0.5]) == (0.5, 0.5)
    assert stats.bootstrap_mean_ci([0.2, 0.2, 0.2]) == (0.2, 0.2)


def test_describe_and_proportion():
    d = stats.describe([0.1, 0.2, 0.3, 0.9], seeds=[1, 2, 3, 4])
    assert d["n"] == 4 and d["mean"] == 0.375 and d["median"] == 0.25 and d["p95"] == 0.9
    assert d["ci95"][0] < 0.375 < d["ci95"][1] and d["seeds"] == [1, 2, 3, 4]
    p = stats.proportion(3, 10)
    assert p["fraction"] == 0.3 and p["ci95"][0] < 0.3 < p["ci95"][1]
    assert stats.nearest_rank([5, 1, 3, 2, 4, 6, 7, 8, 9, 10], 95) == 10


def test_emulated_summary_carries_intervals_and_seeds():
    runs = [RunResult("crs_isolate", "crs_isolate", i, 24, 24,
                      tuple(float(t) for t in range(n)), 60.0, 1.0, 3.0, 378, 0, 0, 0,
                      seed=10 + i) for i, n in enumerate([1, 1, 2, 5])]
    c = summarize_configuration(runs)
    assert c["seeds"] == [10, 11, 12, 13]
    lo, hi = c["infected_fraction_ci95"]
    assert lo <= c["infected_fraction_mean"] <= hi
    assert c["contained_fraction"] == 1.0
    assert c["contained_fraction_ci95"] == pytest.approx([0.397635, 1.0], abs=1e-4)


def test_ratio_of_means_and_its_interval():
    slow, fast = [30.0, 33.0, 27.0, 30.0], [10.0, 11.0, 9.0, 10.0]
    got = stats.ratio_of_means(slow, fast)
    assert got["ratio"] == 3.0 and got["ci95"][0] < 3.0 < got["ci95"][1]
    assert stats.ratio_of_means(slow, fast) == got            # fixed resampling seed
    with pytest.raises(ValueError):
        stats.ratio_of_means(slow, [])
