"""E->X cycles and their credit (docs/algorithm.md, steps 4-7), on the plain path.

A cycle is a maximal Explore run followed immediately by a maximal Exploit run. Its *reuse* is the
share of the X rows' mass carried by neurons the E rows introduced; cycles whose reuse beats the
response's median reuse and that consolidate (X slows down relative to E) are *effective*, the
others *redundant*. Each credited cycle adds ``mass * scale`` of the neurons its E rows introduced to
the matching accumulator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import EPS
from .rows import ResponseRows

EFFECTIVE = "effective"
REDUNDANT = "redundant"
SKIPPED = "skipped"


@dataclass
class CycleDiagnostics:
    """One E->X cycle of a response. Row numbers are positions within the response's kept rows.

    e_rows, x_rows: int64 kept-row positions of the E run and the X run.
    slope_e, slope_x: median novelty slope over the E rows / the X rows.
    strength: slope_e - median slope of the response.
    consolidation: clip(1 - slope_x / (slope_e + EPS), 0, 1) if slope_e > 0, else 0.
    reuse: share of X-row mass on neurons introduced in the E rows (NaN when undefined).
    progress: reuse - the response's median reuse (NaN when the cycle takes no part).
    kind: "effective", "redundant" or "skipped" (no credit).
    scale: the credit multiplier (0 when skipped).
    """

    e_rows: np.ndarray
    x_rows: np.ndarray
    slope_e: float
    slope_x: float
    strength: float
    consolidation: float
    reuse: float
    progress: float
    kind: str
    scale: float


def median(a: np.ndarray) -> float:
    """numpy's median of a small 1-D array (mean of the two middle values for even counts), cheaply."""
    s = np.sort(a)
    n = len(s)
    h = n // 2
    return float(s[h]) if n % 2 else float((s[h - 1] + s[h]) / 2)


def reuse_median(defined: np.ndarray) -> float:
    """The median the credit step subtracts from each cycle's reuse: numpy's median of the response's
    defined reuse values **in float32**, as the reference computes it (docs/algorithm.md, step 6). The
    cycle whose reuse is the median therefore usually keeps a tiny non-zero progress and is credited."""
    return float(np.median(np.asarray(defined, dtype=np.float32)))


def count_e_segments(labels: np.ndarray) -> int:
    labels = np.asarray(labels, dtype=bool)
    if len(labels) == 0:
        return 0
    return int(labels[0]) + int(np.count_nonzero(labels[1:] & ~labels[:-1]))


#: CycleTable.kind codes
SKIPPED_CODE, EFFECTIVE_CODE, REDUNDANT_CODE = 0, 1, 2
KIND_NAMES = (SKIPPED, EFFECTIVE, REDUNDANT)


@dataclass
class CycleTable:
    """Every E->X cycle of one response as parallel arrays (the fields of :class:`CycleDiagnostics`):
    E run = kept rows [start, x_start), X run = [x_start, stop); kind holds the ``*_CODE`` values."""

    start: np.ndarray
    x_start: np.ndarray
    stop: np.ndarray
    slope_e: np.ndarray
    slope_x: np.ndarray
    strength: np.ndarray
    consolidation: np.ndarray
    reuse: np.ndarray
    progress: np.ndarray
    kind: np.ndarray
    scale: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


