"""Sanitising a response's rows and measuring novelty (docs/algorithm.md, "Sanitising" and steps 1-2),
vectorised over the response's entries: the plain path of the core, and what diagnostics read.

A neuron is *introduced* at the first kept row of the response in which it appears; ``slope_j`` is
the number of neurons introduced at kept row ``j`` divided by the row's token count. First
appearances come from a dense int32 table indexed by neuron (:class:`FirstSeen`) in which only the
entries a response touches are written, so the cost is linear in the response's entries. Masses are
sanitised on their float16 bit patterns (sign bit or all-ones exponent = negative or non-finite).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cache.arrays import CacheArrays
from ..keys import DROPPED, OUT_OF_RANGE, REF_TABLE_SIZE, RESERVED_LAYER, KeyScheme

#: the minimum number of (kept) rows for a response to take part in learning
MIN_ROWS = 3

def dense_index(scheme: KeyScheme, keys: np.ndarray) -> np.ndarray:
    """Dense neuron index per key (int64): DROPPED for the reserved layer, OUT_OF_RANGE outside the table."""
    if scheme.name != "ref22":
        return scheme.dense_index(keys)
    k = np.asarray(keys)
    idx = k.astype(np.int64)
    idx[idx >= REF_TABLE_SIZE] = OUT_OF_RANGE
    idx[(k >> 16) == RESERVED_LAYER] = DROPPED
    return idx


_UNSEEN = np.iinfo(np.int32).max


class FirstSeen:
    """A dense int32 table, one slot per neuron, giving the first row a neuron appeared in.

    Each response writes ``base + row`` with a ``base`` below every value an earlier response wrote,
    so ``np.minimum.at`` keeps the current response's first row and stale slots need no reset (the
    table is refilled only when the bases run out of int32 range).
    """

    def __init__(self, n_neurons: int) -> None:
        self.table = np.full(n_neurons, _UNSEEN, dtype=np.int32)
        self._base = _UNSEEN

    def _stamps(self, counts: np.ndarray) -> tuple[np.ndarray, int]:
        """This response's stamps ``base + row`` (one per entry) and ``base``, a base below every earlier one."""
        n_rows = len(counts)
        base = self._base - n_rows - 1
        if base < np.iinfo(np.int32).min + 1:
            self.table.fill(_UNSEEN)
            base = _UNSEEN - n_rows - 1
        self._base = base
        return np.repeat(np.arange(base, base + n_rows, dtype=np.int32), counts), base

    def first_rows(self, index: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, first row) per entry, for entries given in row order with ``counts[j]`` entries in row j:
        the first row is the smallest row of the response holding the entry's neuron ``index[e]``."""
        stamp, base = self._stamps(counts)
        np.minimum.at(self.table, index, stamp)
        first = self.table[index]
        first -= np.int32(base)
        stamp -= np.int32(base)
        return stamp, first

    def first_and_new(self, index: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first row, introduced here) per entry: :meth:`first_rows`' first row, and whether the entry's
        own row is that first row (the entry introduces its neuron), in fewer passes."""
        stamp, base = self._stamps(counts)
        np.minimum.at(self.table, index, stamp)
        first = self.table[index]
        new = first == stamp
        first -= np.int32(base)
        return first, new


@dataclass
class ResponseRows:
    """One response after sanitising, with per-entry novelty information.

    response:     response index in the cache.
    kept_rows:    int64 cache row indices of the kept rows, in order (kept row j = kept_rows[j]).
    tokens:       int64 token count per kept row.
    entry_ptr:    int64 [n_kept + 1]; kept row j owns entries [entry_ptr[j], entry_ptr[j+1]) of the arrays below
                  (the entries of the kept rows, reserved-layer entries dropped).
    entry_first:  int32 kept-row position where the entry's neuron was introduced.
    entry_mass:   float16 sanitised mass of each entry (non-finite and negative values set to 0).
    n_new:        int64 number of neurons introduced per kept row.
    new_ptr:      int64 [n_kept + 1]; the entries introducing neurons at kept row j are
                  new_index[new_ptr[j]:new_ptr[j+1]] (one per neuron, unless a key repeats within the row).
    new_index, new_mass: dense index and sanitised float16 mass of the introducing entries, in row order.
    slopes:       float64 n_new / tokens per kept row.
    skipped_reason: why the response takes no part in learning (None if it does).
    """

    response: int
    kept_rows: np.ndarray
    tokens: np.ndarray
    entry_ptr: np.ndarray
    entry_first: np.ndarray
    entry_mass: np.ndarray
    n_new: np.ndarray
    slopes: np.ndarray
    new_ptr: np.ndarray
    new_index: np.ndarray
    new_mass: np.ndarray
    skipped_reason: str | None = None

    @property
    def n_rows(self) -> int:
        return len(self.kept_rows)


def _empty(response: int, reason: str, kept_rows: np.ndarray | None = None, tokens: np.ndarray | None = None) -> ResponseRows:
    z64 = np.zeros(0, dtype=np.int64)
    z32 = np.zeros(0, dtype=np.int32)
    kept = z64 if kept_rows is None else kept_rows
    tok = z64 if tokens is None else tokens
    ptr0 = np.zeros(len(kept) + 1, np.int64)
    f16 = np.zeros(0, np.float16)
    return ResponseRows(response, kept, tok, ptr0, z32, f16, np.zeros(len(kept), np.int64),
                        np.zeros(len(kept), np.float64), ptr0.copy(), z64, f16, reason)


#: float16 bit patterns at or above this are negative (sign bit) or non-finite (exponent all ones)
_F16_BAD = 0x7C00


def _row_max(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Max of ``values`` within each row (rows given by entry counts); 0 for empty rows."""
    out = np.zeros(len(counts), dtype=values.dtype)
    nonempty = counts > 0
    if nonempty.any():
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        out[nonempty] = np.maximum.reduceat(values, starts[nonempty])
    return out


