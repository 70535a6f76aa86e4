"""Operations that make one cache from another, in memory: a subset of its responses, its rows merged.

The result is a :class:`~nex_interp.cache.arrays.CacheArrays` linked to the cache it came from
(``origin``), so its response metadata and per-token streams stay available.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ConfigError
from .arrays import CacheArrays

FLOAT16_MAX = float(np.finfo(np.float16).max)


def _derived(cache: CacheArrays, responses: np.ndarray | None, **arrays) -> CacheArrays:
    """A cache made of ``arrays`` whose responses are ``responses`` of ``cache`` (None: the same ones)."""
    if cache.origin is not None:  # link to the cache on disk, not to a chain of derived ones
        base = cache._origin_index()
        origin, idx = cache.origin, base if responses is None else base[responses]
    else:
        origin, idx = cache, responses
    return dataclasses.replace(cache, **arrays, path=None, origin=origin,
                               origin_responses=None if idx is None else np.asarray(idx, dtype=np.int64))


def subset_cache(cache: CacheArrays, responses) -> CacheArrays:
    """A cache of only ``responses`` (indices, in that order). A contiguous ascending range is a
    zero-copy view of the memory maps; otherwise the responses' arrays are gathered (copied)."""
    idx = np.asarray(responses, dtype=np.int64).reshape(-1)
    srp = np.asarray(cache.sample_row_ptr, dtype=np.int64)
    bp = np.asarray(cache.base_ptr, dtype=np.int64)
    if idx.size and ((idx < 0) | (idx >= cache.n_responses)).any():
        raise ConfigError(f"response indices must lie in 0..{cache.n_responses - 1}, got {idx.min()}..{idx.max()}")
    if idx.size and np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
        a, b = int(idx[0]), int(idx[-1]) + 1
        r0, r1 = int(srp[a]), int(srp[b])
        rp = np.asarray(cache.row_ptr[r0 : r1 + 1], dtype=np.int64)
        tp = np.asarray(cache.token_row_ptr[r0 : r1 + 1], dtype=np.int64)
        return _derived(
            cache, idx, sample_row_ptr=srp[a : b + 1] - r0, row_ptr=rp - rp[0], token_row_ptr=tp - tp[0],
            keys=cache.keys[rp[0] : rp[-1]], mass=cache.mass[rp[0] : rp[-1]],
            base_ptr=bp[a : b + 1] - bp[a], base_keys=cache.base_keys[bp[a] : bp[b]], base_mass=cache.base_mass[bp[a] : bp[b]],
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

    return _derived(
        cache, idx,
        sample_row_ptr=cat_ptr([p.sample_row_ptr for p in parts]), row_ptr=cat_ptr([p.row_ptr for p in parts]),
        token_row_ptr=cat_ptr([p.token_row_ptr for p in parts]),
        keys=cat([p.keys for p in parts], cache.keys.dtype), mass=cat([p.mass for p in parts], cache.mass.dtype),
        base_ptr=cat_ptr([p.base_ptr for p in parts]), base_keys=cat([p.base_keys for p in parts], cache.base_keys.dtype),
        base_mass=cat([p.base_mass for p in parts], cache.base_mass.dtype),
    )


def merge_rows(cache: CacheArrays, multiple: int) -> CacheArrays:
    """The cache re-cut into rows of ``multiple`` consecutive rows of each response (the last may be
    shorter). Masses of a neuron are summed across the merged rows (non-finite and negative
    masses count as 0, as the sanitiser would read them) and stored as float16, clipped to its range.
    This is what capturing with ``multiple`` times the row size records (base vectors are unchanged).

    >>> from nex_interp.keys import KeyScheme
    >>> c = CacheArrays(np.array([0, 3]), np.array([0, 2, 3, 4]), np.array([0, 32, 64, 80]),
    ...                 np.array([5, 7, 5, 9], np.uint32), np.array([1, 2, 3, 4], np.float16),
    ...                 np.array([0, 0]), np.zeros(0, np.uint32), np.zeros(0, np.float16))
    >>> m = merge_rows(c, 2)
    >>> m.row_ptr.tolist(), m.keys.tolist(), m.mass.tolist(), np.diff(m.token_row_ptr).tolist()
    ([0, 2, 3], [5, 7, 9], [4.0, 2.0, 4.0], [64, 16])
    """
    multiple = int(multiple)
    if multiple < 1:
        raise ConfigError(f"row multiple must be a positive integer, got {multiple}")
    if multiple == 1:
        return cache
    srp = np.asarray(cache.sample_row_ptr, dtype=np.int64)
    counts = np.diff(srp)
    n_rows = int(srp[-1])
    row_resp = np.repeat(np.arange(len(counts)), counts)
    local = np.arange(n_rows, dtype=np.int64) - srp[row_resp]
    new_counts = -(-counts // multiple)
    new_srp = np.concatenate([[0], np.cumsum(new_counts)]).astype(np.int64)
    new_of_old = new_srp[row_resp] + local // multiple
    n_new = int(new_srp[-1])
    tokens = np.diff(np.asarray(cache.token_row_ptr, dtype=np.int64))[:n_rows]
    new_tokens = np.bincount(new_of_old, weights=tokens, minlength=n_new).astype(np.int64)

    row_ptr = np.asarray(cache.row_ptr, dtype=np.int64)
    n_ent = int(row_ptr[n_rows])
    entry_row = np.repeat(np.arange(n_rows), np.diff(row_ptr[: n_rows + 1]))
    new_row = new_of_old[entry_row]
    keys = np.asarray(cache.keys[:n_ent])
    mass = np.asarray(cache.mass[:n_ent]).astype(np.float64)
    mass[~np.isfinite(mass) | (mass < 0)] = 0.0
    order = np.lexsort((keys, new_row))
    k_sorted, r_sorted, m_sorted = keys[order], new_row[order], mass[order]
    start = np.ones(len(order), dtype=bool)
    if len(order):
        start[1:] = (k_sorted[1:] != k_sorted[:-1]) | (r_sorted[1:] != r_sorted[:-1])
    first = np.flatnonzero(start)
    summed = np.add.reduceat(m_sorted, first) if len(first) else np.zeros(0)
    out_keys = k_sorted[first]
    out_rows = r_sorted[first]
    out_row_ptr = np.concatenate([[0], np.cumsum(np.bincount(out_rows, minlength=n_new))]).astype(np.int64)
    return dataclasses.replace(
        _derived(cache, None),
        sample_row_ptr=new_srp,
        row_ptr=out_row_ptr,
        token_row_ptr=np.concatenate([[0], np.cumsum(new_tokens)]).astype(np.int64),
        keys=out_keys.astype(keys.dtype),
        mass=np.minimum(summed, FLOAT16_MAX).astype(np.float16),
        manifest={**cache.manifest, "row_multiple": multiple},
    )


__all__ = ["subset_cache", "merge_rows"]
