"""Neuron sets chosen from NEX weights: top-k effective, top-k redundant, matched random, thresholds.

A neuron is an MLP hidden unit ``(layer, unit)`` (the activation hooked at
``blocks.{layer}.mlp.out.hook_in``). NEX weights (:class:`nex_interp.neuron_weights.NeuronWeights`)
are signed: positive for neurons introduced in *effective* explore->exploit cycles, negative for
*redundant* ones. Sets are saved and loaded as CSV tables with columns ``layer, unit, weight``
(a provenance sidecar beside each).

Selection is deterministic: ties in weight are broken by the lower (layer, unit).

>>> import numpy as np
>>> s = NeuronSet.from_pairs("demo", [(1, 5), (0, 2), (1, 3)])
>>> s.layer_counts()
{0: 1, 1: 2}
>>> [int(u) for u in s.by_layer()[1]]
[3, 5]
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

import numpy as np

from nex_interp.atomic import atomic_path
from nex_interp.errors import ConfigError
from nex_interp.neuron_weights import NeuronWeights
from nex_interp.provenance import record, write_sidecar

#: ``model``: the k best neurons over all layers together; ``layer``: the k best in each layer
Scope = Literal["model", "layer"]
SCOPES = ("model", "layer")
CSV_COLUMNS = ("layer", "unit", "weight")


@dataclass(frozen=True)
class NeuronSet:
    """A set of MLP neurons, sorted by (layer, unit), without duplicates.

    name:   what the set is (``effective``, ``redundant``, ``random``, ...).
    layer:  int64 [n] layer of each neuron.
    unit:   int64 [n] unit (index in the MLP hidden layer) of each neuron.
    weight: float32 [n] the NEX weight that selected it (NaN when not chosen by weight).
    meta:   how the set was chosen (k, scope, seed, reference), kept in the sidecar.
    """

    name: str
    layer: np.ndarray
    unit: np.ndarray
    weight: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        layer = np.asarray(self.layer, dtype=np.int64).reshape(-1)
        unit = np.asarray(self.unit, dtype=np.int64).reshape(-1)
        weight = np.asarray(self.weight, dtype=np.float32).reshape(-1)
        if not (len(layer) == len(unit) == len(weight)):
            raise ConfigError(f"neuron set {self.name!r}: layer, unit and weight differ in length ({len(layer)}, {len(unit)}, {len(weight)})")
        if len(layer) and (layer.min() < 0 or unit.min() < 0):
            raise ConfigError(f"neuron set {self.name!r}: negative layer or unit index")
        order = np.lexsort((unit, layer))
        layer, unit, weight = layer[order], unit[order], weight[order]
        if len(layer) > 1:
            dup = (np.diff(layer) == 0) & (np.diff(unit) == 0)
            if dup.any():
                i = int(np.flatnonzero(dup)[0])
                raise ConfigError(f"neuron set {self.name!r} lists neuron (layer {layer[i]}, unit {unit[i]}) twice")
        object.__setattr__(self, "layer", layer)
        object.__setattr__(self, "unit", unit)
        object.__setattr__(self, "weight", weight)

    def __len__(self) -> int:
        return len(self.layer)

    @staticmethod
    def from_pairs(name: str, pairs: Iterable[tuple[int, int]], weight: Iterable[float] | None = None, meta: dict | None = None) -> "NeuronSet":
        """A set from ``(layer, unit)`` pairs (weights NaN unless given)."""
        arr = np.asarray(list(pairs), dtype=np.int64).reshape(-1, 2)
        w = np.full(len(arr), np.nan, dtype=np.float32) if weight is None else np.asarray(list(weight), dtype=np.float32)
        return NeuronSet(name, arr[:, 0], arr[:, 1], w, dict(meta or {}))

    @staticmethod
    def empty(name: str = "empty") -> "NeuronSet":
        """The empty set (an intervention with it changes nothing)."""
        z = np.zeros(0, dtype=np.int64)
        return NeuronSet(name, z, z.copy(), np.zeros(0, dtype=np.float32))

    @staticmethod
    def every_neuron(n_layers: int, d_mlp: int, name: str = "all") -> "NeuronSet":
        """Every neuron of every MLP layer."""
        layer = np.repeat(np.arange(n_layers, dtype=np.int64), d_mlp)
        unit = np.tile(np.arange(d_mlp, dtype=np.int64), n_layers)
        return NeuronSet(name, layer, unit, np.full(len(layer), np.nan, dtype=np.float32))

    def by_layer(self) -> dict[int, np.ndarray]:
        """``{layer: sorted int64 units}`` for the layers the set touches."""
        out: dict[int, np.ndarray] = {}
        for L in np.unique(self.layer):
            out[int(L)] = self.unit[self.layer == L]
        return out

    def layer_counts(self) -> dict[int, int]:
        """``{layer: number of neurons}`` for the layers the set touches."""
        layers, counts = np.unique(self.layer, return_counts=True)
        return {int(L): int(c) for L, c in zip(layers, counts)}

    def check_fits(self, n_layers: int, d_mlp: int, what: str = "model") -> None:
        """Raise ConfigError if a neuron lies outside a model of ``n_layers`` x ``d_mlp``."""
        bad = (self.layer >= n_layers) | (self.unit >= d_mlp)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ConfigError(
                f"neuron set {self.name!r} names neuron (layer {self.layer[i]}, unit {self.unit[i]}) but the {what} "
                f"has {n_layers} layers of {d_mlp} units: the weights or set come from a different model"
            )

    def with_name(self, name: str, **meta) -> "NeuronSet":
        return NeuronSet(name, self.layer, self.unit, self.weight, {**self.meta, **meta})

    def overlap(self, other: "NeuronSet") -> int:
        """Number of neurons in both sets."""
        a = set(zip(self.layer.tolist(), self.unit.tolist()))
        return sum((L, u) in a for L, u in zip(other.layer.tolist(), other.unit.tolist()))


def _check_k(k: int, scope: str) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0:
        raise ConfigError(f"set size k must be a non-negative integer, got {k!r}")
    if scope not in SCOPES:
        raise ConfigError(f"set scope {scope!r} is unknown: use 'model' or 'layer'")


def _ranked(weights: NeuronWeights, sign: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(layer, unit, weight) of the neurons with weight of ``sign``, best (largest |w|) first."""
    w = np.asarray(weights.weight, dtype=np.float32)
    keep = (w > 0) if sign > 0 else (w < 0)
    idx = np.asarray(weights.index, dtype=np.int64)[keep]
    w = w[keep]
    layer, unit = weights.scheme.layer_unit(idx)
    order = np.lexsort((unit, layer, -sign * w.astype(np.float64)))
    return layer[order], unit[order], w[order]


