"""Save and load NEX neuron weights.

Our format is an ``.npz`` with the sparse arrays of :class:`~nex_interp.neuron_weights.NeuronWeights`
(``index`` int64, ``weight``/``effective_mass``/``redundant_mass`` float32), the key scheme and the
metadata as JSON strings (``scheme``, ``meta``) and a ``format`` marker, plus a provenance sidecar
``<file>.provenance.json``. :func:`load_weights` also reads the NEX reference's archived weights:
a dense ``.npz`` whose array ``weights`` has ``2**22`` entries indexed by the ref22 packed key.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import ConfigError, WeightsError
from .keys import REF_TABLE_SIZE, KeyScheme
from .neuron_weights import NeuronWeights
from .provenance import record, write_sidecar

FORMAT = "nex-neuron-weights"
FORMAT_VERSION = 1
_OURS = ("format", "index", "weight", "effective_mass", "redundant_mass", "scheme", "meta")


def save_weights(weights: NeuronWeights, path: str | os.PathLike, provenance: dict | None = None) -> Path:
    """Atomically write ``weights`` to ``path`` (exactly that name) and its provenance sidecar.

    ``provenance`` is a :func:`nex_interp.provenance.record`; by default one is made from
    ``weights.meta``. Returns the path written.
    """
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"weights output {path} is a directory: give a file name such as weights.npz")
    n = len(weights.index)
    for name in ("weight", "effective_mass", "redundant_mass"):
        if len(getattr(weights, name)) != n:
            raise WeightsError(f"weights to save have {len(getattr(weights, name))} {name} values for {n} neurons")
    try:
        meta_json = json.dumps(weights.meta, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise WeightsError(f"weights metadata is not JSON-serialisable ({e})") from None
    arrays = {
        "format": np.array(f"{FORMAT}/{FORMAT_VERSION}"),
        "index": np.asarray(weights.index, dtype=np.int64),
        "weight": np.asarray(weights.weight, dtype=np.float32),
        "effective_mass": np.asarray(weights.effective_mass, dtype=np.float32),
        "redundant_mass": np.asarray(weights.redundant_mass, dtype=np.float32),
        "scheme": np.array(json.dumps(weights.scheme.to_dict(), sort_keys=True)),
        "meta": np.array(meta_json),
    }
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # uncompressed: zlib cost ~1 s on a large table for little gain
    write_sidecar(path, provenance if provenance is not None else record("save_weights", config=weights.meta))
    return path


def _bad(path: Path, problem: str) -> WeightsError:
    return WeightsError(
        f"weights file {path} {problem}: give a file written by nex train/run or the reference's dense weights .npz"
    )


def load_weights(path: str | os.PathLike) -> NeuronWeights:
    """Read our weights ``.npz`` or the reference's dense one; anything else is a one-line WeightsError."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file {path} does not exist: check the path, or make one with nex train")
    if not path.is_file():
        raise WeightsError(f"weights file {path} is not a file: give the .npz written by nex train")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise _bad(path, f"is not a readable .npz ({type(e).__name__})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise _bad(path, "is a single .npy array, not an .npz archive")
    try:
        with npz:
            names = set(npz.files)
            if "weights" in names and "index" not in names:
                return _dense_reference(path, npz["weights"])
            missing = [n for n in _OURS if n not in names]
            if missing:
                raise _bad(path, f"lacks the arrays {missing} (it has {sorted(names) or 'none'})")
            return _ours(path, {n: npz[n] for n in _OURS})
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise _bad(path, f"is corrupt ({type(e).__name__}: {e})") from None


def _dense_reference(path: Path, table: np.ndarray) -> NeuronWeights:
    if table.ndim != 1 or len(table) != REF_TABLE_SIZE or not np.issubdtype(table.dtype, np.floating):
        raise _bad(path, f"has a 'weights' array of shape {table.shape} and dtype {table.dtype}, not float[{REF_TABLE_SIZE}]")
    if not np.all(np.isfinite(table)):
        raise _bad(path, "has non-finite weights")
    return NeuronWeights.from_dense(table, KeyScheme.ref22(), {"source": "reference dense weights", "file": str(path)})


def _ours(path: Path, a: dict[str, np.ndarray]) -> NeuronWeights:
    fmt = str(a["format"])
    name, _, version = fmt.partition("/")
    if name != FORMAT or not version.isdigit():
        raise _bad(path, f"has format marker {fmt!r}")
    if int(version) > FORMAT_VERSION:
        raise WeightsError(f"weights file {path} has format version {version}, newer than this nex-interp reads: upgrade nex-interp")
    try:
        scheme = KeyScheme.from_dict(json.loads(str(a["scheme"])))
        meta = json.loads(str(a["meta"]))
    except (json.JSONDecodeError, ConfigError) as e:
        raise _bad(path, f"has an unreadable scheme or meta ({e})") from None
    index = a["index"]
    n = len(index)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise _bad(path, "has a malformed index array")
    for name in ("weight", "effective_mass", "redundant_mass"):
        if a[name].shape != (n,):
            raise _bad(path, f"has {a[name].shape} {name} values for {n} neurons")
    if n and (int(index.min()) < 0 or int(index.max()) >= scheme.n_neurons):
        raise _bad(path, f"has neuron indices outside the {scheme.name} table of {scheme.n_neurons}")
    if n > 1 and np.any(np.diff(index) <= 0):
        raise _bad(path, "has an index that is not strictly increasing")
    weight = a["weight"].astype(np.float32)
    if not np.all(np.isfinite(weight)) or np.any(np.abs(weight) > 1.0):
        raise _bad(path, "has weights outside [-1, 1]")
    return NeuronWeights(
        index.astype(np.int64),
        weight,
        a["effective_mass"].astype(np.float32),
        a["redundant_mass"].astype(np.float32),
        scheme,
        meta if isinstance(meta, dict) else {"meta": meta},
    )
