"""Recovering each row's text for the report.

A row spans a run of tokens. With the cache's ``tokens`` stream (token ids per response) and a
tokenizer, each row's text is the decoded span. Without the stream but with the response's text
(responses.jsonl or ``--responses``) and a tokenizer, the text is re-tokenised and split when its
token count equals the rows' total. Otherwise the report shows rows only (and the whole text, when
known, unsplit).

The tokenizer is the one passed in, else the model's own: ``tokenizer.json`` in the model directory
the cache manifest records as ``model.path`` (capture writes it; see :func:`manifest_tokenizer`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..cache.arrays import CacheArrays
from ..errors import CacheError, ConfigError


@dataclass(frozen=True)
class RowTexts:
    """``rows`` maps a cache row index to its text ({} when unknown); ``source`` says where the
    text came from, in words; ``full_text`` is the whole response when known but not split."""

    rows: dict[int, str] = field(default_factory=dict)
    source: str = "rows only (no token text in the cache)"
    full_text: str | None = None


def load_tokenizer(path: str | os.PathLike) -> Any:
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json`` file or a directory holding one."""
    p = Path(path)
    file = p / "tokenizer.json" if p.is_dir() else p
    if not file.is_file():
        raise ConfigError(f"tokenizer {path} not found: give a tokenizer.json file or a model directory that holds one")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ConfigError("reading a tokenizer needs the 'tokenizers' package: pip install 'nex-interp[models]'") from None
    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:  # the tokenizers library raises its own exception type
        raise ConfigError(f"tokenizer {file} cannot be read ({type(e).__name__}: {e}): give a valid tokenizer.json") from None


def manifest_model_dir(manifest: dict) -> str | None:
    """The local model directory a cache manifest records: ``model.path``, the field capture writes
    from the model's identity (None for a hub model, or a hand-made cache that names no directory)."""
    model = manifest.get("model")
    path = model.get("path") if isinstance(model, dict) else None
    return path if isinstance(path, str) and path else None


def manifest_tokenizer(manifest: dict) -> Any | None:
    """The tokenizer of the model a cache was captured from: ``tokenizer.json`` in the directory the
    manifest records as ``model.path`` (:func:`manifest_model_dir`); no other field is consulted.

    None when the manifest records no model directory. A recorded directory without a
    ``tokenizer.json`` (moved or deleted since capture) is a :class:`ConfigError` that says to pass
    the tokenizer explicitly.
    """
    path = manifest_model_dir(manifest)
    if path is None:
        return None
    if not (Path(path) / "tokenizer.json").is_file():
        raise ConfigError(
            f"the cache's model directory {path} (manifest field model.path) holds no tokenizer.json: "
            "give the tokenizer explicitly (--tokenizer PATH: a tokenizer.json or a model directory holding one)"
        )
    return load_tokenizer(path)


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    ids = [int(t) for t in ids]
    try:
        return tokenizer.decode(ids, skip_special_tokens=False)
    except TypeError:
        return tokenizer.decode(ids)


def _encode(tokenizer: Any, text: str) -> list[int]:
    enc = tokenizer.encode(text, add_special_tokens=False) if _takes_kw(tokenizer) else tokenizer.encode(text)
    return list(enc.ids) if hasattr(enc, "ids") else list(enc)


def _takes_kw(tokenizer: Any) -> bool:
    try:
        tokenizer.encode("", add_special_tokens=False)
        return True
    except TypeError:
        return False


def split_by_rows(tokenizer: Any, ids: Sequence[int], bounds: Sequence[tuple[int, int]]) -> list[str]:
    """Decode ``ids[a:b]`` for each (a, b) in ``bounds``. Uses prefix differences so a multi-byte
    character or a word-joining space that straddles a row boundary is not lost, and falls back to
    decoding each span alone when the tokenizer's decoding is not prefix-stable."""
    out = []
    prev_text = ""
    prev_end = 0
    stable = True
    for a, b in bounds:
        if stable and a == prev_end:
            full = _decode(tokenizer, ids[:b])
            if full.startswith(prev_text):
                out.append(full[len(prev_text):])
                prev_text, prev_end = full, b
                continue
            stable = False
        out.append(_decode(tokenizer, ids[a:b]))
        prev_end = b
    return out


def row_texts(
    cache: CacheArrays,
    response: int,
    rows: Sequence[int] | np.ndarray,
    *args: Any,
    tokenizer: Any = None,
    text: str | None = None,
) -> RowTexts:
    """Texts of the given cache rows of ``response`` (see the module docstring for the sources).

    The token ids come from the cache's own ``tokens`` stream. (The older form
    ``row_texts(cache_path, cache, response, rows)`` still works.)
    """
    if not isinstance(cache, CacheArrays):  # the old form: (cache_path, cache, response, rows)
        if not isinstance(response, CacheArrays) or len(args) != 1:
            raise TypeError("row_texts(cache, response, rows, *, tokenizer=None, text=None)")
        cache, response, rows = response, rows, args[0]
    elif args:
        raise TypeError("row_texts(cache, response, rows, *, tokenizer=None, text=None)")
    start, stop = cache.response_rows(response)
    t0 = int(cache.token_row_ptr[start])
    n_tokens = int(cache.token_row_ptr[stop]) - t0
    bounds = [(int(cache.token_row_ptr[r]) - t0, int(cache.token_row_ptr[r + 1]) - t0) for r in rows]
    ids = None
    if cache.has_stream("tokens"):
        try:
            ptr, arrays = cache.stream("tokens")
        except CacheError:
            ptr, arrays = None, {}
        if ptr is not None and "ids" in arrays:
            ids = np.asarray(arrays["ids"][int(ptr[response]) : int(ptr[response + 1])])
    if tokenizer is None and (ids is not None or text is not None):
        tokenizer = manifest_tokenizer(cache.manifest)
    if ids is not None and tokenizer is not None:
        if len(ids) == n_tokens:
            texts = split_by_rows(tokenizer, ids, bounds)
            return RowTexts(dict(zip((int(r) for r in rows), texts)), "token ids in the cache, decoded")
        text = text if text is not None else _decode(tokenizer, ids)
        return RowTexts({}, f"rows only: the tokens stream has {len(ids)} tokens but the rows span {n_tokens}", text)
    if ids is not None:
        return RowTexts({}, "rows only: the cache has token ids but its manifest records no model directory (model.path) "
                            "to read a tokenizer from (give --tokenizer)")
    if text is not None and tokenizer is not None:
        enc = _encode(tokenizer, text)
        if len(enc) == n_tokens:
            texts = split_by_rows(tokenizer, enc, bounds)
            return RowTexts(dict(zip((int(r) for r in rows), texts)), "response text re-tokenised into rows")
        return RowTexts({}, f"rows only: the text has {len(enc)} tokens but the rows span {n_tokens}", text)
    if text is not None:
        return RowTexts({}, "rows only: no tokenizer to split the response text into rows (the manifest records no model "
                            "directory, model.path; give --tokenizer)", text)
    return RowTexts()
