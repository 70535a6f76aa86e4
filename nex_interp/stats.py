"""Statistics shared across the package, as thin wrappers over scipy with the package's conventions.

* :func:`pearson`, :func:`spearman`, :func:`kendall`: correlation coefficients over the pairs where
  both values are finite; NaN when fewer than two pairs remain or either side is constant (the
  coefficient is undefined there). ``scipy.stats.pearsonr`` / ``spearmanr`` / ``kendalltau``.
* :func:`bootstrap_mean_ci`: a mean with its percentile bootstrap interval
  (``scipy.stats.bootstrap``, ``method="percentile"``). Paired comparisons pass the per-unit
  differences (e.g. ``correct - baseline`` per problem), so both arms share each resample.
* :func:`quadratic_fit`: least-squares ``y = a x^2 + b x + c`` with its R^2 and, when the parabola
  opens downward, its vertex (the optimum of an inverted U).

Used by model ranking, the sensitivity sweep, best-of-N selection, the interventions' results
table, the demo and the plots. scipy is imported inside the functions (importing this module is free).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: default number of bootstrap resamples
N_BOOT = 2000
#: bootstrap resamples are drawn in batches of at most this many indices (bounds memory)
_BOOT_BATCH_INDICES = 2_000_000


# ------------------------------------------------------------------------------ correlations


def finite_pairs(x, y) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` as float64 arrays restricted to the positions where both are finite."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"correlation needs two one-dimensional arrays of equal length, got shapes {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def _correlation(fn, x, y) -> float:
    x, y = finite_pairs(x, y)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(fn(x, y).statistic)


def pearson(x, y) -> float:
    """Pearson's r over the finite pairs (NaN when undefined).

    >>> pearson([1.0, 2.0, 3.0, float("nan")], [2.0, 4.0, 6.5, 1.0]) > 0.99
    True
    """
    from scipy.stats import pearsonr

    return _correlation(pearsonr, x, y)


def spearman(x, y) -> float:
    """Spearman's rank correlation rho over the finite pairs (NaN when undefined).

    >>> round(spearman([1, 2, 3, 4], [10, 20, 15, 40]), 12)
    0.8
    """
    from scipy.stats import spearmanr

    return _correlation(spearmanr, x, y)


def kendall(x, y) -> float:
    """Kendall's tau-b over the finite pairs (NaN when undefined).

    >>> round(kendall([1, 2, 3, 4], [10, 20, 15, 40]), 6)
    0.666667
    """
    from scipy.stats import kendalltau

    return _correlation(kendalltau, x, y)


# ------------------------------------------------------------------------------ bootstrap


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile-bootstrap interval."""

    estimate: float
    low: float
    high: float


def bootstrap_mean_ci(values, n_boot: int = N_BOOT, confidence: float = 0.95, seed: int = 0) -> Interval:
    """Mean of ``values`` (one per unit, e.g. per problem) with a percentile bootstrap interval.

    Units are resampled with replacement ``n_boot`` times by ``scipy.stats.bootstrap`` drawing from
    ``numpy.random.default_rng(seed)``; the interval is the ``(1 - confidence) / 2`` and
    ``1 - (1 - confidence) / 2`` quantiles (linear interpolation) of the resampled means. NaN values
    (units a method could not be evaluated on) are dropped first; no values gives NaN everywhere, one
    value gives that value three times (every resample is that value).

    >>> bootstrap_mean_ci([1.0, 1.0, 1.0])
    Interval(estimate=1.0, low=1.0, high=1.0)
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be a positive number of resamples, got {n_boot}")
    if v.size == 1:  # scipy needs two observations; every resample of one value is that value
        return Interval(float(v[0]), float(v[0]), float(v[0]))
    from scipy.stats import bootstrap

    res = bootstrap(
        (v,), np.mean, n_resamples=int(n_boot), batch=max(1, _BOOT_BATCH_INDICES // v.size), vectorized=True,
        confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
    )
    ci = res.confidence_interval
    return Interval(float(v.mean()), float(ci.low), float(ci.high))


# ------------------------------------------------------------------------------ quadratic fit


@dataclass(frozen=True)
class QuadraticFit:
    """Least-squares ``y = a x^2 + b x + c`` over ``n`` finite points.

    ``r2`` is None when ``y`` is constant; ``optimum`` is the vertex ``-b / (2a)`` when ``a < 0``
    (an inverted U), else None. With fewer than 3 distinct ``x`` nothing is fitted: ``a``, ``b``,
    ``c``, ``r2`` and ``optimum`` are all None.
    """

    a: float | None
    b: float | None
    c: float | None
    r2: float | None
    optimum: float | None
    n: int

    @property
    def ok(self) -> bool:
        return self.a is not None

    def __call__(self, x) -> np.ndarray:
        if not self.ok:
            raise ValueError("no quadratic was fitted (fewer than 3 distinct x)")
        x = np.asarray(x, dtype=np.float64)
        return self.a * x**2 + self.b * x + self.c

    def to_dict(self) -> dict:
        """``{"r2", "optimum", "a", "b", "c", "n"}`` (the demo's ``inverted_u`` entries)."""
        return asdict(self)


def quadratic_fit(x, y) -> QuadraticFit:
    """Fit ``y = a x^2 + b x + c`` by least squares (``numpy.polyfit``) over the finite pairs.

    >>> fit = quadratic_fit([0, 1, 2, 3, 4], [0, 3, 4, 3, 0])
    >>> round(fit.a, 9), round(fit.optimum, 9), round(fit.r2, 9)
    (-1.0, 2.0, 1.0)
    """
    x, y = finite_pairs(x, y)
    if len(x) < 3 or len(np.unique(x)) < 3:
        return QuadraticFit(None, None, None, None, None, int(len(x)))
    a, b, c = np.polyfit(x, y, 2)
    resid = y - (a * x**2 + b * x + c)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else None
    optimum = float(-b / (2 * a)) if a < 0 else None
    return QuadraticFit(float(a), float(b), float(c), r2, optimum, int(len(x)))