def _top(weights: NeuronWeights, k: int, sign: int, scope: Scope, name: str) -> NeuronSet:
    layer, unit, w = _ranked(weights, sign)
    _check_k(k, scope)
    if scope == "model":
        sel = np.arange(min(k, len(layer)))
    else:
        sel_list = []
        for L in np.unique(layer):
            sel_list.append(np.flatnonzero(layer == L)[:k])  # ranked order is kept within a layer
        sel = np.concatenate(sel_list) if sel_list else np.zeros(0, dtype=np.int64)
    return NeuronSet(name, layer[sel], unit[sel], w[sel], {"k": int(k), "scope": scope, "available": int(len(layer))})


def top_effective(weights: NeuronWeights, k: int, scope: Scope = "model") -> NeuronSet:
    """The ``k`` neurons with the largest positive NEX weight (over all layers, or in each layer).

    Only neurons with weight > 0 qualify, so the set is smaller than ``k`` when fewer exist;
    ``meta["available"]`` says how many there were.
    """
    return _top(weights, k, +1, scope, "effective")


def top_redundant(weights: NeuronWeights, k: int, scope: Scope = "model") -> NeuronSet:
    """The ``k`` neurons with the most negative NEX weight (only weight < 0 qualifies)."""
    return _top(weights, k, -1, scope, "redundant")


