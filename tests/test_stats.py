"""nex_interp.stats: correlations, the percentile bootstrap and the quadratic fit, against values
worked out by hand and against a from-scratch percentile bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nex_interp import stats


# ----------------------------------------------------------------------------- correlations
def test_correlations_match_hand_computed_values():
    x = [1, 2, 3, 4]
    y = [10, 20, 15, 40]
    # ranks of y: 1 3 2 4 -> d^2 sums to 2 -> rho = 1 - 6 * 2 / (4 * 15)
    assert stats.spearman(x, y) == pytest.approx(0.8, abs=1e-12)
    # 5 concordant pairs, 1 discordant (2-3) -> tau = 4 / 6
    assert stats.kendall(x, y) == pytest.approx(2 / 3, abs=1e-12)
    xc, yc = np.subtract(x, np.mean(x)), np.subtract(y, np.mean(y))
    assert stats.pearson(x, y) == pytest.approx(float(xc @ yc / math.sqrt((xc @ xc) * (yc @ yc))), abs=1e-12)
    assert stats.pearson([1, 2, 3], [-2, -4, -6]) == pytest.approx(-1.0)


def test_correlations_use_finite_pairs_and_are_nan_when_undefined():
    x = [1.0, 2.0, np.nan, 3.0, 4.0, 5.0]
    y = [2.0, 1.0, 7.0, 4.0, np.inf, 3.0]
    # the pairs left: (1, 2), (2, 1), (3, 4), (5, 3)
    assert stats.spearman(x, y) == pytest.approx(stats.spearman([1, 2, 3, 5], [2, 1, 4, 3]))
    for fn in (stats.pearson, stats.spearman, stats.kendall):
        assert math.isnan(fn([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))  # constant side
        assert math.isnan(fn([1.0], [2.0]))  # one pair
        assert math.isnan(fn([1.0, np.nan], [np.nan, 2.0]))  # no finite pair
        with pytest.raises(ValueError):
            fn([1.0, 2.0], [1.0, 2.0, 3.0])


# ----------------------------------------------------------------------------- bootstrap
def _reference_percentile_bootstrap(v: np.ndarray, n_boot: int, confidence: float, seed: int) -> tuple[float, float]:
    """Resample with replacement from default_rng(seed) in chunks of at most 2M indices, take the
    linear-interpolation quantiles of the resampled means (written out, no scipy)."""
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // v.size)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = v[rng.integers(0, v.size, size=(stop - start, v.size))].mean(axis=1)
    means.sort()

    def q(p: float) -> float:
        h = (n_boot - 1) * p
        lo = int(math.floor(h))
        return float(means[lo] + (h - lo) * (means[min(lo + 1, n_boot - 1)] - means[lo]))

    alpha = (1 - confidence) / 2
    return q(alpha), q(1 - alpha)


@pytest.mark.parametrize("n, n_boot, confidence, seed", [(300, 4000, 0.95, 1), (7, 500, 0.9, 3), (40_000, 120, 0.95, 0)])
def test_bootstrap_is_the_percentile_bootstrap_of_the_seeded_resamples(n, n_boot, confidence, seed):
    rng = np.random.default_rng(10 + n)
    v = (rng.random(n) < 0.6).astype(float) - (rng.random(n) < 0.3)  # paired differences in {-1, 0, 1}
    ci = stats.bootstrap_mean_ci(v, n_boot=n_boot, confidence=confidence, seed=seed)
    lo, hi = _reference_percentile_bootstrap(v, n_boot, confidence, seed)
    assert ci.estimate == v.mean()
    assert ci.low == pytest.approx(lo, abs=1e-12) and ci.high == pytest.approx(hi, abs=1e-12)
    assert ci.low <= ci.estimate <= ci.high


def test_bootstrap_edge_cases():
    v = np.array([0.0, 1.0, 1.0, 0.0, 1.0, np.nan])
    assert stats.bootstrap_mean_ci(v, seed=4) == stats.bootstrap_mean_ci(v[:5], seed=4)  # NaN dropped
    assert stats.bootstrap_mean_ci(v, seed=4) == stats.bootstrap_mean_ci(v, seed=4)
    w = np.random.default_rng(0).normal(size=30)
    assert stats.bootstrap_mean_ci(w, n_boot=200, seed=4) != stats.bootstrap_mean_ci(w, n_boot=200, seed=5)
    assert stats.bootstrap_mean_ci(np.ones(10)) == stats.Interval(1.0, 1.0, 1.0)
    assert stats.bootstrap_mean_ci([0.25]) == stats.Interval(0.25, 0.25, 0.25)
    empty = stats.bootstrap_mean_ci(np.array([np.nan]))
    assert all(math.isnan(x) for x in (empty.estimate, empty.low, empty.high))
    with pytest.raises(ValueError, match="confidence"):
        stats.bootstrap_mean_ci(v, confidence=1.0)
    with pytest.raises(ValueError, match="n_boot"):
        stats.bootstrap_mean_ci(v, n_boot=0)


# ----------------------------------------------------------------------------- quadratic fit
def test_quadratic_fit_recovers_a_parabola_and_its_vertex():
    x = np.array([0.0, 0.5, 1.0, 2.0, 3.0, np.nan])
    fit = stats.quadratic_fit(x, 1 - (x - 1.5) ** 2)  # a = -1, b = 3, c = -1.25, vertex 1.5
    assert fit.ok and fit.n == 5
    assert (fit.a, fit.b, fit.c, fit.optimum, fit.r2) == pytest.approx((-1.0, 3.0, -1.25, 1.5, 1.0), abs=1e-9)
    assert fit(np.array([1.5])) == pytest.approx([1.0])
    assert fit.to_dict().keys() == {"a", "b", "c", "r2", "optimum", "n"}
    assert stats.quadratic_fit(x, (x - 1.5) ** 2).optimum is None  # a U, not an inverted U
    # points off any parabola: coefficients from the least-squares normal equations, R^2 = 1 - SSres / SStot
    xs, ys = np.arange(4.0), np.array([0.0, 1.0, 0.0, 1.0])
    coef, *_ = np.linalg.lstsq(np.vander(xs, 3), ys, rcond=None)
    resid = ys - np.vander(xs, 3) @ coef
    f = stats.quadratic_fit(xs, ys)
    assert (f.a, f.b, f.c) == pytest.approx(tuple(coef), abs=1e-12)
    assert f.r2 == pytest.approx(1 - (resid @ resid) / 1.0, abs=1e-12)  # SStot = 4 * 0.25


def test_quadratic_fit_needs_three_distinct_x():
    none = stats.quadratic_fit([1.0, 1.0, 2.0, 2.0], [0.0, 1.0, 2.0, 3.0])
    assert not none.ok and none.n == 4 and none.to_dict() == {"a": None, "b": None, "c": None, "r2": None, "optimum": None, "n": 4}
    with pytest.raises(ValueError):
        none([1.0])
    flat = stats.quadratic_fit([0.0, 1.0, 2.0], [3.0, 3.0, 3.0])
    assert flat.ok and flat.r2 is None
