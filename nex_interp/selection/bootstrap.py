"""Bootstrap confidence intervals over problems (the unit that is sampled in best-of-N)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: default number of bootstrap resamples
N_BOOT = 2000


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile-bootstrap interval."""

    estimate: float
    low: float
    high: float


def bootstrap_mean_ci(
    values: np.ndarray, n_boot: int = N_BOOT, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Mean of ``values`` (one per problem) with a percentile bootstrap interval.

    Problems are resampled with replacement ``n_boot`` times from ``numpy.random.default_rng(seed)``;
    the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the
    resampled means. NaN values (problems a method could not be evaluated on) are dropped first;
    no values gives NaN everywhere.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // v.size)  # bound memory: at most ~2M indices at a time
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, v.size, size=(stop - start, v.size))
        means[start:stop] = v[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return Interval(float(v.mean()), float(lo), float(hi))
