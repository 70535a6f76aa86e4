"""The in-memory view of a sparse activation cache: CSR arrays, usually memory-mapped.

This is the typed object that flows from the cache reader to the NEX core. Layout and meaning:
``docs/cache-format.md`` and ``docs/algorithm.md`` ("Cache layout"). Arrays are read-only views; nothing here reads a whole array into RAM.

A cache opened from disk (:func:`nex_interp.cache.reader.open_cache`) also knows where it came
from (:attr:`CacheArrays.path`), its per-response metadata (:attr:`CacheArrays.response_meta`,
:attr:`CacheArrays.response_ids`) and its per-token side streams (:meth:`CacheArrays.stream`); the
metadata and streams are read on first use. A cache derived from another (a subset of its
responses, its rows merged: :mod:`nex_interp.cache.ops`) keeps a link to it (``origin`` and
``origin_responses``), so the derived cache answers the same questions for its own responses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..keys import KeyScheme


class Stream(NamedTuple):
    """A per-token side stream: ``ptr`` (int64 [n_responses + 1]; response i owns items
    ``[ptr[i], ptr[i+1])``) and its named arrays (e.g. ``ids``, ``entropy``, ``logprob``)."""

    ptr: np.ndarray
    arrays: dict[str, np.ndarray]

    def of(self, i: int) -> dict[str, np.ndarray]:
        """Response ``i``'s slice of every array."""
        a, b = int(self.ptr[i]), int(self.ptr[i + 1])
        return {name: arr[a:b] for name, arr in self.arrays.items()}


@dataclass(frozen=True)
class CacheArrays:
    """CSR arrays of one cache.

    sample_row_ptr: int64 [n_responses + 1]; response i owns rows [p[i], p[i+1]).
    row_ptr:        int64 [n_rows + 1]; row j owns entries [p[j], p[j+1]).
    token_row_ptr:  int64 [n_rows + 1]; row j spans p[j+1] - p[j] tokens.
    keys:           uint32 (ref22) or uint64 (wide) [n_entries]; packed (layer, unit).
    mass:           float16 [n_entries]; activation summed over the row's active tokens.
    base_ptr:       int64 [n_responses + 1]; response i owns base entries [p[i], p[i+1]).
    base_keys, base_mass: as keys/mass, one vector per response over the whole response.
    scheme:         how keys are packed (see :mod:`nex_interp.keys`).
    manifest:       the cache's manifest.json as a dict ({} for a reference cache without one).
    path:           the directory the cache was opened from (None: built in memory).
    origin, origin_responses: for a derived cache, the cache it was derived from and the origin's
                    response index of each of its responses (metadata and streams come from there).
    """

    sample_row_ptr: np.ndarray
    row_ptr: np.ndarray
    token_row_ptr: np.ndarray
    keys: np.ndarray
    mass: np.ndarray
    base_ptr: np.ndarray
    base_keys: np.ndarray
    base_mass: np.ndarray
    scheme: KeyScheme = field(default_factory=KeyScheme.ref22)
    manifest: dict = field(default_factory=dict)
    path: Path | None = None
    origin: "CacheArrays | None" = field(default=None, repr=False)
    origin_responses: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_responses(self) -> int:
        return len(self.sample_row_ptr) - 1

    @property
    def n_rows(self) -> int:
        return len(self.row_ptr) - 1

    @property
    def n_entries(self) -> int:
        return len(self.keys)

    def response_rows(self, i: int) -> tuple[int, int]:
        """[start, stop) row range of response i."""
        return int(self.sample_row_ptr[i]), int(self.sample_row_ptr[i + 1])

    def response_tokens(self) -> np.ndarray:
        """int64 [n_responses]: response tokens each response's rows span."""
        srp = np.asarray(self.sample_row_ptr, dtype=np.int64)
        trp = np.asarray(self.token_row_ptr, dtype=np.int64)
        return trp[srp[1:]] - trp[srp[:-1]]

    def pieces(self, order: np.ndarray) -> list[tuple["CacheArrays", np.ndarray]]:
        """``order`` (response indices) as runs of ``(cache, its own indices)`` to process in turn: here
        one run, this cache itself; a sharded cache (:mod:`.sharded`) gives one run per stretch inside a
        shard, so the core reads each shard's own arrays and results stay the same bits."""
        return [(self, np.asarray(order, dtype=np.int64))] if len(order) else []

    # ------------------------------------------------------------------ metadata and streams
    def _origin_index(self) -> np.ndarray:
        idx = self.origin_responses
        return np.arange(self.n_responses, dtype=np.int64) if idx is None else np.asarray(idx, dtype=np.int64)

    @cached_property
    def response_meta(self) -> list[dict]:
        """Per-response metadata (what capture recorded: ``id``, ``problem_id``, ``sample``, ...),
        one dict per response in cache order; ``[]`` for a cache that records none (a reference
        cache, or one built in memory)."""
        if self.origin is not None:
            meta = self.origin.response_meta
            return [meta[int(k)] for k in self._origin_index()] if meta else []
        if self.path is None:
            return []
        from .streams import read_response_meta

        meta = read_response_meta(self.path)
        return meta[: self.n_responses] if len(meta) > self.n_responses else meta

    @property
    def response_ids(self) -> list[str]:
        """Each response's id (as a string): the metadata's ``id``, else its position."""
        meta = self.response_meta
        if meta:
            return [str(m.get("id", k)) for k, m in enumerate(meta)]
        return [str(k) for k in range(self.n_responses)]

    @property
    def stream_names(self) -> tuple[str, ...]:
        """Names of the per-token side streams the cache holds (e.g. ``("tokens",)``)."""
        if self.origin is not None:
            return self.origin.stream_names
        if self.manifest:
            return tuple(sorted(self.manifest.get("streams") or {}))
        if self.path is None:
            return ()
        from .streams import PTR_NAME, RESERVED_STREAMS

        root = Path(self.path)
        return tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in RESERVED_STREAMS
                            and (p / f"{PTR_NAME}.int64").exists()))

    def has_stream(self, name: str) -> bool:
        return name in self.stream_names

    def stream(self, name: str) -> Stream:
        """The per-token side stream ``name`` (validated, memory-mapped; opened once per cache).

        Raises :class:`~nex_interp.errors.CacheError` when the cache has no such stream."""
        opened = self.__dict__.setdefault("_streams", {})
        if name not in opened:
            opened[name] = self._open_stream(name)
        return opened[name]

    def _open_stream(self, name: str) -> Stream:
        from ..errors import CacheError

        if self.origin is not None:
            src = self.origin.stream(name)
            idx = self._origin_index()
            ptr = np.asarray(src.ptr, dtype=np.int64)
            lengths = ptr[idx + 1] - ptr[idx]
            new_ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            if idx.size and np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):  # a contiguous range: views
                a, b = int(ptr[idx[0]]), int(ptr[idx[-1] + 1])
                return Stream(new_ptr, {k: v[a:b] for k, v in src.arrays.items()})
            take = np.concatenate([np.arange(ptr[k], ptr[k + 1]) for k in idx]) if idx.size else np.zeros(0, np.int64)
            return Stream(new_ptr, {k: np.asarray(v)[take] for k, v in src.arrays.items()})
        if self.path is None:
            raise CacheError(f"this cache was built in memory and has no stream {name!r}: open the cache from disk")
        from .streams import open_stream

        ptr, arrays = open_stream(self.path, name)
        return Stream(ptr, arrays)
