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


from .params import SEED_DRAWS  # noqa: E402


def _seed_draws() -> tuple[float, float, float]:
    return SEED_DRAWS


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
    scale = np.maximum(np.max(np.where(valid, np.abs(xc), 0.0), axis=1), 1e-300)

    def assign(c: np.ndarray, xc: np.ndarray, valid: np.ndarray, scale: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Nearest-centre labels of the series ``rows`` (their rows of xc/valid/scale given), marking near-ties."""
        d0 = (c[:, 0:1] * c[:, 0:1]) + (-2.0 * (xc * c[:, 0:1]))
        d1 = (c[:, 1:2] * c[:, 1:2]) + (-2.0 * (xc * c[:, 1:2]))
        near = np.abs(d1 - d0) <= _TIE * (scale * scale)[:, None]
        unsure[rows[np.any(near & valid, axis=1)]] = True
        return (d1 < d0) & valid

    # Lloyd iterations on the still-active series only (row-wise arithmetic: a series' numbers do not
    # depend on the other series of the batch).
    labels = np.zeros_like(valid)
    strict = np.zeros(b, dtype=bool)
    ia = np.arange(b)
    xs, vs, ns, scs, tols = xc, valid, n, scale, tol
    labels_old = np.zeros_like(valid)
    first_iter = True
    for _ in range(KMEANS_MAX_ITER):
        cs = centres[ia]
        lab = assign(cs, xs, vs, scs, ia)
        cnt1 = lab.sum(axis=1)
        cnt0 = ns - cnt1
        unsure[ia[(cnt1 == 0) | (cnt0 == 0)]] = True  # empty cluster: the library relocates it
        s1 = np.cumsum(np.where(lab, xs, 0.0), axis=1)[:, -1]
        s0 = np.cumsum(np.where(vs & ~lab, xs, 0.0), axis=1)[:, -1]
        with np.errstate(divide="ignore", invalid="ignore"):
            new = np.stack([s0 * (1.0 / cnt0), s1 * (1.0 / cnt1)], axis=1)
        shift = np.sqrt((new - cs) ** 2)
        shift_tot = (shift**2).sum(axis=1)
        centres[ia] = new
        labels[ia] = lab
        same = np.all(lab == labels_old, axis=1) & (not first_iter)
        stop_tol = ~same & (shift_tot <= tols)
        unsure[ia[~same & (np.abs(shift_tot - tols) <= _TIE * np.maximum(tols, 1e-300))]] = True
        strict[ia[same]] = True
        keep = ~(same | stop_tol)
        first_iter = False
        if not keep.any():
            break
        labels_old = lab
        if not keep.all():
            ia = ia[keep]
            xs, vs, ns, scs, tols, labels_old = xs[keep], vs[keep], ns[keep], scs[keep], tols[keep], labels_old[keep]
    relabel = np.flatnonzero(~strict)
    if len(relabel):
        labels[relabel] = assign(centres[relabel], xc[relabel], valid[relabel], scale[relabel], relabel)
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

    def m_step(r0: np.ndarray, r1: np.ndarray, x: np.ndarray,
               xx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nk = np.stack([r0.sum(axis=1), r1.sum(axis=1)], axis=1) + 10 * _EPS64
        means = np.stack([(r0 * x).sum(axis=1), (r1 * x).sum(axis=1)], axis=1) / nk
        avg_x2 = np.stack([(r0 * xx).sum(axis=1), (r1 * xx).sum(axis=1)], axis=1) / nk
        cov = avg_x2 - means**2 + REG_COVAR
        return nk, means, cov

    def risky(cov: np.ndarray, big: np.ndarray) -> np.ndarray:
        # A variance this close to 0 (or data this large) leaves its sign to rounding: let the library decide.
        return np.any(cov <= 0.5 * REG_COVAR, axis=1) | (big > 1e8)

    nk, means, cov = m_step(resp0, resp1, x, xx)
    weights = nk / n[:, None]
    unsure |= risky(cov, big)
    failed |= np.any(cov <= 0.0, axis=1)
    cov = np.where(cov > 0, cov, 1.0)
    prec_chol = 1.0 / np.sqrt(cov)
    lower = np.full(b, -np.inf)
    # EM on the still-active series only: every step is row-wise, so a series' numbers do not depend on
    # which other series share the batch (the padded width stays the same).
    ia = np.flatnonzero(~failed)
    xs, xxs, vs, ns, bigs = x[ia], xx[ia], valid[ia], n[ia], big[ia]
    for _ in range(EM_MAX_ITER):
        if not len(ia):
            break
        ms, pcs, ws = means[ia], prec_chol[ia], weights[ia]
        prec = pcs**2
        logp = []
        for j in range(2):
            mj = ms[:, j:j + 1]
            pj = prec[:, j:j + 1]
            lp = ((mj**2 * pj) - 2.0 * (xs * (mj * pj))) + (xxs * pj)
            logp.append(-0.5 * (LOG_2PI + lp) + np.log(pcs[:, j:j + 1]) + np.log(ws[:, j:j + 1]))
        a, c = logp
        top = np.maximum(a, c)
        low = np.minimum(a, c)
        tie = a == c
        s = np.where(tie, 0.0, np.exp(low - top))
        norm = (np.log1p(s) + np.where(tie, math.log(2.0), 0.0)) + top
        lb = _masked_sum(norm, vs) / ns
        r0 = np.where(vs, np.exp(a - norm), 0.0)
        r1 = np.where(vs, np.exp(c - norm), 0.0)
        nk_new, means_new, cov_new = m_step(r0, r1, xs, xxs)
        unsure[ia[risky(cov_new, bigs)]] = True
        ok = ~np.any(cov_new <= 0.0, axis=1)
        failed[ia[~ok]] = True
        w_new = nk_new / nk_new.sum(axis=1, keepdims=True)
        iu = ia[ok]
        means[iu] = means_new[ok]
        cov[iu] = cov_new[ok]
        weights[iu] = w_new[ok]
        prec_chol[iu] = 1.0 / np.sqrt(np.where(cov_new[ok] > 0, cov_new[ok], 1.0))
        change = np.abs(lb - lower[ia])
        unsure[ia[ok & (np.abs(change - EM_TOL) <= 1e-7 * EM_TOL)]] = True
        lower[iu] = lb[ok]
        keep = ok & ~(change < EM_TOL)
        if not keep.all():
            ia = ia[keep]
            xs, xxs, vs, ns, bigs = xs[keep], xxs[keep], vs[keep], ns[keep], bigs[keep]
    return TwoGaussians(means, np.maximum(cov, VAR_FLOOR), unsure, failed)


def sticky_viterbi(x: np.ndarray, valid: np.ndarray, g: TwoGaussians, rho: float) -> np.ndarray:
    """hmmlearn ``GaussianHMM(2, "diag")`` Viterbi states (int8 [B, N]) with start [0.5, 0.5] and
    transitions [[rho, 1-rho], [1-rho, rho]]; marks near-ties in ``g.unsure``."""
    b, n_max = x.shape
    n = valid.sum(axis=1)
    var = np.maximum(g.variances, np.finfo(float).tiny)
    logf = [-0.5 * ((LOG_2PI + np.log(var[:, j:j + 1])) + (x - g.means[:, j:j + 1]) ** 2 / var[:, j:j + 1])
            for j in range(2)]
    lf = np.stack([logf[0].T, logf[1].T], axis=1)  # [N, 2, B]: one contiguous [2, B] slab per step
    log_start = math.log(0.5)
    lt = np.log(np.array([[rho, 1 - rho], [1 - rho, rho]]))
    lat = np.empty((n_max, 2, b))
    lat[0] = log_start + lf[0]
    from0, from1 = lt[0][:, None], lt[1][:, None]
    for t in range(1, n_max):
        p = lat[t - 1]
        np.add(np.maximum(p[0:1] + from0, p[1:2] + from1), lf[t], out=lat[t])
    lat0, lat1 = lat[:, 0, :].T, lat[:, 1, :].T  # [B, N]
    rows = np.arange(b)
    last = n - 1
    end0 = lat0[rows, last]
    end1 = lat1[rows, last]
    unsure = g.unsure
    unsure |= np.abs(end1 - end0) <= _TIE * np.maximum(np.abs(end0), 1.0)
    end_state = end1 > end0
    # Backtracking: state[t] = (lat1[t] + lt[1, s] >= lat0[t] + lt[0, s]) with s = state[t + 1]. Both
    # possible decisions (s = 0 and s = 1) are computed for every step at once, then chained from the end:
    # a step whose two decisions agree fixes its state; otherwise it copies (or flips) the next state.
    v0 = [lat0 + lt[0, s] for s in (0, 1)]
    v1 = [lat1 + lt[1, s] for s in (0, 1)]
    dec = [v1[s] >= v0[s] for s in (0, 1)]
    tie = [np.abs(v1[s] - v0[s]) <= _TIE * np.maximum(np.abs(v0[s]), 1.0) for s in (0, 1)]
    cols = np.arange(n_max)[None, :]
    inside = cols < last[:, None]
    at_end = cols == last[:, None]
    fixed = (inside & (dec[0] == dec[1])) | at_end
    value = np.where(at_end, end_state[:, None], dec[0])
    flip = inside & dec[0] & ~dec[1]
    nxt = np.minimum.accumulate(np.where(fixed, cols, n_max - 1)[:, ::-1], axis=1)[:, ::-1]
    flips = np.cumsum(flip[:, ::-1], axis=1)[:, ::-1]
    r = rows[:, None]
    st = value[r, nxt] ^ (((flips - flips[r, nxt]) & 1) == 1)
    st &= cols <= last[:, None]
    after = np.zeros_like(st)
    after[:, :-1] = st[:, 1:]
    unsure |= np.any(inside & np.where(after, tie[1], tie[0]), axis=1)
    return st.astype(np.int8)
