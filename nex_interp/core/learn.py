"""Learning signed neuron weights from an unlabeled calibration set (NEX-ALGORITHM.md, learning).

Responses are processed in chunks: each chunk's rows are sanitised and their novelty measured
(vectorised per response), the phase step runs once for the whole chunk (batched), then each
response's cycles add their credit. Arrays are read per response from the (memory-mapped) cache, so
memory stays bounded by the chunk size, not the cache size.
"""

from __future__ import annotations

import numpy as np

from .. import __version__
from ..cache.arrays import CacheArrays
from ..errors import ConfigError
from ..neuron_weights import NeuronWeights
from .cycles import add_credit, cycle_signals
from .params import EPS, NexParams
from .phases import segment_phases_batch
from .rows import FirstSeen, ResponseRows, response_rows

#: flush a chunk to the batched phase step once it holds this many entries or responses
CHUNK_ENTRIES = 4_000_000
CHUNK_RESPONSES = 256


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


def weights_from_credit(effective: np.ndarray, redundant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, weight) of credited neurons: ``tanh(log((effective + EPS) / (redundant + EPS)))``."""
    index = np.flatnonzero((effective > 0) | (redundant > 0))
    e = effective[index].astype(np.float64)
    r = redundant[index].astype(np.float64)
    weight = np.tanh(np.log((e + EPS) / (r + EPS))).astype(np.float32)
    return index.astype(np.int64), weight


def _cache_identity(cache: CacheArrays) -> dict:
    ident = {"n_responses": cache.n_responses, "n_rows": cache.n_rows, "n_entries": cache.n_entries,
             "key_scheme": cache.scheme.to_dict()}
    # the manifest's identity (model, rule, row size, checksums, ...), without the bulky per-array tables
    ident.update({k: v for k, v in cache.manifest.items() if k not in ("arrays", "streams")})
    return ident


def learn_weights(cache: CacheArrays, params: NexParams = NexParams(), progress: bool = False,
                  responses: np.ndarray | None = None) -> NeuronWeights:
    """Learn NEX neuron weights on ``cache`` (optionally on a subset of its responses).

    Every response with at least 3 non-empty rows is segmented into explore/exploit phases; its E->X
    cycles credit the neurons their explore rows introduced, as effective or redundant. Returns sparse
    weights over the cache's key scheme with ``meta`` recording the params, the cache and counts.
    """
    order = select_responses(cache, params, responses)
    n_neurons = cache.scheme.n_neurons
    effective = np.zeros(n_neurons, dtype=np.float32)
    redundant = np.zeros(n_neurons, dtype=np.float32)
    seen = FirstSeen(n_neurons)
    counts = {"used": 0, "skipped": 0, "effective_cycles": 0, "redundant_cycles": 0}

    def flush(chunk: list[ResponseRows]) -> None:
        labels = segment_phases_batch([r.slopes for r in chunk], params.rho, params.min_run)
        for rows, lab in zip(chunk, labels):
            cycles = cycle_signals(rows, lab)
            counts["effective_cycles"] += sum(c.kind == "effective" for c in cycles)
            counts["redundant_cycles"] += sum(c.kind == "redundant" for c in cycles)
            add_credit(rows, cycles, effective, redundant)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(order), desc="nex train", unit="resp")
    chunk: list[ResponseRows] = []
    chunk_entries = 0
    for i in order:
        rows = response_rows(cache, int(i), seen)
        if rows.skipped_reason is None:
            counts["used"] += 1
            chunk.append(rows)
            chunk_entries += len(rows.entry_first)
            if chunk_entries >= CHUNK_ENTRIES or len(chunk) >= CHUNK_RESPONSES:
                flush(chunk)
                chunk, chunk_entries = [], 0
        else:
            counts["skipped"] += 1
        if bar is not None:
            bar.update(1)
    if chunk:
        flush(chunk)
    if bar is not None:
        bar.close()

    index, weight = weights_from_credit(effective, redundant)
    meta = {
        "method": "nex",
        "params": params.to_dict(),
        "cache": _cache_identity(cache),
        "n_responses_requested": int(len(order)),
        "n_responses_used": counts["used"],
        "n_responses_skipped": counts["skipped"],
        "n_effective_cycles": counts["effective_cycles"],
        "n_redundant_cycles": counts["redundant_cycles"],
        "version": __version__,
    }
    return NeuronWeights(index, weight, effective[index].copy(), redundant[index].copy(), cache.scheme, meta)
