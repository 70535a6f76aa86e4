"""E->X cycles and their credit (NEX-ALGORITHM.md, steps 4-6).

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


def find_cycles(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(e_start, x_start, x_stop) of every maximal E run followed by a maximal X run."""
    labels = np.asarray(labels, dtype=bool)
    n = len(labels)
    if n == 0:
        return []
    starts = np.flatnonzero(np.concatenate(([True], labels[1:] != labels[:-1])))
    stops = np.append(starts[1:], n)
    out = []
    for k in range(len(starts) - 1):
        if labels[starts[k]]:
            out.append((int(starts[k]), int(starts[k + 1]), int(stops[k + 1])))
    return out


def count_e_segments(labels: np.ndarray) -> int:
    labels = np.asarray(labels, dtype=bool)
    if len(labels) == 0:
        return 0
    return int(labels[0]) + int(np.count_nonzero(labels[1:] & ~labels[:-1]))


def _reuse_masses(rows: ResponseRows, spans: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per cycle: total mass of its X rows, and the part of it on neurons its E rows introduced
    (entries whose neuron's first row lies in the E run), from one weighted bincount per cycle."""
    ptr = rows.entry_ptr
    x_mass = np.zeros(len(spans))
    reuse_mass = np.zeros(len(spans))
    for c, (a, b, s) in enumerate(spans):
        x0, x1 = int(ptr[b]), int(ptr[s])
        by_first = np.bincount(rows.entry_first[x0:x1], weights=rows.entry_mass[x0:x1])
        x_mass[c] = by_first.sum()
        reuse_mass[c] = by_first[a:b].sum()
    return x_mass, reuse_mass


def cycle_signals(rows: ResponseRows, labels: np.ndarray) -> list[CycleDiagnostics]:
    """Per-cycle signals and the credit decision for one (non-skipped) response."""
    spans = find_cycles(labels)
    if not spans:
        return []
    slopes = rows.slopes
    m_all = median(slopes)
    x_mass, reuse_mass = _reuse_masses(rows, spans)
    cum_new = rows.new_ptr
    cycles = []
    for c, (a, b, s) in enumerate(spans):
        se = median(slopes[a:b])
        sx = median(slopes[b:s])
        strength = se - m_all
        cons = min(max(1.0 - sx / (se + EPS), 0.0), 1.0) if se > 0 else 0.0
        reuse = float("nan")
        if strength > 0 and cum_new[b] - cum_new[a] > 0 and x_mass[c] > 0:
            reuse = float(reuse_mass[c]) / (float(x_mass[c]) + EPS)
        cycles.append(CycleDiagnostics(np.arange(a, b, dtype=np.int64), np.arange(b, s, dtype=np.int64), se, sx,
                                       strength, cons, reuse, float("nan"), SKIPPED, 0.0))
    defined = [cy.reuse for cy in cycles if not np.isnan(cy.reuse)]
    if not defined:
        return cycles
    med = median(np.asarray(defined))
    for cy in cycles:
        if np.isnan(cy.reuse) or cy.strength <= 0:
            continue
        cy.progress = cy.reuse - med
        if cy.progress == 0:
            continue
        if cy.progress > 0 and cy.consolidation > 0:
            kind, scale = EFFECTIVE, cy.progress * cy.consolidation
        else:
            kind, scale = REDUNDANT, abs(cy.progress)
        if scale > 0:
            cy.kind, cy.scale = kind, scale
    return cycles


def add_credit(rows: ResponseRows, cycles: list[CycleDiagnostics], effective: np.ndarray, redundant: np.ndarray) -> None:
    """Add ``mass * scale`` of the neurons each credited cycle's E rows introduced (float32 accumulators)."""
    ptr = rows.new_ptr
    for cy in cycles:
        if cy.kind == SKIPPED:
            continue
        n0, n1 = int(ptr[cy.e_rows[0]]), int(ptr[cy.e_rows[-1] + 1])
        vals = (rows.new_mass[n0:n1].astype(np.float64) * cy.scale).astype(np.float32)
        acc = effective if cy.kind == EFFECTIVE else redundant
        np.add.at(acc, rows.new_index[n0:n1], vals)
