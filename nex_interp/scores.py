"""Scores of a cache's responses as a table keyed by response id.

:func:`score_table` is what a notebook wants from ``score_responses`` (which returns a bare float
array by position, and stays so: the core is numpy-only and fast): one row per response, indexed
by the response id, with the response's metadata beside its GMF. :func:`score_columns` builds the
same columns without pandas (``nex score`` writes them to ``scores.csv``).

>>> from nex_interp.cache.reader import open_cache
>>> from nex_interp.weights_io import load_weights
>>> cache = open_cache("tests/data/reference/example_cache")
>>> df = score_table(cache, load_weights("tests/data/reference/example_weights.npz"))
>>> df.index.name, list(df.columns), len(df)
('id', ['response', 'gmf', 'n_rows', 'n_tokens'], 1)
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import numpy as np

from .cache.arrays import CacheArrays
from .neuron_weights import NeuronWeights

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: metadata fields left out of the table: the id is the index; the rest are bulky or per-token
_SKIP_META = frozenset({"id", "prompt", "response", "text", "completion"})


def score_columns(cache: CacheArrays, gmf: np.ndarray, with_log_gap: bool = False) -> dict:
    """The columns of ``nex score``'s ``scores.csv``: ``response`` (position), ``id`` (when the
    cache records ids), ``gmf``, ``n_rows``, ``n_tokens`` and, with ``with_log_gap``, ``log_gap``."""
    from .core import log_gap

    gmf = np.asarray(gmf, dtype=np.float64)
    columns: dict = {"response": np.arange(cache.n_responses, dtype=np.int64)}
    meta = cache.response_meta
    if meta and any("id" in m for m in meta):
        columns["id"] = [m.get("id") for m in meta]
    columns["gmf"] = gmf
    columns["n_rows"] = np.diff(np.asarray(cache.sample_row_ptr, dtype=np.int64))
    columns["n_tokens"] = cache.response_tokens()
    if with_log_gap:
        columns["log_gap"] = [log_gap(g) if not math.isnan(g) else np.nan for g in gmf]
    return columns


def score_table(cache: CacheArrays | str | os.PathLike, weights: NeuronWeights, *, with_log_gap: bool = False,
                metadata: bool = True) -> "pd.DataFrame":
    """GMF of every response of ``cache`` under ``weights``, one row per response, indexed by the
    response id (``id``; the position when the cache records no ids).

    Columns: ``response`` (position in the cache), the response's scalar metadata fields when
    ``metadata`` (e.g. ``problem_id``, ``sample``, ``correct``, ``n_response_tokens``), ``gmf``
    (NaN where the base vector is empty), ``n_rows``, ``n_tokens`` and, with ``with_log_gap``, ``log_gap``.
    The NEX score is ``df["gmf"].mean()`` (NaNs skipped, as :func:`nex_interp.core.nex_score`).
    """
    import pandas as pd

    from .cache.reader import as_cache
    from .core import score_responses

    cache = as_cache(cache)
    gmf = np.asarray(score_responses(cache, weights), dtype=np.float64)
    cols = score_columns(cache, gmf, with_log_gap)
    cols.pop("id", None)
    frame = {"response": cols.pop("response")}
    meta = cache.response_meta
    if metadata and meta:
        names = [k for k in dict.fromkeys(k for m in meta for k in m) if k not in _SKIP_META]
        for k in names:
            values = [m.get(k) for m in meta]
            if all(v is None or isinstance(v, (str, int, float, bool)) for v in values):
                frame[k] = values
    frame.update(cols)
    df = pd.DataFrame(frame, index=pd.Index(cache.response_ids, name="id"))
    return df


__all__ = ["score_table", "score_columns"]
