"""Signed per-neuron NEX weights, stored sparsely (only credited neurons)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .keys import KeyScheme


@dataclass(frozen=True)
class NeuronWeights:
    """NEX weights over a key scheme's dense neuron table.

    index:          int64 [n], sorted dense neuron indices that carry a weight entry.
    weight:         float32 [n], tanh(log((effective + eps) / (redundant + eps))) in [-1, 1].
    effective_mass: float32 [n], credit accumulated by effective cycles (0 for archived weights).
    redundant_mass: float32 [n], credit accumulated by redundant cycles (0 for archived weights).
    scheme:         the key scheme of the cache the weights were learned on.
    meta:           provenance of the weights (config, cache, package version).
    Neurons absent from ``index`` have weight exactly 0.
    """

    index: np.ndarray
    weight: np.ndarray
    effective_mass: np.ndarray
    redundant_mass: np.ndarray
    scheme: KeyScheme = field(default_factory=KeyScheme.ref22)
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.index)

    def dense(self) -> np.ndarray:
        """float32 [scheme.n_neurons] weight table (zeros where uncredited)."""
        out = np.zeros(self.scheme.n_neurons, dtype=np.float32)
        out[self.index] = self.weight
        return out

    @staticmethod
    def from_dense(table: np.ndarray, scheme: KeyScheme | None = None, meta: dict | None = None) -> "NeuronWeights":
        """Sparse weights from a dense table (e.g. the reference's ``weights`` array of 2**22)."""
        table = np.asarray(table, dtype=np.float32)
        idx = np.flatnonzero(table).astype(np.int64)
        zeros = np.zeros(len(idx), dtype=np.float32)
        return NeuronWeights(idx, table[idx], zeros, zeros.copy(), scheme or KeyScheme.ref22(), dict(meta or {}))

    def layer_unit(self) -> tuple[np.ndarray, np.ndarray]:
        return self.scheme.layer_unit(self.index)
