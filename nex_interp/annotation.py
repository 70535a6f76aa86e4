"""E/X annotation with people: export a cache's responses for annotators, and measure the HMM
phases' agreement with what they marked (the formats: :mod:`nex_interp.phase_agreement`).

* :func:`annotation_records`: one record per response (text, tokens with character offsets when a
  tokenizer renders the cache's token ids, the cache's rows as token ranges, empty ``spans``).
* :func:`export_for_annotation`: those records as a JSONL file (atomically written).
* :func:`agree_with_annotations`: Cohen's kappa and boundary F1 of the HMM phases against an
  annotation file, with the summary ``nex annotate agree`` writes.
* :func:`token_offsets`: each token's ``[start, end)`` in the decoded text.

``nex annotate export`` and ``nex annotate agree`` are thin shells over these.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from .cache.arrays import CacheArrays


def token_offsets(tokenizer, ids: list[int]) -> tuple[str, list[str], list[list[int]]]:
    """(decoded text, each token's own text, each token's [start, end) in the decoded text).

    Each token's text is searched for in the text from where the previous one ended, so word-level
    tokenizers (which join tokens with spaces) and byte-level BPE (whose tokens carry their spaces)
    both get exact offsets; a token whose text does not appear as such (a multi-byte character split
    across tokens) gets an empty span at the current position.
    """
    full = tokenizer.decode(ids)
    pieces = [tokenizer.decode([t]) for t in ids]
    offsets, pos = [], 0
    for piece in pieces:
        at = full.find(piece, pos) if piece else -1
        if at < 0 or (at - pos) > max(4, len(piece)):  # not found nearby: do not jump ahead
            offsets.append([pos, pos])
            continue
        offsets.append([at, at + len(piece)])
        pos = at + len(piece)
    return full, pieces, offsets


def tokenizer_for_model(spec: str):
    """The transformers tokenizer of a model spec (a path, ``zoo:NAME``, a hub id)."""
    from .models.loader import resolve_spec

    r = resolve_spec(spec)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(r.path) if r.path else r.hub)


def cache_model_spec(cache: CacheArrays) -> str | None:
    """The model spec the cache's manifest records (``model.spec``), if any."""
    model = cache.manifest.get("model")
    return model.get("spec") if isinstance(model, dict) else None


def token_ids_stream(cache: CacheArrays):
    """``(ptr, ids)`` of the cache's token ids (its ``tokens`` stream), or None when it stores none."""
    if not cache.has_stream("tokens"):
        return None
    ptr, arrays = cache.stream("tokens")
    return (ptr, arrays["ids"]) if "ids" in arrays else None


def annotation_records(
    cache: CacheArrays, texts: dict[str, str] | None = None, tokenizer: Any = None, limit: int | None = None
) -> Iterator[dict]:
    """One annotation record per response of ``cache`` (at most ``limit``), in cache order.

    With a ``tokenizer`` (and token ids in the cache), the record holds the decoded ``text``, its
    ``tokens`` and ``token_offsets`` and ``unit: "char"``; otherwise ``text`` is ``texts[id]`` or the
    response's metadata ``response`` and ``unit: "token"``. ``rows``: the cache's rows as
    ``[start, end)`` token ranges; ``spans`` is empty, for annotators to fill in.
    """
    from .errors import ConfigError

    meta = cache.response_meta
    ids = cache.response_ids
    texts = texts or {}
    tok_ids = token_ids_stream(cache) if tokenizer is not None else None
    if tokenizer is not None and tok_ids is None:
        raise ConfigError(f"cache {cache.path} stores no token ids (tokens/ids): a tokenizer cannot render its tokens; export without it")
    trp = cache.token_row_ptr
    for k, rid in enumerate(ids):
        if limit is not None and k >= limit:
            break
        start, stop = cache.response_rows(k)
        t0 = int(trp[start]) if stop > start else 0
        rows = [[int(trp[j]) - t0, int(trp[j + 1]) - t0] for j in range(start, stop)]
        obj = {"id": rid, "problem_id": meta[k].get("problem_id") if meta else None, "unit": "char", "rows": rows,
               "n_tokens": rows[-1][1] if rows else 0}
        if tok_ids is not None:
            ptr, arr = tok_ids
            full, pieces, offsets = token_offsets(tokenizer, [int(t) for t in arr[ptr[k] : ptr[k + 1]]])
            obj.update(text=full, tokens=pieces, token_offsets=offsets)
        else:
            obj.update(text=texts.get(rid) or (meta[k].get("response") if meta else None), unit="token")
        obj["spans"] = []
        yield obj


def export_for_annotation(
    cache: CacheArrays | str | os.PathLike, out: str | os.PathLike, *, texts: dict[str, str] | None = None,
    tokenizer: Any = None, limit: int | None = None,
) -> int:
    """Write :func:`annotation_records` of ``cache`` (opened, or its path) as JSONL to ``out``
    (atomically); returns the number of responses written."""
    import json

    from .atomic import atomic_path
    from .cache.reader import as_cache

    cache = as_cache(cache)
    n = 0
    with atomic_path(Path(out)) as tmp, tmp.open("w", encoding="utf-8") as f:
        for obj in annotation_records(cache, texts, tokenizer, limit):
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
    return n


def agree_with_annotations(cache: CacheArrays | str | os.PathLike, annotations, params=None, tolerance: int = 2):
    """Agreement of the HMM phases of ``cache`` with ``annotations`` (a file, or a dict id ->
    :class:`~nex_interp.phase_agreement.Annotation`). Returns ``(AgreementReport, summary)``;
    the summary (what ``agreement.json`` holds) adds ``unmatched_annotations`` and ``params``."""
    from .cache.reader import as_cache
    from .core import NexParams
    from .errors import ConfigError
    from .phase_agreement import agreement, hmm_token_labels, read_annotations

    if tolerance < 0:
        raise ConfigError(f"tolerance must be >= 0 tokens, got {tolerance}")
    cache = as_cache(cache)
    params = params if params is not None else NexParams()
    anns = annotations if isinstance(annotations, dict) else read_annotations(annotations)
    ids = cache.response_ids
    wanted = [k for k, rid in enumerate(ids) if rid in anns]
    pred = {ids[k]: labels for k, labels in hmm_token_labels(cache, wanted, params).items()}
    gold = {rid: a.token_labels(len(pred[rid])) for rid, a in anns.items() if rid in pred}
    unknown = [rid for rid in anns if rid not in pred]
    rep = agreement(pred, gold, tolerance)
    return rep, {**rep.summary(), "unmatched_annotations": len(unknown), "params": params.to_dict()}


__all__ = ["token_offsets", "tokenizer_for_model", "annotation_records", "export_for_annotation", "agree_with_annotations",
           "cache_model_spec", "token_ids_stream"]
