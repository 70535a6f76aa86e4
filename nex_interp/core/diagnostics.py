"""Per-response diagnostics for notebooks: slopes, phase labels, E-segment count and every cycle's
strength, consolidation, reuse, progress and credit."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..cache.arrays import CacheArrays
from ..errors import ConfigError
from .cycles import CycleDiagnostics, count_e_segments, cycle_signals
from .params import NexParams
from .phases import segment_phases
from .rows import FirstSeen, response_rows


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


def diagnose_response(cache: CacheArrays, i: int, params: NexParams = NexParams()) -> ResponseDiagnostics:
    """Diagnostics of response ``i`` as learning sees it (same code path as :func:`learn_weights`)."""
    if not 0 <= int(i) < cache.n_responses:
        raise ConfigError(f"response {i} is out of range: the cache has {cache.n_responses} responses")
    rows = response_rows(cache, int(i), FirstSeen(cache.scheme.n_neurons))
    if rows.skipped_reason is not None:
        labels = np.zeros(rows.n_rows, dtype=bool)
        return ResponseDiagnostics(int(i), rows.kept_rows, rows.tokens, rows.slopes, rows.n_new, labels, 0, [],
                                   rows.skipped_reason)
    labels = segment_phases(rows.slopes, params.rho, params.min_run)
    cycles = cycle_signals(rows, labels)
    return ResponseDiagnostics(int(i), rows.kept_rows, rows.tokens, rows.slopes, rows.n_new, labels,
                               count_e_segments(labels), cycles, None)
