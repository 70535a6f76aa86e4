"""Learning signed neuron weights from an unlabeled calibration set (docs/algorithm.md, "Learning").

Every response's cycles add ``mass * scale`` of the neurons their Explore rows introduced to two float32
accumulators (effective, redundant), in response, cycle and entry order; the weights are
``tanh(log((effective + EPS) / (redundant + EPS)))``. Two implementations compute the credit
(docs/core.md): the compiled kernels (:mod:`.compiled`, the default where the extension is built) and
the plain path (:mod:`.plain`). Arrays are read from the (memory-mapped) cache and their pages are
handed back to the kernel once done, so memory stays bounded by a chunk, not the cache.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import __version__
from ..cache.arrays import CacheArrays
from ..errors import ConfigError
from ..neuron_weights import NeuronWeights
from . import kernel
from .params import EPS, NexParams


def select_responses(cache: CacheArrays, params: NexParams, responses: np.ndarray | None) -> np.ndarray:
    """The response indices to learn on: ``responses`` (default all), then the first ``max_responses``."""
    n = cache.n_responses
    if responses is None:
        order = np.arange(n, dtype=np.int64)
    else:
        order = np.asarray(responses)
        if order.ndim != 1 or (order.size and not np.issubdtype(order.dtype, np.integer)):
            raise ConfigError("responses must be a 1-D array of integer response indices")
        order = order.astype(np.int64)
        bad = order[(order < 0) | (order >= n)]
        if bad.size:
            raise ConfigError(f"response index {int(bad[0])} is out of range: the cache has {n} responses (0..{n - 1})")
    if params.max_responses is not None:
        order = order[: params.max_responses]
    return order


def weights_from_credit(effective: np.ndarray, redundant: np.ndarray) -> np.ndarray:
    """float32 ``tanh(log((effective + EPS) / (redundant + EPS)))`` of credited neurons' sums."""
    e = np.asarray(effective).astype(np.float64)
    r = np.asarray(redundant).astype(np.float64)
    return np.tanh(np.log((e + EPS) / (r + EPS))).astype(np.float32)


def _cache_identity(cache: CacheArrays) -> dict:
    ident = {"n_responses": cache.n_responses, "n_rows": cache.n_rows, "n_entries": cache.n_entries,
             "key_scheme": cache.scheme.to_dict()}
    # the manifest's identity (model, rule, row size, checksums, ...), without the bulky per-array tables
    ident.update({k: v for k, v in cache.manifest.items() if k not in ("arrays", "streams")})
    return ident


def plain_arrays(cache: CacheArrays) -> CacheArrays:
    """The same cache with plain ndarray views of its (memory-mapped) arrays: slicing an ``np.memmap``
    costs ~10 us of Python per slice, a view's slice ~1 us. No data is copied."""
    fields = ("sample_row_ptr", "row_ptr", "token_row_ptr", "keys", "mass", "base_ptr", "base_keys", "base_mass")
    return dataclasses.replace(cache, **{f: np.asarray(getattr(cache, f)) for f in fields})


def _progress_bar(total: int, progress: bool | float):
    """A tqdm bar over responses; with ``progress`` a number of seconds, it shows only once learning has
    run that long (tqdm's ``delay``). None when ``progress`` is false."""
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="nex train", unit="resp", delay=0.0 if progress is True else float(progress))


def _add(total: dict, counts: dict) -> None:
    for key, value in counts.items():
        total[key] += value


def _learn(cache: CacheArrays, order: np.ndarray, params: NexParams, advance,
           workers: int | None) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """Counts and the (index, effective, redundant) sums of the credited neurons for ``order``."""
    n_neurons = cache.scheme.n_neurons
    effective = np.zeros(n_neurons, dtype=np.float32)
    redundant = np.zeros(n_neurons, dtype=np.float32)
    k = kernel.load()
    srp = np.asarray(cache.sample_row_ptr)
    if k is not None and len(order) and int((srp[order + 1] - srp[order]).max()) > kernel.MAX_ROWS:
        k = None  # a response too long for the kernels' uint16 row numbers (over 2M tokens): the plain path
    counts = {"used": 0, "skipped": 0, "effective_cycles": 0, "redundant_cycles": 0}
    # a sharded cache comes in pieces, one per shard: the same accumulators, in the same response order
    pieces = cache.pieces(order)
    if k is None:
        from .plain import learn_plain

        for part, local in pieces:
            _add(counts, learn_plain(plain_arrays(part), part, local, params, effective, redundant, advance))
        index = np.flatnonzero((effective > 0) | (redundant > 0)).astype(np.int64)
        return dict(counts, kernel="plain"), index, effective[index], redundant[index]
    from .compiled import learn_compiled

    # the kernels keep the bounds of the neurons they credit, so finding them reads only that corner
    bound = np.full(2, -1, dtype=np.int64)
    for part, local in pieces:
        _add(counts, learn_compiled(k, plain_arrays(part), part, local, params, effective, redundant, bound, advance,
                                    kernel.two_threads(workers)))
    index, eff, red = kernel.credited(effective, redundant, bound, cache.scheme.name == "wide")
    return dict(counts, kernel="compiled"), index, eff, red


def learn_weights(cache: CacheArrays, params: NexParams = NexParams(), progress: bool | float = False,
                  responses: np.ndarray | None = None, workers: int | None = None) -> NeuronWeights:
    """Learn NEX neuron weights on ``cache`` (optionally on a subset of its responses).

    Every response with at least 3 non-empty rows is segmented into explore/exploit phases; its E->X
    cycles credit the neurons their explore rows introduced, as effective or redundant. Returns sparse
    weights over the cache's key scheme with ``meta`` recording the params, the cache, counts and which
    implementation ran (``meta["kernel"]``: "compiled" or "plain").
    ``progress``: True shows a tqdm bar; a number of seconds shows it only once learning takes longer.
    ``workers``: 1 or 2 threads for the compiled path (None: ``$NEX_WORKERS``, else two where there are
    2+ CPUs); the result is identical either way.
    """
    order = select_responses(cache, params, responses)
    bar = _progress_bar(len(order), progress)
    try:
        counts, index, effective, redundant = _learn(cache, order, params, bar.update if bar else lambda n: None,
                                                     workers)
    finally:
        if bar is not None:
            bar.close()
    weight = weights_from_credit(effective, redundant)
    meta = {
        "method": "nex",
        "params": params.to_dict(),
        "cache": _cache_identity(cache),
        "n_responses_requested": int(len(order)),
        "n_responses_used": counts["used"],
        "n_responses_skipped": counts["skipped"],
        "n_effective_cycles": counts["effective_cycles"],
        "n_redundant_cycles": counts["redundant_cycles"],
        "kernel": counts["kernel"],
        "version": __version__,
    }
    return NeuronWeights(index, weight, effective, redundant, cache.scheme, meta)
