"""The few NEX core calls selection, ranking, phase agreement and sensitivity make, in one place.

Everything here goes through :mod:`nex_interp.core`'s public API (``learn_weights``,
``score_responses``, ``diagnose_response``), so these modules never reach into the core's
internals. All functions return plain numpy arrays.
"""

from __future__ import annotations

import numpy as np

from ..cache.arrays import CacheArrays
from ..cache.ops import subset_cache  # noqa: F401  (its home is nex_interp.cache.ops; kept importable here)


def default_params():
    from ..core import NexParams

    return NexParams()


def gmf_scores(cache: CacheArrays, weights) -> np.ndarray:
    """float64 [n_responses] GMF of every response of ``cache`` under ``weights`` (NaN: empty base)."""
    from ..core import score_responses

    return np.asarray(score_responses(cache, weights), dtype=np.float64)


def learn(cache: CacheArrays, params=None, responses: np.ndarray | None = None):
    """NEX weights learned (without labels) on ``responses`` of ``cache`` (default: all)."""
    from ..core import learn_weights

    params = params or default_params()
    if responses is None:
        return learn_weights(cache, params)
    return learn_weights(cache, params, responses=np.asarray(responses, dtype=np.int64))


def self_calibrated_gmf(cache: CacheArrays, params=None, responses: np.ndarray | None = None) -> np.ndarray:
    """GMF of every response of ``cache`` with weights learned on ``responses`` (default: all)."""
    return gmf_scores(cache, learn(cache, params, responses))


def self_calibrated_gmf_of(cache: CacheArrays, responses: np.ndarray, params=None) -> np.ndarray:
    """GMF of ``responses`` only (same order), weights learned on just those responses; costs
    time in proportion to those responses, not to the whole cache."""
    sub = subset_cache(cache, responses)
    return gmf_scores(sub, learn(sub, params))


def row_phases(cache: CacheArrays, i: int, params=None) -> np.ndarray:
    """Phase label per *cache row* of response ``i``: 1 = E, 0 = X, -1 = a row NEX dropped (empty or
    without tokens). A response too short to segment is all X, as the algorithm defines."""
    from ..core import diagnose_response

    params = params or default_params()
    d = diagnose_response(cache, i, params)
    start, stop = cache.response_rows(i)
    out = np.full(stop - start, -1, dtype=np.int8)
    kept = np.asarray(d.kept_rows, dtype=np.int64) - start  # absolute cache rows -> rows of the response
    labels = np.asarray(d.labels, dtype=bool)
    if labels.size != kept.size:  # a response NEX skips has no phases: all X, as the algorithm defines
        labels = np.zeros(kept.size, dtype=bool)
    out[kept] = labels.astype(np.int8)
    return out
