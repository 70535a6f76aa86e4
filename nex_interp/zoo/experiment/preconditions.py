"""The regime the demo must be in before its NEX numbers mean anything, measured on its own samples,
and the diagnostics that explain a missed target.

:func:`preconditions` (``summary.json`` -> ``preconditions``), over the worked solutions (responses
that start a search) of the merge family's variants, pooled:

* ``median_response_tokens``, ``median_rows`` (rows of ``row_tokens`` tokens, as the caches cut them);
* ``mean_generator_e_spans``: maximal runs of E tokens per response, E/X labelled by the grammar
  (:func:`nex_interp.zoo.traces.label_tokens`), and ``e_span_rows_ge2_share``, the share of those
  spans that are the majority label of at least two rows (so the HMM's ``min_run = 2`` keeps them);
* ``late_novelty_share``: per response, the share of its distinct captured neurons that first
  appear in its last 20% of rows; the median over responses;
* ``thresholds`` (the issue's figures) and ``met`` (each figure against its threshold).

:func:`diagnostics` (``summary.json`` -> ``diagnostics``), per variant: mean GMF of correct and of
wrong responses, NEX's E->X cycles by kind (effective, redundant, skipped), the search's step kinds
(:func:`.variant.step_kinds`), and the learned weights per layer (count of positive and negative
weights, their summed magnitude).
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from ...cache.arrays import CacheArrays
from ..stats import response_stats
from ..traces import WORKED_START, label_tokens
from .config import DemoConfig, VariantResult
from .variant import variant_cache, variant_dir, variant_responses

#: the issue's preconditions: key -> the least value that meets it
THRESHOLDS = {
    "median_response_tokens": 256,
    "row_tokens": 8,
    "median_rows": 30,
    "mean_generator_e_spans": 5,
    "e_span_rows_ge2_share": 0.5,
    "late_novelty_share": 0.05,
}


def late_novelty(cache: CacheArrays, i: int, tail: float = 0.2) -> float | None:
    """Share of response ``i``'s distinct neurons first seen in its last ``tail`` of rows (rows as
    :func:`nex_interp.zoo.stats.response_stats` counts them); None with fewer than 5 rows."""
    start, stop = cache.response_rows(i)
    n = stop - start
    if n < 5:
        return None
    late_from = start + n - max(1, round(tail * n))
    ptr = cache.row_ptr
    early = np.unique(np.asarray(cache.keys[ptr[start] : ptr[late_from]]))
    every = np.unique(np.asarray(cache.keys[ptr[start] : ptr[stop]]))
    return float(1.0 - len(early) / len(every)) if len(every) else None


def _worked(resp: dict) -> bool:
    return resp["response"].split()[:1] == [WORKED_START]


def preconditions(out, merge: list[VariantResult], cfg: DemoConfig) -> dict:
    """The precondition figures over the merge family's worked solutions (module docstring)."""
    stats, novelty = [], []
    for r in merge:
        cache = variant_cache(out, r.name)
        for i, resp in enumerate(variant_responses(out, r.name, cache)):
            if not _worked(resp):
                continue
            tokens = resp["response"].split()
            stats.append(response_stats(tokens, label_tokens(tokens), cfg.row_tokens))
            nov = late_novelty(cache, i)
            if nov is not None:
                novelty.append(nov)
    if not stats:
        return {"n_worked_responses": 0, "row_tokens": cfg.row_tokens, "thresholds": THRESHOLDS, "met": {}}
    spans = [s for p in stats for s in p["e_span_rows"]]
    fig = {
        "n_worked_responses": len(stats),
        "median_response_tokens": statistics.median(p["tokens"] for p in stats),
        "row_tokens": cfg.row_tokens,
        "median_rows": statistics.median(p["rows"] for p in stats),
        "mean_generator_e_spans": statistics.fmean(p["e_spans"] for p in stats),
        "e_span_rows_ge2_share": sum(s >= 2 for s in spans) / len(spans) if spans else None,
        "late_novelty_share": statistics.median(novelty) if novelty else None,
    }
    fig["thresholds"] = THRESHOLDS
    fig["met"] = {k: (fig[k] is not None and fig[k] >= t) for k, t in THRESHOLDS.items()}
    return fig


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def diagnostics(out, results: list[VariantResult]) -> dict:
    """Per-variant diagnostics (module docstring)."""
    from ...core import NexParams, diagnose_response
    from ...weights_io import load_weights

    params = NexParams()
    per = {}
    for r in results:
        cache = variant_cache(out, r.name)
        kinds: dict[str, int] = {}
        for i in range(cache.n_responses):
            for c in diagnose_response(cache, i, params).cycles:
                kinds[c.kind] = kinds.get(c.kind, 0) + 1
        w = load_weights(variant_dir(out, r.name) / "weights.npz")
        layer, _ = w.layer_unit()
        weight = np.asarray(w.weight, dtype=np.float64)
        layers = {}
        for L in sorted(set(layer.tolist())):
            sel = weight[layer == L]
            layers[str(L)] = {"positive": int((sel > 0).sum()), "negative": int((sel < 0).sum()),
                              "positive_mass": float(sel[sel > 0].sum()), "negative_mass": float(-sel[sel < 0].sum())}
        per[r.name] = {
            "gmf_correct": _mean(g for g, ok in zip(r.gmf, r.correct) if ok),
            "gmf_wrong": _mean(g for g, ok in zip(r.gmf, r.correct) if not ok),
            "n_correct": int(sum(r.correct)), "n_wrong": int(len(r.correct) - sum(r.correct)),
            "cycle_kinds": kinds,
            "step_kinds": r.step_kinds,
            "weights_per_layer": layers,
        }
    return per
