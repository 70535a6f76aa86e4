"""The in-memory view of a sparse activation cache: CSR arrays, usually memory-mapped.

This is the typed object that flows from the cache reader to the NEX core. Layout and meaning:
docs/cache-format.md and docs/algorithm.md ("Cache layout"). Arrays are read-only views; nothing here
reads a whole array into RAM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..keys import KeyScheme


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