def _run_medians(values: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """:func:`median` of ``values[starts[k]:stops[k]]`` for contiguous runs covering ``values``, at once."""
    lens = stops - starts
    order = np.lexsort((values, np.repeat(np.arange(len(starts)), lens)))
    v = values[order]
    return (v[starts + (lens - 1) // 2] + v[starts + lens // 2]) / 2


def cycle_table(rows: ResponseRows, labels: np.ndarray) -> CycleTable:
    """Per-cycle signals and the credit decision for one (non-skipped) response, vectorised over cycles."""
    labels = np.asarray(labels, dtype=bool)
    n = len(labels)
    starts = np.flatnonzero(np.concatenate(([True], labels[1:] != labels[:-1]))) if n else np.zeros(0, np.int64)
    stops = np.append(starts[1:], n)
    e_runs = np.flatnonzero(labels[starts[:-1]])  # an E run with a run after it: an E->X cycle
    k = len(e_runs)
    nan = np.full(k, np.nan)
    if k == 0:
        z = np.zeros(0, dtype=np.int64)
        return CycleTable(z, z, z, nan, nan, nan, nan, nan, nan, np.zeros(0, np.int8), nan)
    a, b, s = starts[e_runs], starts[e_runs + 1], stops[e_runs + 1]
    slopes = rows.slopes
    run_med = _run_medians(slopes, starts, stops)
    se, sx = run_med[e_runs], run_med[e_runs + 1]
    strength = se - median(slopes)
    with np.errstate(divide="ignore", invalid="ignore"):
        cons = np.where(se > 0, np.minimum(np.maximum(1.0 - sx / (se + EPS), 0.0), 1.0), 0.0)
    reuse = nan.copy()
    new_ptr = rows.new_ptr
    want = np.flatnonzero((strength > 0) & (new_ptr[b] - new_ptr[a] > 0))
    if len(want):
        e_first, e_mass = rows.entry_first, rows.entry_mass
        x0s, x1s = rows.entry_ptr[b[want]].tolist(), rows.entry_ptr[s[want]].tolist()
        for c, x0, x1, lo, hi in zip(want.tolist(), x0s, x1s, a[want].tolist(), b[want].tolist()):
            # X-row mass by the row that introduced each entry's neuron
            by_first = np.bincount(e_first[x0:x1], weights=e_mass[x0:x1])
            x_mass = float(by_first.sum())
            if x_mass > 0:
                reuse[c] = float(by_first[lo:hi].sum()) / (x_mass + EPS)
    progress = nan.copy()
    kind = np.zeros(k, dtype=np.int8)
    scale = np.zeros(k)
    defined = ~np.isnan(reuse)
    if defined.any():
        progress[defined] = reuse[defined] - reuse_median(reuse[defined])
        with np.errstate(invalid="ignore"):
            eff = defined & (progress > 0) & (cons > 0)
            red = defined & (progress != 0) & ~eff
            sc = np.where(eff, progress * cons, np.abs(progress))
            credited = (eff | red) & (sc > 0)
        kind[credited & eff] = EFFECTIVE_CODE
        kind[credited & red] = REDUNDANT_CODE
        scale[credited] = sc[credited]
    return CycleTable(a, b, s, se, sx, strength, cons, reuse, progress, kind, scale)


def cycle_signals(rows: ResponseRows, labels: np.ndarray) -> list[CycleDiagnostics]:
    """Per-cycle signals and the credit decision for one (non-skipped) response."""
    t = cycle_table(rows, labels)
    return [
        CycleDiagnostics(np.arange(t.start[c], t.x_start[c], dtype=np.int64),
                         np.arange(t.x_start[c], t.stop[c], dtype=np.int64),
                         float(t.slope_e[c]), float(t.slope_x[c]), float(t.strength[c]), float(t.consolidation[c]),
                         float(t.reuse[c]), float(t.progress[c]), KIND_NAMES[t.kind[c]], float(t.scale[c]))
        for c in range(len(t))
    ]


def credit_parts(rows: ResponseRows, table: CycleTable, code: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(dense indices, float32 credit) per cycle of kind ``code``: ``mass * scale`` of the neurons the
    cycle's E rows introduced."""
    ptr = rows.new_ptr
    idx, vals = [], []
    for c in np.flatnonzero(table.kind == code).tolist():
        n0, n1 = int(ptr[table.start[c]]), int(ptr[table.x_start[c]])
        idx.append(rows.new_index[n0:n1])
        vals.append((rows.new_mass[n0:n1].astype(np.float64) * float(table.scale[c])).astype(np.float32))
    return idx, vals
