"""Explore/exploit phase segmentation of a response's novelty slopes (docs/algorithm.md, step 3).

``y = log1p(slope)`` is detrended against ``log1p(row)``, robustly standardised (median/MAD), fitted
with a 2-component Gaussian mixture and decoded with a sticky 2-state HMM; the state with the larger
mean is Explore (E). Runs shorter than ``min_run`` are then merged into their neighbours.

Two paths decode the z-scores (docs/core.md):

* the plain path, :func:`library_phase_labels`: scikit-learn's ``GaussianMixture`` and hmmlearn's
  ``GaussianHMM``, called exactly as the algorithm states them (imported on first use);
* the compiled kernel (``_kernels.c``, through :func:`kernel.phases`), which re-does those two
  computations series by series and hands any series it cannot decide bit-safely (a near-tie) to
  :func:`library_phase_labels`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import kernel
from .cycles import median
from .params import EPS, SEED_DRAWS, NexParams

if TYPE_CHECKING:  # annotations only: the core must not need jaxtyping at run time
    from jaxtyping import Bool, Float

#: responses with fewer kept rows than this are all Exploit
MIN_PHASE_ROWS = 3
#: the floor put under the mixture's variances before they become the HMM's emission variances
VAR_FLOOR = 1e-6
#: "fast": the compiled kernel when built, else the libraries; "library": always the libraries
BACKENDS = ("fast", "library")


def robust_z(slopes: Float[np.ndarray, " n"]) -> tuple[np.ndarray, bool]:
    """z-scores of the detrended log-slopes, and whether the MAD was usable (else ``z = r - med``)."""
    y = np.log1p(np.maximum(np.asarray(slopes, dtype=np.float64), 0.0))
    x = np.log1p(np.arange(len(y), dtype=np.float64))
    dx = x - x.mean()
    denom = float(np.dot(dx, dx))
    if denom > 0 and np.all(np.isfinite(y)):
        ym = y.mean()
        b = float(np.dot(dx, y - ym)) / denom
        r = y - ((ym - b * x.mean()) + b * x)
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
    """E labels from scikit-learn's GaussianMixture + hmmlearn's GaussianHMM Viterbi (the algorithm's
    exact calls); ``z > 0`` if either raises, as the algorithm prescribes."""
    from hmmlearn.hmm import GaussianHMM
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
    except Exception:  # noqa: BLE001 -- the algorithm: "if anything in this step raises, E = z > 0"
        return z > 0


def plain_phase_labels(slopes: Float[np.ndarray, " n"], rho: float = NexParams.rho, min_run: int = NexParams.min_run) -> np.ndarray:
    """The phase step of one response on the plain path: z-scores, the libraries, min-run smoothing."""
    slopes = np.asarray(slopes, dtype=np.float64)
    if len(slopes) < MIN_PHASE_ROWS:
        return np.zeros(len(slopes), dtype=bool)
    z, mad_ok = robust_z(slopes)
    labels = library_phase_labels(z, rho) if mad_ok else z > 0
    return smooth_runs(np.array(labels, dtype=bool), min_run)


def phase_labels_flat(slopes: np.ndarray, lengths: np.ndarray, rho: float = NexParams.rho, min_run: int = NexParams.min_run) -> np.ndarray:
    """The phase step of many responses whose slopes are given concatenated (``lengths`` each): E labels
    as one uint8 array. With the compiled kernel when built (a series it cannot decide bit-safely goes
    to the libraries), else series by series on the plain path."""
    slopes = np.asarray(slopes, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    k = kernel.load()
    if k is None:
        parts = np.split(slopes, np.cumsum(lengths)[:-1]) if len(lengths) else []
        out = [plain_phase_labels(s, rho, min_run) for s in parts]
        return np.concatenate(out).astype(np.uint8) if out else np.zeros(0, np.uint8)
    labels, status, z = kernel.phases(k, slopes, lengths, rho, min_run, SEED_DRAWS)
    if status.any():
        starts = np.cumsum(lengths) - lengths
        for i in np.flatnonzero(status).tolist():
            a, b = int(starts[i]), int(starts[i] + lengths[i])
            labels[a:b] = smooth_runs(np.array(library_phase_labels(z[a:b], rho), dtype=bool), min_run)
    return labels


def segment_phases_batch(slopes: Sequence[np.ndarray], rho: float = NexParams.rho, min_run: int = NexParams.min_run,
                         backend: str = "fast") -> list[np.ndarray]:
    """:func:`segment_phases` for many responses at once."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown phase backend {backend!r}: use one of {BACKENDS}")
    if backend == "library" or not len(slopes):
        return [plain_phase_labels(s, rho, min_run) for s in slopes]
    lengths = np.array([len(s) for s in slopes], dtype=np.int64)
    flat = phase_labels_flat(np.concatenate([np.asarray(s, dtype=np.float64) for s in slopes]), lengths, rho, min_run)
    return [a.astype(bool) for a in np.split(flat, np.cumsum(lengths)[:-1])]


def segment_phases(slopes: Float[np.ndarray, " n"], rho: float = NexParams.rho, min_run: int = NexParams.min_run,
                   backend: str = "fast") -> Bool[np.ndarray, " n"]:
    """Explore (True) / Exploit (False) label per row of one response's novelty slopes.

    ``backend="library"`` always uses scikit-learn and hmmlearn (the plain path); ``"fast"`` (default)
    uses the compiled kernel when it is built, which gives the same labels.
    """
    return segment_phases_batch([np.asarray(slopes, dtype=np.float64)], rho, min_run, backend)[0]
