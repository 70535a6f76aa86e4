"""Explore/exploit phase segmentation of a response's novelty slopes (NEX-ALGORITHM.md, step 3).

``y = log1p(slope)`` is detrended against ``log1p(row)``, robustly standardised (median/MAD), fitted
with a 2-component Gaussian mixture and decoded with a sticky 2-state HMM; the state with the larger
mean is Explore (E). Runs shorter than ``min_run`` are then merged into their neighbours.

Two equivalent paths decode the z-scores: the library path (scikit-learn + hmmlearn, exactly as the
spec names them; imported lazily) and the batched fast path of :mod:`.mixture`, which hands any
series it cannot decide bit-safely to the library path.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import kernel
from .params import EPS, SEED_DRAWS

# the numpy decoder (.mixture) and the helpers of the numpy path (.cycles) load on first use: with the
# compiled kernels `nex run` needs neither

if TYPE_CHECKING:  # annotations only: the core must not need jaxtyping at run time
    from jaxtyping import Bool, Float

#: responses with fewer kept rows than this are all Exploit
MIN_PHASE_ROWS = 3
BACKENDS = ("fast", "library")


@lru_cache(maxsize=1024)
def _log_rows(n: int) -> tuple[np.ndarray, float, np.ndarray, float]:
    """``x = log1p(row)`` for n rows, its mean, centred values and sum of squares (read-only, cached)."""
    x = np.log1p(np.arange(n, dtype=np.float64))
    xm = x.mean()
    dx = x - xm
    x.flags.writeable = False
    dx.flags.writeable = False
    return x, xm, dx, float(np.dot(dx, dx))


def robust_z(slopes: Float[np.ndarray, " n"]) -> tuple[np.ndarray, bool]:
    """z-scores of the detrended log-slopes, and whether the MAD was usable (else ``z = r - med``)."""
    from .cycles import median

    y = np.log1p(np.maximum(np.asarray(slopes, dtype=np.float64), 0.0))
    x, xm, dx, denom = _log_rows(len(y))
    if denom > 0 and np.all(np.isfinite(y)):
        ym = y.mean()
        b = float(np.dot(dx, y - ym)) / denom
        a = ym - b * xm
        r = y - (a + b * x)
    else:
        r = y - median(y)
    med = median(r)
    mad = median(np.abs(r - med))
    if not np.isfinite(mad) or mad <= 0:
        return r - med, False
    return (r - med) / (mad + EPS), True


def smooth_runs(labels: Bool[np.ndarray, " n"], min_run: int) -> np.ndarray:
    """Min-run smoothing in place, walking runs left to right: a run shorter than ``min_run`` takes the
    label of the row before it (a leading run: of the row after it). Returns ``labels``."""
    n = len(labels)
    if n == 0 or min_run <= 1:
        return labels
    starts = np.flatnonzero(np.concatenate(([True], labels[1:] != labels[:-1])))
    stops = np.append(starts[1:], n)
    short = np.flatnonzero(stops - starts < min_run)
    for k in short.tolist():  # runs are fixed by the original labels; only their values change in place
        i, j = int(starts[k]), int(stops[k])
        if i > 0:
            labels[i:j] = labels[i - 1]
        elif j < n:
            labels[i:j] = labels[j]
    return labels


def library_phase_labels(z: Float[np.ndarray, " n"], rho: float) -> np.ndarray:
    """E labels from scikit-learn's GaussianMixture + hmmlearn's GaussianHMM Viterbi (the spec's exact
    calls); ``z > 0`` if either raises, as the spec prescribes."""
    from hmmlearn.hmm import GaussianHMM

    from .mixture import VAR_FLOOR
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    z = np.asarray(z, dtype=np.float64)
    X = z.reshape(-1, 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            gmm = GaussianMixture(2, covariance_type="diag", init_params="kmeans", random_state=0, max_iter=50,
                                  reg_covar=1e-6).fit(X)
            means = gmm.means_
            hmm = GaussianHMM(2, covariance_type="diag", init_params="", params="")
            hmm.startprob_ = np.array([0.5, 0.5])
            hmm.transmat_ = np.array([[rho, 1 - rho], [1 - rho, rho]])
            hmm.means_ = means
            hmm.covars_ = np.maximum(gmm.covariances_, VAR_FLOOR)
            _, states = hmm.decode(X, algorithm="viterbi")
        return states == int(np.argmax(means[:, 0]))
    except Exception:  # noqa: BLE001 -- the spec: "If anything in this step raises, E = z > 0"
        return z > 0


#: the fast decoder pads series to a common length; a batch holds at most about this many cells
BATCH_CELLS = 262_144


def _decode_batch(zs: Sequence[np.ndarray], rho: float) -> list[np.ndarray]:
    lengths = np.array([len(z) for z in zs])
    n_max = int(lengths.max())
    x = np.zeros((len(zs), n_max))
    valid = np.arange(n_max)[None, :] < lengths[:, None]
    for k, z in enumerate(zs):
        x[k, : len(z)] = z
    with np.errstate(all="ignore"):
        from .mixture import fit_two_gaussians, sticky_viterbi

        g = fit_two_gaussians(x, valid)
        states = sticky_viterbi(x, valid, g, rho)
    e_state = np.where(g.means[:, 1] > g.means[:, 0], 1, 0)
    out = []
    for k, z in enumerate(zs):
        if g.unsure[k]:
            out.append(library_phase_labels(z, rho))
        elif g.failed[k]:
            out.append(z > 0)
        else:
            out.append(states[k, : len(z)] == e_state[k])
    return out


def _fast_phase_labels(zs: Sequence[np.ndarray], rho: float) -> list[np.ndarray]:
    """Fast-path labels, series batched by similar length so that padding stays small and bounded."""
    order = sorted(range(len(zs)), key=lambda k: len(zs[k]))
    out: list[np.ndarray] = [np.zeros(0, dtype=bool)] * len(zs)
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and (stop - start + 1) * len(zs[order[stop]]) <= BATCH_CELLS:
            stop += 1
        group = order[start:stop]
        for k, lab in zip(group, _decode_batch([zs[k] for k in group], rho)):
            out[k] = lab
        start = stop
    return out


def phase_labels_flat(slopes: np.ndarray, lengths: np.ndarray, rho: float = 0.95, min_run: int = 2) -> np.ndarray:
    """:func:`segment_phases_batch` on series given concatenated (``lengths`` each): E labels as one
    uint8 array. Uses the compiled kernel when built (series it cannot decide bit-safely go to the
    libraries), else the batched numpy decoder."""
    slopes = np.asarray(slopes, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    k = kernel.load()
    if k is None:
        parts = np.split(slopes, np.cumsum(lengths)[:-1]) if len(lengths) else []
        labels = segment_phases_batch(parts, rho, min_run)
        return np.concatenate(labels).astype(np.uint8) if labels else np.zeros(0, np.uint8)
    labels, status, z = kernel.phases(k, slopes, lengths, rho, min_run, SEED_DRAWS)
    if status.any():
        starts = np.cumsum(lengths) - lengths
        for i in np.flatnonzero(status).tolist():
            a, b = int(starts[i]), int(starts[i] + lengths[i])
            labels[a:b] = smooth_runs(np.asarray(library_phase_labels(z[a:b], rho), dtype=bool).copy(), min_run)
    return labels


def segment_phases_batch(slopes: Sequence[np.ndarray], rho: float = 0.95, min_run: int = 2,
                         backend: str = "fast") -> list[np.ndarray]:
    """:func:`segment_phases` for many responses at once (one batched fit on the fast backend)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown phase backend {backend!r}: use one of {BACKENDS}")
    if backend == "fast" and kernel.load() is not None and len(slopes):
        lengths = np.array([len(s) for s in slopes], dtype=np.int64)
        flat = phase_labels_flat(np.concatenate([np.asarray(s, dtype=np.float64) for s in slopes]), lengths, rho,
                                 min_run)
        return [a.astype(bool) for a in np.split(flat, np.cumsum(lengths)[:-1])]
    labels: list[np.ndarray | None] = [None] * len(slopes)
    pending: list[int] = []
    zs: list[np.ndarray] = []
    for k, s in enumerate(slopes):
        if len(s) < MIN_PHASE_ROWS:
            labels[k] = np.zeros(len(s), dtype=bool)
            continue
        z, mad_ok = robust_z(s)
        if not mad_ok:
            labels[k] = smooth_runs(z > 0, min_run)
            continue
        pending.append(k)
        zs.append(z)
    if zs:
        decoded = _fast_phase_labels(zs, rho) if backend == "fast" else [library_phase_labels(z, rho) for z in zs]
        for k, lab in zip(pending, decoded):
            labels[k] = smooth_runs(np.asarray(lab, dtype=bool).copy(), min_run)
    return labels  # type: ignore[return-value]


def segment_phases(slopes: Float[np.ndarray, " n"], rho: float = 0.95, min_run: int = 2,
                   backend: str = "fast") -> Bool[np.ndarray, " n"]:
    """Explore (True) / Exploit (False) label per row of one response's novelty slopes.

    ``backend="library"`` uses scikit-learn and hmmlearn directly (slow to import); ``"fast"`` (default)
    gives the same labels from a numpy re-implementation, deferring to the library when unsure.
    """
    return segment_phases_batch([np.asarray(slopes, dtype=np.float64)], rho, min_run, backend)[0]
