"""The plain path of the NEX core: one response at a time, in readable numpy, with the phase step
calling scikit-learn's ``GaussianMixture`` and hmmlearn's ``GaussianHMM`` as docs/algorithm.md states.

It is the core's fallback (no C compiler at install, a stale build, ``NEX_KERNEL=plain``, or a
response too long for the kernels), and what :func:`nex_interp.core.diagnose_response` reads the
per-row and per-cycle details from. docs/core.md gives its cost against the compiled kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..cache.arrays import CacheArrays
from ..cache.pages import release
from .cycles import EFFECTIVE_CODE, REDUNDANT_CODE, CycleTable, credit_parts, cycle_table
from .params import NexParams
from .phases import plain_phase_labels
from .rows import FirstSeen, ResponseRows, response_rows


@dataclass
class ResponseCredit:
    """One response on the plain path: its sanitised rows and novelty, E labels per kept row, and its
    cycles with their kinds and scales (``table`` is None for a response learning skips)."""

    rows: ResponseRows
    labels: np.ndarray
    table: CycleTable | None


def response_credit(cache: CacheArrays, i: int, seen: FirstSeen, params: NexParams,
                    phase_labels: Callable[[np.ndarray], np.ndarray] | None = None) -> ResponseCredit:
    """Steps 1-6 of docs/algorithm.md for response ``i``. ``phase_labels(slopes)`` may replace the plain
    phase step (diagnostics pass the compiled one, to report what learning used)."""
    rows = response_rows(cache, i, seen)
    if rows.skipped_reason is not None:
        return ResponseCredit(rows, np.zeros(rows.n_rows, dtype=bool), None)
    if phase_labels is None:
        labels = plain_phase_labels(rows.slopes, params.rho, params.min_run)
    else:
        labels = np.asarray(phase_labels(rows.slopes), dtype=bool)
    return ResponseCredit(rows, labels, cycle_table(rows, labels))


def learn_plain(cache: CacheArrays, mapped: CacheArrays, order: np.ndarray, params: NexParams,
                effective: np.ndarray, redundant: np.ndarray, advance: Callable[[int], object]) -> dict:
    """Add the credit of responses ``order``, one after another, to the float32 accumulators (in
    response, cycle and entry order, as the compiled path does). ``cache``: plain views of the arrays
    of ``mapped`` (whose pages are handed back as each response is done). Returns the counts."""
    seen = FirstSeen(cache.scheme.n_neurons)
    counts = {"used": 0, "skipped": 0, "effective_cycles": 0, "redundant_cycles": 0}
    ptr, srp = cache.row_ptr, cache.sample_row_ptr
    for i in order.tolist():
        r = response_credit(cache, i, seen, params)
        if r.table is None:
            counts["skipped"] += 1
        else:
            counts["used"] += 1
            for code, acc, name in ((EFFECTIVE_CODE, effective, "effective_cycles"),
                                    (REDUNDANT_CODE, redundant, "redundant_cycles")):
                idx, vals = credit_parts(r.rows, r.table, code)
                counts[name] += len(idx)
                for neurons, credit in zip(idx, vals):  # each neuron once per response: no repeats in a cycle
                    np.add.at(acc, neurons, credit)
        e0, e1 = int(ptr[srp[i]]), int(ptr[srp[i + 1]])
        release(mapped.keys, e0, e1)  # done with this response: keep the resident set small
        release(mapped.mass, e0, e1)
        advance(1)
    return counts
