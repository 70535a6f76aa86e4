"""Neuron-level analysis helpers for notebooks and reports.

* :func:`neuron_contexts`: the rows (contexts) of a cache where given neurons carry the most mass,
  with the rows' text when it can be recovered (see :mod:`nex_interp.report.text`).
* :func:`effective_overlap`: how much the effective (or redundant) neuron sets of several
  variants overlap (Jaccard index and shared counts).
* :func:`top_activating_tokens`: each neuron's strongest tokens with their context, as a table
  (the forward passes are :func:`nex_interp.models.activations.top_activations`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..cache.arrays import CacheArrays
from ..errors import ConfigError
from ..neuron_weights import NeuronWeights
from .text import row_texts

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..models.loader import LoadedModel


def neuron_contexts(
    cache: CacheArrays,
    neurons: Sequence[tuple[int, int]],
    *,
    top: int = 3,
    tokenizer: Any = None,
    context_rows: int = 1,
    text: bool = True,
    cache_path: str | os.PathLike | None = None,
) -> "pd.DataFrame":
    """For each (layer, unit) in ``neurons``, the ``top`` rows of the cache where its mass is
    largest: columns ``layer, unit, rank, response, row, tokens, mass, text, context``.

    ``text`` is the row's text and ``context`` the same with ``context_rows`` rows of the same
    response on each side, the row itself in double angle brackets; both are None when the cache
    has no token text (its ``tokens`` stream) or no tokenizer is known, or with ``text=False``.
    Neurons never active in the cache get no rows. (``cache_path``: only for a cache built in
    memory, whose own path is unknown; an opened cache knows where it lies.)"""
    import pandas as pd

    columns = ["layer", "unit", "rank", "response", "row", "tokens", "mass", "text", "context"]
    if top < 1 or context_rows < 0:
        raise ConfigError(f"top must be at least 1 and context_rows at least 0, got top={top}, context_rows={context_rows}")
    if len(neurons) == 0:
        return pd.DataFrame(columns=columns)
    layer = np.array([n[0] for n in neurons], dtype=np.int64)
    unit = np.array([n[1] for n in neurons], dtype=np.int64)
    wanted = cache.scheme.pack(layer, unit)
    keys = np.asarray(cache.keys)
    hit = np.flatnonzero(np.isin(keys, wanted))
    mass = np.asarray(cache.mass[hit], dtype=np.float64)
    mass = np.where(np.isfinite(mass), mass, 0.0)
    rows = np.searchsorted(np.asarray(cache.row_ptr), hit, side="right") - 1
    responses = np.searchsorted(np.asarray(cache.sample_row_ptr), rows, side="right") - 1
    tokens = np.diff(np.asarray(cache.token_row_ptr))
    records = []
    for L, U, key in zip(layer, unit, wanted):
        sel = np.flatnonzero(keys[hit] == key)
        order = sel[np.argsort(-mass[sel], kind="stable")][:top]
        for rank, e in enumerate(order, 1):
            records.append(
                {"layer": int(L), "unit": int(U), "rank": rank, "response": int(responses[e]), "row": int(rows[e]),
                 "tokens": int(tokens[rows[e]]), "mass": float(mass[e]), "text": None, "context": None}
            )
    df = pd.DataFrame(records, columns=columns)
    if cache.path is None and cache.origin is None and cache_path is not None:
        import dataclasses
        from pathlib import Path

        cache = dataclasses.replace(cache, path=Path(cache_path))
    if text and len(df) and (cache.path is not None or cache.origin is not None):
        texts: dict[int, str] = {}
        for resp, g in df.groupby("response"):
            r0, r1 = cache.response_rows(int(resp))
            wanted_rows = {x for r in g["row"] for x in range(max(r0, r - context_rows), min(r1, r + context_rows + 1))}
            texts.update(row_texts(cache, int(resp), sorted(wanted_rows), tokenizer=tokenizer).rows)
        df["text"] = [texts.get(int(r)) for r in df["row"]]

        def around(resp: int, r: int) -> str | None:
            if texts.get(r) is None:
                return None
            r0, r1 = cache.response_rows(resp)
            left = "".join(texts.get(x, "") for x in range(max(r0, r - context_rows), r))
            right = "".join(texts.get(x, "") for x in range(r + 1, min(r1, r + context_rows + 1)))
            return f"{left}«{texts[r]}»{right}"

        df["context"] = [around(int(a), int(b)) for a, b in zip(df["response"], df["row"])]
    return df


def _neuron_set(w: NeuronWeights, kind: str) -> set[int]:
    if kind == "effective":
        return set(w.index[w.weight > 0].tolist())
    if kind == "redundant":
        return set(w.index[w.weight < 0].tolist())
    raise ConfigError(f"unknown neuron set {kind!r}: use 'effective' or 'redundant'")


def effective_overlap(weights: Mapping[str, NeuronWeights], *, kind: str = "effective", top: int | None = None) -> "pd.DataFrame":
    """Pairwise overlap of the variants' ``kind`` neuron sets (weight > 0 for ``effective``,
    < 0 for ``redundant``; ``top`` keeps each variant's ``top`` neurons by |weight|, ties by total
    credit). Returns a long table: ``a, b, n_a, n_b, shared, jaccard`` for every ordered pair
    (a == b included), ready to pivot into a matrix."""
    import pandas as pd

    if top is not None and top < 1:
        raise ConfigError(f"top must be at least 1, got {top}")
    schemes = {w.scheme for w in weights.values()}
    if len(schemes) > 1:
        raise ConfigError("the weights use different key schemes: compare variants of one model architecture")
    sets: dict[str, set[int]] = {}
    for name, w in weights.items():
        s = _neuron_set(w, kind)
        if top is not None and len(s) > top:
            idx = np.array(sorted(s), dtype=np.int64)
            pos = np.searchsorted(w.index, idx)
            credit = w.effective_mass[pos].astype(np.float64) + w.redundant_mass[pos]
            order = np.lexsort((idx, -credit, -np.abs(w.weight[pos])))
            s = set(idx[order[:top]].tolist())
        sets[name] = s
    rows = []
    for a, sa in sets.items():
        for b, sb in sets.items():
            union = len(sa | sb)
            rows.append({"a": a, "b": b, "n_a": len(sa), "n_b": len(sb), "shared": len(sa & sb),
                         "jaccard": len(sa & sb) / union if union else float("nan")})
    return pd.DataFrame(rows)


def top_activating_tokens(
    model: "LoadedModel",
    sequences: Sequence[Sequence[int]],
    neurons: Sequence[tuple[int, int]],
    *,
    top: int = 5,
    window: int = 4,
    progress: bool = False,
) -> "pd.DataFrame":
    """The tokens on which each neuron's activation is largest, over the given token sequences.

    ``model`` is a :class:`~nex_interp.models.loader.LoadedModel`; the activations come from
    :func:`nex_interp.models.activations.top_activations` (one forward pass per sequence, hooked at
    ``blocks.{L}.mlp.out.hook_in``). Columns: ``layer, unit, rank, sequence, position, activation,
    token, context`` where ``context`` shows ``window`` tokens on each side with the token itself
    in double angle brackets.
    """
    import pandas as pd

    from ..models.activations import top_activations

    if top < 1 or window < 0:
        raise ConfigError(f"top must be >= 1 and window >= 0, got top={top}, window={window}")
    found = top_activations(model, sequences, neurons, top=top, progress=progress)
    tok = model.tokenizer

    def show(ids: Sequence[int]) -> str:
        return tok.decode(list(ids)) if len(ids) else ""

    records = []
    for (L, U), acts in found.items():
        for rank, a in enumerate(acts, 1):
            ids, pos = list(sequences[a.sequence]), a.position
            left, here, right = ids[max(0, pos - window) : pos], ids[pos : pos + 1], ids[pos + 1 : pos + 1 + window]
            records.append({"layer": L, "unit": U, "rank": rank, "sequence": a.sequence, "position": pos, "activation": a.value,
                            "token": show(here), "context": f"{show(left)} «{show(here)}» {show(right)}".strip()})
    return pd.DataFrame(records, columns=["layer", "unit", "rank", "sequence", "position", "activation", "token", "context"])