def response_rows(cache: CacheArrays, i: int, seen: FirstSeen) -> ResponseRows:
    """Sanitise response ``i``'s rows and compute novelty (a skipped response has ``skipped_reason``).

    Clean responses (no reserved or out-of-table keys, no negative or non-finite mass) take a fast
    path without per-entry masks; others are masked as the spec's sanitising rules say.
    """
    r0, r1 = cache.response_rows(i)
    n_rows = r1 - r0
    if n_rows < MIN_ROWS:
        return _empty(i, f"fewer than {MIN_ROWS} rows ({n_rows})")
    ptr = np.asarray(cache.row_ptr[r0:r1 + 1], dtype=np.int64)
    tokens = np.diff(np.asarray(cache.token_row_ptr[r0:r1 + 1], dtype=np.int64))
    e0, e1 = int(ptr[0]), int(ptr[-1])
    counts = np.diff(ptr)
    keys = np.asarray(cache.keys[e0:e1])
    mass = np.asarray(cache.mass[e0:e1])
    bits = mass.view(np.uint16)
    clean = e1 == e0 or (cache.scheme.name == "ref22" and int(keys.max()) < REF_TABLE_SIZE
                         and int(bits.max()) < _F16_BAD)
    if clean:
        idx = keys
        positive = (counts > 0) if e1 == e0 or int(bits.min()) > 0 else (_row_max(bits, counts) > 0)
        row_ok = (counts > 0) & (tokens > 0) & positive
        keep = None
    else:
        idx = dense_index(cache.scheme, keys)
        keep = idx >= 0
        bits = np.where(keep & (bits < _F16_BAD), bits, 0).astype(np.uint16)
        mass = bits.view(np.float16)
        row_of = np.repeat(np.arange(n_rows), counts)
        n_keep = np.bincount(row_of[keep], minlength=n_rows)
        n_oob = np.bincount(row_of[idx == OUT_OF_RANGE], minlength=n_rows)
        row_ok = (n_keep > 0) & (n_oob == 0) & (tokens > 0) & (_row_max(bits, counts) > 0)
    kept_local = np.flatnonzero(row_ok)
    kept_rows = kept_local.astype(np.int64) + r0
    n_kept = len(kept_local)
    if n_kept < MIN_ROWS:
        return _empty(i, f"fewer than {MIN_ROWS} non-empty rows ({n_kept})", kept_rows, tokens[kept_local])
    if keep is None and n_kept == n_rows:
        kept_counts = counts
    else:
        sel = np.repeat(row_ok, counts)
        if keep is not None:
            sel &= keep
            kept_counts = np.bincount(np.repeat(np.arange(n_rows), counts)[sel], minlength=n_rows)[kept_local]
        else:
            kept_counts = counts[kept_local]
        idx = idx[sel]
        mass = mass[sel]
    idx = idx.astype(np.intp, copy=False)
    e_first, is_new = seen.first_and_new(idx, kept_counts)
    entry_ptr = np.zeros(n_kept + 1, dtype=np.int64)
    np.cumsum(kept_counts, out=entry_ptr[1:])
    new_pos = np.flatnonzero(is_new)
    new_ptr = np.searchsorted(new_pos, entry_ptr).astype(np.int64)
    n_new = np.diff(new_ptr)
    new_index = idx[new_pos]
    if len(np.unique(new_index)) != len(new_index):
        # a key repeated within its row (outside the format): the row introduces the neuron once, and
        # credit still goes to every entry's mass (docs/algorithm.md, "Sanitising")
        _, once = np.unique(new_index, return_index=True)
        n_new = np.bincount(np.repeat(np.arange(n_kept), n_new)[once], minlength=n_kept)
    tok = tokens[kept_local]
    return ResponseRows(i, kept_rows, tok, entry_ptr, e_first, mass, n_new, n_new / tok, new_ptr,
                        new_index, mass[new_pos])
