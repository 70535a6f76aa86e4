"""Per-response diagnostics for notebooks and reports: slopes, phase labels, E-segment count, every
cycle's strength, consolidation, reuse, progress and credit, and the credit learning adds.

They report what learning computes on the implementation that runs (``kernel``): on the compiled path,
the labels are those of the compiled phase step and ``effective``/``redundant`` come from the compiled
credit pass for the response; the per-cycle details are read with the plain path (:mod:`.plain`) from
those labels, and checked to credit the same cycles and neurons, so a disagreement is an error, never a
silently different report.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..cache.arrays import CacheArrays
from ..errors import ConfigError
from . import kernel
from .cycles import EFFECTIVE, REDUNDANT, CycleDiagnostics, count_e_segments, credit_parts, cycle_signals
from .params import NexParams
from .plain import ResponseCredit, response_credit
from .rows import FirstSeen


@dataclass
class ResponseDiagnostics:
    """What NEX sees in one response.

    response:       response index.
    kept_rows:      int64 cache row indices of the rows kept after sanitising.
    tokens:         token count per kept row.
    slopes:         novelty slope per kept row (neurons introduced / tokens).
    n_new:          neurons introduced per kept row.
    labels:         True = Explore, per kept row.
    n_e_segments:   number of Explore runs.
    cycles:         the E->X cycles with their signals and credit.
    skipped_reason: why the response takes no part in learning (None if it does).
    kernel:         the implementation that computed this, as learning records it ("compiled" or "plain").
    credit_index:   int64 dense indices of the neurons this response credits, increasing.
    effective, redundant: float32 credit the response adds to each of those neurons' accumulators
                    (what learning adds for it; summing them over responses in order gives the weights'
                    ``effective_mass`` / ``redundant_mass``).
    """

    response: int
    kept_rows: np.ndarray
    tokens: np.ndarray
    slopes: np.ndarray
    n_new: np.ndarray
    labels: np.ndarray
    n_e_segments: int
    cycles: list[CycleDiagnostics] = field(default_factory=list)
    skipped_reason: str | None = None
    kernel: str = "plain"
    credit_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    effective: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    redundant: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def _plain_credit(r: ResponseCredit, n_neurons: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index, effective, redundant) the plain path adds for one response, as learn_plain adds it."""
    from .cycles import EFFECTIVE_CODE, REDUNDANT_CODE

    acc = {EFFECTIVE_CODE: np.zeros(n_neurons, np.float32), REDUNDANT_CODE: np.zeros(n_neurons, np.float32)}
    if r.table is not None:
        for code, a in acc.items():
            for neurons, credit in zip(*credit_parts(r.rows, r.table, code)):
                np.add.at(a, neurons, credit)
    e, x = acc[EFFECTIVE_CODE], acc[REDUNDANT_CODE]
    index = np.flatnonzero((e > 0) | (x > 0)).astype(np.int64)
    return index, e[index], x[index]


def _compiled(k, cache: CacheArrays, i: int, params: NexParams) -> tuple[ResponseCredit, tuple]:
    """Response ``i`` through the compiled kernels exactly as learning runs them (scan, phase step,
    credit), with the plain path's rows and cycles read from the compiled labels, checked to agree."""
    from .compiled import compiled_response

    scan, slopes, labels, (n_eff, n_red), credit = compiled_response(k, cache, i, params)
    r = response_credit(cache, i, FirstSeen(cache.scheme.n_neurons), params, phase_labels=lambda s: labels)
    problems = []
    if r.table is None:
        if len(labels):
            problems.append("the plain path skips the response the kernels learn on")
    else:
        if not np.array_equal(r.rows.kept_rows - cache.response_rows(i)[0], np.flatnonzero(scan.kept)):
            problems.append("kept rows differ")
        elif not np.array_equal(r.rows.slopes, slopes):
            problems.append("novelty slopes differ")
        kinds = [c.kind for c in cycle_signals(r.rows, r.labels)]
        if (kinds.count(EFFECTIVE), kinds.count(REDUNDANT)) != (n_eff, n_red):
            problems.append(f"credited cycles differ ({kinds.count(EFFECTIVE)}/{kinds.count(REDUNDANT)} effective/"
                            f"redundant against the kernels' {n_eff}/{n_red})")
    plain_index = _plain_credit(r, cache.scheme.n_neurons)[0]
    if not np.array_equal(plain_index, credit[0]):
        problems.append("credited neurons differ")
    if problems:
        raise RuntimeError(f"nex-interp: diagnostics of response {i} disagree with the compiled kernels: "
                           f"{'; '.join(problems)} (a bug: please report it with the cache)")
    return r, credit


def diagnose_response(cache: CacheArrays, i: int, params: NexParams = NexParams()) -> ResponseDiagnostics:
    """Diagnostics of response ``i`` as learning computes it, on the implementation learning uses now."""
    if not 0 <= int(i) < cache.n_responses:
        raise ConfigError(f"response {i} is out of range: the cache has {cache.n_responses} responses")
    i = int(i)
    (part, local), = cache.pieces(np.array([i]))
    if part is not cache:  # a sharded cache: the response on its own shard, its rows numbered in the whole cache
        d = diagnose_response(part, int(local[0]), params)
        shift = cache.response_rows(i)[0] - part.response_rows(int(local[0]))[0]
        return dataclasses.replace(d, response=i, kept_rows=d.kept_rows + shift)
    k = kernel.load()
    r0, r1 = cache.response_rows(i)
    if k is not None and r1 - r0 <= kernel.MAX_ROWS:
        r, credit = _compiled(k, cache, i, params)
        name = "compiled"
    else:
        r = response_credit(cache, i, FirstSeen(cache.scheme.n_neurons), params)
        credit = _plain_credit(r, cache.scheme.n_neurons)
        name = "plain"
    rows = r.rows
    cycles = cycle_signals(rows, r.labels) if r.table is not None else []
    return ResponseDiagnostics(i, rows.kept_rows, rows.tokens, rows.slopes, rows.n_new, r.labels,
                               count_e_segments(r.labels), cycles, rows.skipped_reason, name, *credit)
