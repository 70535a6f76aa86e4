"""Scoring responses with neuron weights: the Good-Mass Fraction, the NEX score and the log gap
(docs/algorithm.md, "Scoring"). The compiled kernel scores when built (:func:`kernel.gmf`); the plain
path below is numpy over chunks of base vectors."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..cache.arrays import CacheArrays
from ..cache.pages import release
from ..errors import WeightsError
from ..neuron_weights import NeuronWeights
from ..keys import OUT_OF_RANGE
from . import kernel

if TYPE_CHECKING:  # annotations only: the core must not need jaxtyping at run time
    from jaxtyping import Float

#: score base vectors in chunks of about this many entries (small enough that the chunk's temporaries
#: stay in cache and are reused by the allocator, instead of being fresh, page-faulted memory each time)
CHUNK_ENTRIES = 131_072
#: the compiled kernel scores in chunks of this many entries (only to hand their pages back as it goes)
COMPILED_CHUNK_ENTRIES = 4_000_000


def _check_scheme(cache: CacheArrays, weights: NeuronWeights) -> None:
    if cache.scheme != weights.scheme:
        raise WeightsError(
            f"the weights use key scheme {weights.scheme.to_dict()} but the cache uses {cache.scheme.to_dict()}: "
            "learn weights on a cache of the same model"
        )


def _segment_sums(values: np.ndarray, counts: np.ndarray, ufunc=np.add) -> np.ndarray:
    """Per-segment reduction of contiguous segments given by ``counts`` (empty segments: 0)."""
    out = np.zeros(len(counts), dtype=np.float64 if ufunc is np.add else values.dtype)
    nonempty = counts > 0
    if nonempty.any():
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))[nonempty]
        out[nonempty] = ufunc.reduceat(values, starts)
    return out


def score_responses(cache: CacheArrays, weights: NeuronWeights) -> Float[np.ndarray, " n_responses"]:
    """GMF per response (float64 [n_responses]; NaN where the sanitised base vector is empty).

    ``GMF = sum(mass * max(w, 0)) / sum(mass * |w|)`` over the response's base vector, 0 when the
    denominator is 0.
    """
    _check_scheme(cache, weights)
    pieces = cache.pieces(np.arange(cache.n_responses))
    if len(pieces) > 1:  # a sharded cache: each shard's own arrays (responses are scored independently)
        return np.concatenate([score_responses(part, weights)[local] for part, local in pieces])
    table = weights.dense()
    n = cache.n_responses
    out = np.full(n, np.nan)
    ptr = np.asarray(cache.base_ptr, dtype=np.int64)
    k = kernel.load()
    threads = k is not None and kernel.two_threads(None)
    start = 0
    while start < n:
        stop = int(np.searchsorted(ptr, ptr[start] + (COMPILED_CHUNK_ENTRIES if k else CHUNK_ENTRIES), side="right")) - 1
        stop = min(max(stop, start + 1), n)
        b0, b1 = int(ptr[start]), int(ptr[stop])
        if k is None:
            out[start:stop] = _plain_gmf(cache, table, ptr[start:stop + 1])
        else:
            half = (start + stop) // 2
            if threads and start < half:  # the first half in a second thread, the rest here
                other = kernel.Background(kernel.gmf, k, cache, table, start, half)
                out[half:stop] = kernel.gmf(k, cache, table, half, stop)
                out[start:half] = other.result()
            else:
                out[start:stop] = kernel.gmf(k, cache, table, start, stop)
        release(cache.base_keys, b0, b1)  # done with these pages: keep the resident set small
        release(cache.base_mass, b0, b1)
        start = stop
    return out


def _plain_gmf(cache: CacheArrays, table: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """GMF of the responses whose base vectors ``ptr`` delimits, sanitised as rows are (docs/algorithm.md)."""
    from .rows import _F16_BAD, dense_index

    b0, b1 = int(ptr[0]), int(ptr[-1])
    counts = np.diff(ptr)
    idx = dense_index(cache.scheme, np.asarray(cache.base_keys[b0:b1]))
    bits = np.asarray(cache.base_mass[b0:b1]).view(np.uint16)
    keep = idx >= 0
    resp = np.repeat(np.arange(len(counts)), counts)
    # a base vector is empty when it keeps no key, holds a key outside the table, or has no positive mass
    ok = np.bincount(resp[keep], minlength=len(counts)) > 0
    ok &= np.bincount(resp[idx == OUT_OF_RANGE], minlength=len(counts)) == 0
    bits = np.where(keep & (bits < _F16_BAD), bits, 0).astype(np.uint16)
    ok &= _segment_sums(bits, counts, np.maximum) > 0
    m = bits.view(np.float16).astype(np.float64)
    w = np.where(keep, table[np.where(keep, idx, 0)], np.float32(0)).astype(np.float64)
    good = _segment_sums(m * np.maximum(w, 0.0), counts)
    absm = _segment_sums(m * np.abs(w), counts)
    with np.errstate(divide="ignore", invalid="ignore"):
        gmf = np.where(absm > 0, good / absm, 0.0)
    return np.where(ok, gmf, np.nan)


def nex_score(gmf: Float[np.ndarray, " n"]) -> float:
    """Mean GMF over responses, NaNs ignored (NaN if no response has a score)."""
    g = np.asarray(gmf, dtype=np.float64)
    g = g[~np.isnan(g)]
    return float(g.mean()) if g.size else float("nan")


def log_gap(score: float) -> float:
    """``-log10(max(1 - clip(score, 0, 1), 1e-12))``: spreads scores crowding near 1 (NaN stays NaN)."""
    if score is None or math.isnan(score):
        return float("nan")
    return -math.log10(max(1.0 - min(max(float(score), 0.0), 1.0), 1e-12))