def by_threshold(weights: NeuronWeights, min_weight: float | None = None, max_weight: float | None = None, name: str = "threshold") -> NeuronSet:
    """Every credited neuron with ``min_weight <= weight <= max_weight`` (a bound of None is open).

    ``by_threshold(w, min_weight=0.5)`` are the clearly effective neurons,
    ``by_threshold(w, max_weight=-0.5)`` the clearly redundant ones.
    """
    if min_weight is None and max_weight is None:
        raise ConfigError("a threshold set needs min_weight or max_weight")
    w = np.asarray(weights.weight, dtype=np.float32)
    keep = np.ones(len(w), dtype=bool)
    if min_weight is not None:
        keep &= w >= min_weight
    if max_weight is not None:
        keep &= w <= max_weight
    layer, unit = weights.scheme.layer_unit(np.asarray(weights.index, dtype=np.int64)[keep])
    return NeuronSet(name, layer, unit, w[keep], {"min_weight": min_weight, "max_weight": max_weight})


def random_matched(reference: NeuronSet, d_mlp: int, seed: int, exclude: NeuronSet | None = None, name: str = "random") -> NeuronSet:
    """Random neurons with the same count per layer as ``reference`` (seeded, uniform in each layer).

    Units are drawn without replacement from ``0..d_mlp-1`` of each layer, skipping the neurons of
    ``exclude`` if given. The same ``(reference counts, d_mlp, seed)`` always gives the same set.
    """
    rng = np.random.default_rng(seed)
    excluded = exclude.by_layer() if exclude is not None else {}
    layers, units = [], []
    for L, count in sorted(reference.layer_counts().items()):
        pool = np.setdiff1d(np.arange(d_mlp, dtype=np.int64), excluded.get(L, np.zeros(0, dtype=np.int64)))
        if count > len(pool):
            raise ConfigError(f"cannot draw {count} random neurons in layer {L}: only {len(pool)} of {d_mlp} are eligible")
        units.append(rng.choice(pool, size=count, replace=False))
        layers.append(np.full(count, L, dtype=np.int64))
    layer = np.concatenate(layers) if layers else np.zeros(0, dtype=np.int64)
    unit = np.concatenate(units) if units else np.zeros(0, dtype=np.int64)
    return NeuronSet(name, layer, unit, np.full(len(layer), np.nan, dtype=np.float32),
                     {"seed": int(seed), "matched_to": reference.name, "d_mlp": int(d_mlp)})


def to_csv_text(s: NeuronSet) -> str:
    """The set as CSV text: header ``layer,unit,weight``, one neuron a line."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for L, u, x in zip(s.layer.tolist(), s.unit.tolist(), s.weight.tolist()):
        w.writerow((L, u, "" if np.isnan(x) else repr(float(x))))
    return buf.getvalue()


def save_set(s: NeuronSet, path: str | Path, command: str = "nex_interp.interventions.save_set") -> Path:
    """Write the set as a CSV table (atomically) with a provenance sidecar; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(to_csv_text(s))
    write_sidecar(path, record(command, config={"name": s.name, **s.meta}, n_neurons=len(s)))
    return path


def load_set(path: str | Path, name: str | None = None) -> NeuronSet:
    """Read a set saved by :func:`save_set` (or any CSV with ``layer, unit`` and optional ``weight``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"neuron set file {path} does not exist: give a CSV with columns layer, unit, weight")
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    if rows and not {"layer", "unit"} <= set(rows[0]):
        raise ConfigError(f"neuron set file {path} lacks the columns layer and unit (has {', '.join(rows[0])})")
    try:
        layer = [int(r["layer"]) for r in rows]
        unit = [int(r["unit"]) for r in rows]
        weight = [float(r["weight"]) if r.get("weight") not in (None, "") else float("nan") for r in rows]
    except ValueError as e:
        raise ConfigError(f"neuron set file {path} has a malformed row: {e}") from None
    return NeuronSet(name or path.stem, np.array(layer, dtype=np.int64), np.array(unit, dtype=np.int64),
                     np.array(weight, dtype=np.float32), {"source": str(path)})
