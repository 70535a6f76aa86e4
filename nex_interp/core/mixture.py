"""A fast, batched equivalent of the two library calls of the phase step.

NEX-ALGORITHM.md fits scikit-learn's ``GaussianMixture(2, covariance_type="diag",
init_params="kmeans", random_state=0, max_iter=50, reg_covar=1e-6)`` to each response's z-scores
and decodes them with hmmlearn's ``GaussianHMM`` Viterbi. Importing scikit-learn alone costs
seconds and each fit ~10 ms, which would dominate ``nex run``. This module runs the same
computations, in the same order (k-means++ seeding with the draws of ``RandomState(0)``, Lloyd
iterations, EM with the same convergence test, the same Viterbi recursion and tie-breaking) on many
responses at once, as numpy operations over a padded ``[batch, rows]`` array.

Floating-point sums may differ from the libraries' BLAS sums in the last bits, so every decision that
a last-bit difference could flip (a near-tie in a k-means assignment, a seeding draw, a convergence
test, a Viterbi step, a near-zero variance) marks the series *unsure*; the caller then runs the
library path for that series (:func:`nex_interp.core.phases.library_phase_labels`). The library path
stays the oracle; ``tests/test_core_phases.py`` checks the two agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

REG_COVAR = 1e-6
EM_TOL = 1e-3
EM_MAX_ITER = 50
KMEANS_MAX_ITER = 300
KMEANS_TOL = 1e-4
VAR_FLOOR = 1e-6
LOG_2PI = math.log(2 * math.pi)
_EPS64 = float(np.finfo(np.float64).eps)
#: relative closeness under which a decision is treated as a tie that rounding could flip
_TIE = 1e-9


@lru_cache(maxsize=1)
def _seed_draws() -> tuple[float, float, float]:
    """The three uniforms k-means++ draws from a fresh ``RandomState(0)`` (first centre, two trials)."""
    rs = np.random.RandomState(0)
    u0 = float(rs.random_sample())
    u1, u2 = rs.random_sample(2)
    return u0, float(u1), float(u2)


@lru_cache(maxsize=4096)
def _first_centre(n: int) -> tuple[int, bool]:
    """Index ``RandomState.choice(n, p=ones/n)`` returns for the first draw, and whether it is unsure."""
    p = np.ones(n) / n
    cdf = p.cumsum()
    cdf /= cdf[-1]
    u0 = _seed_draws()[0]
    i = int(cdf.searchsorted(u0, side="right"))
    unsure = bool(np.any(np.abs(cdf - u0) <= _TIE))
    return i, unsure


@dataclass
class TwoGaussians:
    """Fitted emissions per series: means [B, 2], variances [B, 2] (clipped at VAR_FLOOR), unsure [B],
    failed [B] (the library fit would raise: the caller labels E = z > 0)."""

    means: np.ndarray
    variances: np.ndarray
    unsure: np.ndarray
    failed: np.ndarray


def _masked_sum(a: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.where(valid, a, 0.0).sum(axis=1)


def _kmeans_labels(x: np.ndarray, valid: np.ndarray, n: np.ndarray, unsure: np.ndarray) -> np.ndarray:
    """scikit-learn ``KMeans(2, n_init=1, random_state=RandomState(0))`` labels (bool: cluster 1)."""
    b, _ = x.shape
    rows = np.arange(b)
    mean = _masked_sum(x, valid) / n
    xc = np.where(valid, x - mean[:, None], 0.0)
    xsq = xc * xc
    first = np.empty(b, dtype=np.int64)
    for k, nk in enumerate(n):
        first[k], u = _first_centre(int(nk))
        unsure[k] |= u
    c0 = xc[rows, first]

    def sqdist(c: np.ndarray) -> np.ndarray:
        d = ((-2.0 * (c[:, None] * xc)) + (c * c)[:, None]) + xsq
        return np.where(valid, np.maximum(d, 0.0), 0.0)

    closest = sqdist(c0)
    pot = closest.sum(axis=1)
    cum = np.cumsum(closest, axis=1)
    _, u1, u2 = _seed_draws()
    cands = []
    pots = []
    for u in (u1, u2):
        rv = u * pot
        cand = np.minimum((cum < rv[:, None]).sum(axis=1), n - 1)
        near = np.abs(cum - rv[:, None]) <= _TIE * np.maximum(np.abs(rv), 1e-300)[:, None]
        unsure |= np.any(near & valid, axis=1)
        cands.append(cand)
        pots.append(np.minimum(closest, sqdist(xc[rows, cand])).sum(axis=1))
    best = np.where(pots[1] < pots[0], 1, 0)
    differ = cands[0] != cands[1]
    unsure |= differ & (np.abs(pots[1] - pots[0]) <= _TIE * np.maximum(np.abs(pots[0]), 1e-300))
    c1 = xc[rows, np.where(best == 1, cands[1], cands[0])]
    centres = np.stack([c0, c1], axis=1)

    var = _masked_sum((xc - (_masked_sum(xc, valid) / n)[:, None]) ** 2, valid) / n
    tol = var * KMEANS_TOL
    labels_old = np.zeros_like(valid)
    first_iter = True
    active = np.ones(b, dtype=bool)
    strict = np.zeros(b, dtype=bool)
    labels = labels_old
    scale = np.maximum(np.max(np.where(valid, np.abs(xc), 0.0), axis=1), 1e-300)

    def assign(c: np.ndarray) -> np.ndarray:
        d0 = (c[:, 0:1] * c[:, 0:1]) + (-2.0 * (xc * c[:, 0:1]))
        d1 = (c[:, 1:2] * c[:, 1:2]) + (-2.0 * (xc * c[:, 1:2]))
        near = np.abs(d1 - d0) <= _TIE * (scale * scale)[:, None]
        np.logical_or(unsure, np.any(near & valid & active[:, None], axis=1), out=unsure)
        return (d1 < d0) & valid

    for _ in range(KMEANS_MAX_ITER):
        lab = assign(centres)
        cnt1 = lab.sum(axis=1)
        cnt0 = n - cnt1
        unsure[active & ((cnt1 == 0) | (cnt0 == 0))] = True  # empty cluster: the library relocates it
        s1 = np.cumsum(np.where(lab, xc, 0.0), axis=1)[:, -1]
        s0 = np.cumsum(np.where(valid & ~lab, xc, 0.0), axis=1)[:, -1]
        with np.errstate(divide="ignore", invalid="ignore"):
            new = np.stack([s0 * (1.0 / cnt0), s1 * (1.0 / cnt1)], axis=1)
        shift = np.sqrt((new - centres) ** 2)
        shift_tot = (shift**2).sum(axis=1)
        centres = np.where(active[:, None], new, centres)
        labels = np.where(active[:, None], lab, labels)
        same = np.all(lab == labels_old, axis=1) & (not first_iter)
        stop_strict = active & same
        stop_tol = active & ~same & (shift_tot <= tol)
        unsure |= active & ~same & (np.abs(shift_tot - tol) <= _TIE * np.maximum(tol, 1e-300))
        strict |= stop_strict
        labels_old = np.where(active[:, None], lab, labels_old)
        active &= ~(stop_strict | stop_tol)
        first_iter = False
        if not active.any():
            break
    relabel = ~strict
    active = relabel.copy()
    if relabel.any():
        labels = np.where(relabel[:, None], assign(centres), labels)
    return labels


def fit_two_gaussians(x: np.ndarray, valid: np.ndarray) -> TwoGaussians:
    """scikit-learn's 2-component diagonal ``GaussianMixture`` (k-means init, random_state 0,
    max_iter 50, reg_covar 1e-6) on each row of ``x`` (padded; ``valid`` marks real points)."""
    b, _ = x.shape
    n = valid.sum(axis=1)
    unsure = np.zeros(b, dtype=bool)
    failed = np.zeros(b, dtype=bool)
    lab = _kmeans_labels(x, valid, n, unsure)
    resp1 = lab.astype(np.float64)
    resp0 = (valid & ~lab).astype(np.float64)
    xx = x * x
    big = np.max(np.where(valid, xx, 0.0), axis=1)

    def m_step(r0: np.ndarray, r1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nk = np.stack([r0.sum(axis=1), r1.sum(axis=1)], axis=1) + 10 * _EPS64
        means = np.stack([(r0 * x).sum(axis=1), (r1 * x).sum(axis=1)], axis=1) / nk
        avg_x2 = np.stack([(r0 * xx).sum(axis=1), (r1 * xx).sum(axis=1)], axis=1) / nk
        cov = avg_x2 - means**2 + REG_COVAR
        return nk, means, cov

    def check(cov: np.ndarray, act: np.ndarray) -> None:
        # A variance this close to 0 (or data this large) leaves its sign to rounding: let the library decide.
        risky = np.any(cov <= 0.5 * REG_COVAR, axis=1) | (big > 1e8)
        unsure[act & risky] = True

    nk, means, cov = m_step(resp0, resp1)
    weights = nk / n[:, None]
    active = np.ones(b, dtype=bool)
    check(cov, active)
    failed |= np.any(cov <= 0.0, axis=1)
    active &= ~failed
    cov = np.where(cov > 0, cov, 1.0)
    prec_chol = 1.0 / np.sqrt(cov)
    lower = np.full(b, -np.inf)
    for _ in range(EM_MAX_ITER):
        prec = prec_chol**2
        logp = []
        for j in range(2):
            mj = means[:, j:j + 1]
            pj = prec[:, j:j + 1]
            lp = ((mj**2 * pj) - 2.0 * (x * (mj * pj))) + (xx * pj)
            logp.append(-0.5 * (LOG_2PI + lp) + np.log(prec_chol[:, j:j + 1]) + np.log(weights[:, j:j + 1]))
        a, c = logp
        top = np.maximum(a, c)
        low = np.minimum(a, c)
        tie = a == c
        s = np.where(tie, 0.0, np.exp(low - top))
        norm = (np.log1p(s) + np.where(tie, math.log(2.0), 0.0)) + top
        lb = _masked_sum(norm, valid) / n
        r0 = np.where(valid, np.exp(a - norm), 0.0)
        r1 = np.where(valid, np.exp(c - norm), 0.0)
        nk_new, means_new, cov_new = m_step(r0, r1)
        check(cov_new, active)
        bad = active & np.any(cov_new <= 0.0, axis=1)
        failed |= bad
        active &= ~bad
        w_new = nk_new / nk_new.sum(axis=1, keepdims=True)
        upd = active[:, None]
        means = np.where(upd, means_new, means)
        cov = np.where(upd, cov_new, cov)
        weights = np.where(upd, w_new, weights)
        prec_chol = np.where(upd, 1.0 / np.sqrt(np.where(cov > 0, cov, 1.0)), prec_chol)
        change = np.abs(lb - lower)
        unsure[active & (np.abs(change - EM_TOL) <= 1e-7 * EM_TOL)] = True
        lower = np.where(active, lb, lower)
        active &= ~(change < EM_TOL)
        if not active.any():
            break
    return TwoGaussians(means, np.maximum(cov, VAR_FLOOR), unsure, failed)


def sticky_viterbi(x: np.ndarray, valid: np.ndarray, g: TwoGaussians, rho: float) -> np.ndarray:
    """hmmlearn ``GaussianHMM(2, "diag")`` Viterbi states (int8 [B, N]) with start [0.5, 0.5] and
    transitions [[rho, 1-rho], [1-rho, rho]]; marks near-ties in ``g.unsure``."""
    b, n_max = x.shape
    n = valid.sum(axis=1)
    var = np.maximum(g.variances, np.finfo(float).tiny)
    logf = np.stack(
        [-0.5 * ((LOG_2PI + np.log(var[:, j:j + 1])) + (x - g.means[:, j:j + 1]) ** 2 / var[:, j:j + 1]) for j in range(2)],
        axis=2,
    )
    log_start = math.log(0.5)
    lt = np.log(np.array([[rho, 1 - rho], [1 - rho, rho]]))
    lat = np.empty((b, n_max, 2))
    lat[:, 0, :] = log_start + logf[:, 0, :]
    from0, from1 = lt[0], lt[1]
    for t in range(1, n_max):
        p = lat[:, t - 1, :]
        np.add(np.maximum(p[:, 0:1] + from0, p[:, 1:2] + from1), logf[:, t, :], out=lat[:, t, :])
    states = np.zeros((b, n_max), dtype=np.int8)
    rows = np.arange(b)
    last = n - 1
    end0 = lat[rows, last, 0]
    end1 = lat[rows, last, 1]
    unsure = g.unsure
    unsure |= np.abs(end1 - end0) <= _TIE * np.maximum(np.abs(end0), 1.0)
    prev = np.where(end1 > end0, 1, 0).astype(np.int8)
    states[rows, last] = prev
    for t in range(n_max - 2, -1, -1):
        inside = t < last
        v0 = lat[:, t, 0] + lt[0, prev]
        v1 = lat[:, t, 1] + lt[1, prev]
        unsure |= inside & (np.abs(v1 - v0) <= _TIE * np.maximum(np.abs(v0), 1.0))
        st = np.where(v1 >= v0, 1, 0).astype(np.int8)
        prev = np.where(inside, st, prev)
        states[:, t] = np.where(inside, st, states[:, t])
    return states
