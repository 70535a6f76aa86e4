"""What a response report shows, gathered from a cache: typed views, no HTML.

:func:`gather_report` runs the NEX core's diagnostics on one response and collects its kept rows
(with their text when it can be recovered), its E->X cycles and its top contributing neurons;
:mod:`nex_interp.report.html` turns the result into a page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..cache.arrays import CacheArrays
from ..cache.manifest import RESERVED_FIELDS
from ..errors import ConfigError
from ..keys import DROPPED, OUT_OF_RANGE
from ..neuron_weights import NeuronWeights
from .text import RowTexts, row_texts


@dataclass(frozen=True)
class RowView:
    """One kept row of the response. ``row`` is its index in the cache, ``position`` its index
    among the kept rows (the HMM's time axis), ``explore`` its phase (True = E)."""

    row: int
    position: int
    tokens: int
    n_new: int
    slope: float
    explore: bool
    text: str | None = None


@dataclass(frozen=True)
class CycleView:
    """One E->X cycle: kept-row positions [e_start, e_stop) then [x_start, x_stop), and its
    signals; ``kind`` is ``effective``, ``redundant`` or ``skipped`` (no credit: reuse undefined or
    progress 0)."""

    index: int
    e_start: int
    e_stop: int
    x_start: int
    x_stop: int
    slope_e: float
    slope_x: float
    strength: float
    consolidation: float
    reuse: float
    progress: float
    kind: str
    scale: float


@dataclass(frozen=True)
class NeuronView:
    """A neuron of the response's base vector: its total mass in the response, its NEX weight, and
    its contribution ``mass * weight`` (positive: counts toward good mass)."""

    layer: int
    unit: int
    mass: float
    weight: float
    contribution: float


@dataclass(frozen=True)
class ReportData:
    """Everything one response's report shows."""

    cache: str
    response: int
    n_responses: int
    rows: list[RowView]
    n_cache_rows: int
    cycles: list[CycleView]
    top_neurons: list[NeuronView]
    bottom_neurons: list[NeuronView]
    gmf: float
    weights_source: str
    text_source: str
    full_text: str | None = None
    meta: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    skipped_reason: str | None = None

    @property
    def n_explore(self) -> int:
        return sum(r.explore for r in self.rows)


def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _span(rows: Any) -> tuple[int, int]:
    """[start, stop) of a cycle's rows (the core gives a sequence or a range of kept-row positions)."""
    arr = np.asarray(list(rows), dtype=np.int64)
    if len(arr) == 0:
        return 0, 0
    return int(arr.min()), int(arr.max()) + 1


def cycle_views(cycles: Sequence[Any]) -> list[CycleView]:
    """Typed views of the core's CycleDiagnostics."""
    out = []
    for i, c in enumerate(cycles):
        e0, e1 = _span(c.e_rows)
        x0, x1 = _span(c.x_rows)
        kind = str(getattr(c, "kind", "") or "skipped")
        out.append(
            CycleView(
                i, e0, e1, x0, x1, _f(c.slope_e), _f(c.slope_x), _f(c.strength), _f(c.consolidation), _f(c.reuse),
                _f(c.progress), kind, _f(getattr(c, "scale", float("nan"))),
            )
        )
    return out


def response_neurons(cache: CacheArrays, i: int, weights: NeuronWeights, top: int) -> tuple[list[NeuronView], list[NeuronView], float]:
    """The ``top`` neurons of response ``i`` with the largest positive and negative ``mass * weight``
    (sanitised base vector, as the score uses it) and the response's Good-Mass Fraction."""
    a, b = int(cache.base_ptr[i]), int(cache.base_ptr[i + 1])
    keys = np.asarray(cache.base_keys[a:b])
    mass = np.asarray(cache.base_mass[a:b], dtype=np.float64)
    idx = cache.scheme.dense_index(keys)
    keep = idx != DROPPED
    idx, keys, mass = idx[keep], keys[keep], mass[keep]
    if len(idx) == 0 or (idx == OUT_OF_RANGE).any():
        return [], [], float("nan")
    mass = np.where(np.isfinite(mass) & (mass > 0), mass, 0.0)
    if mass.sum() <= 0:
        return [], [], float("nan")
    pos = np.searchsorted(weights.index, idx)
    pos = np.minimum(pos, max(len(weights.index) - 1, 0))
    w = np.zeros(len(idx))
    if len(weights.index):
        hit = weights.index[pos] == idx
        w[hit] = weights.weight[pos[hit]]
    contrib = mass * w
    denom = float(np.sum(mass * np.abs(w)))
    gmf = float(np.sum(mass * np.maximum(w, 0)) / denom) if denom > 0 else 0.0
    layer, unit = cache.scheme.unpack(keys)

    def views(order: np.ndarray) -> list[NeuronView]:
        return [NeuronView(int(layer[k]), int(unit[k]), float(mass[k]), float(w[k]), float(contrib[k])) for k in order]

    order = np.argsort(-contrib, kind="stable")
    pos_order = order[contrib[order] > 0][:top]
    neg_order = np.argsort(contrib, kind="stable")
    neg_order = neg_order[contrib[neg_order] < 0][:top]
    return views(pos_order), views(neg_order), gmf


def gather_report(
    cache: CacheArrays | str | os.PathLike,
    response: int,
    *,
    weights: NeuronWeights | None = None,
    params: Any = None,
    tokenizer: Any = None,
    texts: Sequence[str] | None = None,
    top: int = 15,
) -> ReportData:
    """Collect the report of response ``response`` of ``cache`` (an opened cache, or its path).

    weights:   NEX weights for the neuron table and GMF; None learns them on this cache
               (self-calibration, as the NEX score does by default).
    params:    the core's ``NexParams`` (None: ``NexParams()``, its defaults).
    tokenizer: anything with ``decode(ids) -> str`` (a ``tokenizers.Tokenizer`` or a transformers
               tokenizer) to turn the cache's ``tokens`` stream into each row's text; None reads
               ``tokenizer.json`` from the model directory the manifest records as ``model.path``
               (rows only when it records none; an error when that directory lacks the file).
    texts:     per-response texts (e.g. from a responses.jsonl) used when the cache has no tokens
               stream; they are split into rows with the tokenizer when the token counts agree.
    top:       neurons listed on each side (largest positive and negative mass x weight).
    """
    from ..cache.reader import as_cache
    from ..core import NexParams, diagnose_response, learn_weights

    arrays = as_cache(cache)
    cache_path = arrays.path if arrays.path is not None else "(in memory)"
    n = arrays.n_responses
    if not (0 <= response < n):
        raise ConfigError(f"--response {response} is out of range: the cache {cache_path} holds responses 0..{n - 1}")
    if top < 1:
        raise ConfigError(f"--top must be at least 1, got {top}")
    params = params if params is not None else NexParams()
    if weights is None:
        weights = learn_weights(arrays, params)
        weights_source = f"self-calibrated on this cache ({n} response{'s' if n != 1 else ''})"
    else:
        if weights.scheme != arrays.scheme:
            raise ConfigError(
                f"the weights pack neurons as {weights.scheme.name} but the cache {cache_path} as {arrays.scheme.name}: "
                "give weights learned on a cache of the same model"
            )
        weights_source = str(weights.meta.get("file") or weights.meta.get("source") or "given weights")
    diag = diagnose_response(arrays, response, params)
    start, stop = arrays.response_rows(response)
    kept = np.asarray(diag.kept_rows, dtype=np.int64)  # cache row indices of the kept rows
    tokens, n_new, slopes, labels = diag.tokens, diag.n_new, diag.slopes, diag.labels
    if len(kept) == 0 and stop > start:  # too short to segment: show the cache's rows, all X
        kept = np.arange(start, stop, dtype=np.int64)
        tokens = np.diff(np.asarray(arrays.token_row_ptr[start : stop + 1], dtype=np.int64))
        n_new, slopes, labels = np.zeros(len(kept), np.int64), np.full(len(kept), np.nan), np.zeros(len(kept), bool)

    meta_list = arrays.response_meta
    meta = dict(meta_list[response]) if response < len(meta_list) else {}
    text_of = row_texts(arrays, response, kept, tokenizer=tokenizer,
                        text=(texts[response] if texts is not None and response < len(texts) else _meta_text(meta)))

    rows = [
        RowView(int(r), p, int(t), int(nn), float(s), bool(e), text_of.rows.get(int(r)) if text_of.rows else None)
        for p, (r, t, nn, s, e) in enumerate(zip(kept, tokens, n_new, slopes, labels))
    ]
    top_n, bottom_n, gmf = response_neurons(arrays, response, weights, top)
    return ReportData(
        cache=str(cache_path),
        response=response,
        n_responses=n,
        rows=rows,
        n_cache_rows=stop - start,
        cycles=cycle_views(diag.cycles),
        top_neurons=top_n,
        bottom_neurons=bottom_n,
        gmf=gmf,
        weights_source=weights_source,
        text_source=text_of.source,
        full_text=text_of.full_text,
        meta={k: v for k, v in meta.items() if not isinstance(v, (dict, list)) and k not in ("text", "response")},
        params=_params_dict(params),
        model={k: v for k, v in arrays.manifest.items() if k not in RESERVED_FIELDS},
        skipped_reason=diag.skipped_reason,
    )


def _meta_text(meta: dict) -> str | None:
    for key in ("text", "response", "completion"):
        if isinstance(meta.get(key), str):
            return meta[key]
    return None


def _params_dict(params: Any) -> dict:
    import dataclasses

    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return {k: v for k, v in dataclasses.asdict(params).items() if isinstance(v, (int, float, str, bool))}
    return {}


__all__ = ["RowView", "CycleView", "NeuronView", "ReportData", "gather_report", "response_neurons", "cycle_views", "RowTexts"]
