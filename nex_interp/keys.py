"""Neuron key schemes: how a (layer, unit) pair is packed into one integer key on disk.

``ref22`` is the NEX reference packing, ``key = (layer << 16) | unit`` stored as uint32, indexing a
dense table of ``2**22`` entries (layers 0..63, units 0..65535). Caches written in it are readable
by the reference implementation. ``wide`` packs ``key = (layer << 32) | unit`` as uint64 for models
with 64+ layers or MLPs wider than 65,536 units; its dense table has ``n_layers * d_mlp`` entries
(index ``layer * d_mlp + unit``). In both schemes layer 255 is reserved: such entries are dropped.

The NEX core works on *dense indices* (``0 <= index < n_neurons``); this module converts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

RESERVED_LAYER = 255
REF_TABLE_SIZE = 1 << 22

#: returned by :meth:`KeyScheme.dense_index` for entries of the reserved layer (dropped)
DROPPED = -1
#: returned for keys outside the scheme's table (the whole row then counts as empty)
OUT_OF_RANGE = -2


@dataclass(frozen=True)
class KeyScheme:
    """A key packing. ``name`` is ``"ref22"`` or ``"wide"``; ``n_layers``/``d_mlp`` size ``wide``."""

    name: str
    n_layers: int = 64
    d_mlp: int = 65536

    def __post_init__(self) -> None:
        if self.name not in ("ref22", "wide"):
            raise ConfigError(f"unknown key scheme {self.name!r}: use 'ref22' or 'wide'")
        if self.name == "wide" and (self.n_layers <= 0 or self.d_mlp <= 0):
            raise ConfigError(f"wide key scheme needs positive n_layers and d_mlp, got {self.n_layers} x {self.d_mlp}")

    @staticmethod
    def ref22() -> "KeyScheme":
        return KeyScheme("ref22", 64, 65536)

    @staticmethod
    def for_model(n_layers: int, d_mlp: int) -> "KeyScheme":
        """The reference packing when the model fits it (so the reference can read our caches), else wide."""
        if n_layers <= 64 and d_mlp <= 65536:
            return KeyScheme.ref22()
        return KeyScheme("wide", n_layers, d_mlp)

    @property
    def key_dtype(self) -> np.dtype:
        return np.dtype(np.uint32) if self.name == "ref22" else np.dtype(np.uint64)

    @property
    def key_suffix(self) -> str:
        """File suffix of the keys array: ``keys.uint32`` or ``keys.uint64``."""
        return self.key_dtype.name

    @property
    def n_neurons(self) -> int:
        """Size of the dense neuron table."""
        return REF_TABLE_SIZE if self.name == "ref22" else self.n_layers * self.d_mlp

    def pack(self, layer: np.ndarray, unit: np.ndarray) -> np.ndarray:
        layer = np.asarray(layer, dtype=np.uint64)
        unit = np.asarray(unit, dtype=np.uint64)
        shift = np.uint64(16 if self.name == "ref22" else 32)
        return ((layer << shift) | unit).astype(self.key_dtype)

    def unpack(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = np.asarray(keys, dtype=np.uint64)
        shift = np.uint64(16 if self.name == "ref22" else 32)
        mask = np.uint64((1 << int(shift)) - 1)
        return (k >> shift).astype(np.int64), (k & mask).astype(np.int64)

    def dense_index(self, keys: np.ndarray) -> np.ndarray:
        """int64 dense index per key; DROPPED for the reserved layer, OUT_OF_RANGE outside the table."""
        layer, unit = self.unpack(keys)
        if self.name == "ref22":
            idx = np.asarray(keys, dtype=np.int64).copy()
            idx[idx >= REF_TABLE_SIZE] = OUT_OF_RANGE
        else:
            idx = layer * self.d_mlp + unit
            idx[(layer >= self.n_layers) | (unit >= self.d_mlp)] = OUT_OF_RANGE
        idx[layer == RESERVED_LAYER] = DROPPED
        return idx

    def layer_unit(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(layer, unit) of dense indices."""
        index = np.asarray(index, dtype=np.int64)
        if self.name == "ref22":
            return index >> 16, index & 0xFFFF
        return index // self.d_mlp, index % self.d_mlp

    def to_dict(self) -> dict:
        return {"name": self.name, "n_layers": self.n_layers, "d_mlp": self.d_mlp}

    @staticmethod
    def from_dict(d: dict) -> "KeyScheme":
        try:
            return KeyScheme(str(d["name"]), int(d.get("n_layers", 64)), int(d.get("d_mlp", 65536)))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"malformed key scheme {d!r}: {e}") from None
