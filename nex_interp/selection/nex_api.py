"""The few NEX core calls selection, ranking, phase agreement and sensitivity make, in one place.

Everything here goes through :mod:`nex_interp.core`'s public API (``learn_weights``,
``score_responses``, ``diagnose_response``), so these modules never reach into the core's
internals. All functions return plain numpy arrays.
"""

from __future__ import annotations

import numpy as np

from ..cache.arrays import CacheArrays


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


def subset_cache(cache: CacheArrays, responses: np.ndarray) -> CacheArrays:
    """A cache of only ``responses`` (in that order). A contiguous ascending range is a zero-copy
    view of the memory maps; otherwise the responses' arrays are gathered (copied)."""
    idx = np.asarray(responses, dtype=np.int64)
    srp = np.asarray(cache.sample_row_ptr, dtype=np.int64)
    bp = np.asarray(cache.base_ptr, dtype=np.int64)
    if idx.size and np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
        a, b = int(idx[0]), int(idx[-1]) + 1
        r0, r1 = int(srp[a]), int(srp[b])
        rp = np.asarray(cache.row_ptr[r0 : r1 + 1], dtype=np.int64)
        tp = np.asarray(cache.token_row_ptr[r0 : r1 + 1], dtype=np.int64)
        return CacheArrays(
            srp[a : b + 1] - r0, rp - rp[0], tp - tp[0], cache.keys[rp[0] : rp[-1]], cache.mass[rp[0] : rp[-1]],
            bp[a : b + 1] - bp[a], cache.base_keys[bp[a] : bp[b]], cache.base_mass[bp[a] : bp[b]], cache.scheme, cache.manifest,
        )
    parts = [subset_cache(cache, np.array([i])) for i in idx]
    def cat_ptr(ptrs):
        out, off = [np.zeros(1, np.int64)], 0
        for p in ptrs:
            out.append(p[1:] + off)
            off += int(p[-1])
        return np.concatenate(out)
    def cat(arrs, dtype):
        return np.concatenate([np.asarray(x) for x in arrs]) if arrs else np.zeros(0, dtype)
    return CacheArrays(
        cat_ptr([p.sample_row_ptr for p in parts]), cat_ptr([p.row_ptr for p in parts]), cat_ptr([p.token_row_ptr for p in parts]),
        cat([p.keys for p in parts], cache.keys.dtype), cat([p.mass for p in parts], cache.mass.dtype),
        cat_ptr([p.base_ptr for p in parts]), cat([p.base_keys for p in parts], cache.base_keys.dtype),
        cat([p.base_mass for p in parts], cache.base_mass.dtype), cache.scheme, cache.manifest,
    )


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
