"""Merge two Hugging Face checkpoints of one architecture, tensor by tensor (SLERP or linear).

``merge_models(a, b, method, t, out)`` writes a loadable HF directory: A's config, tokenizer and
other files, merged ``*.safetensors`` weights in A's sharding, the recipe ``merge.json`` and
``provenance.json``. ``t = 0`` gives A, ``t = 1`` gives B.

Methods (a registry, as mergekit keeps one):

* ``linear``: ``(1 - t) * a + t * b``.
* ``slerp``: spherical interpolation per tensor, as mergekit defines it (Shoemake 1985; mergekit,
  Goddard et al. 2024): the angle ``theta = arccos(dot)`` is measured between unit-normalised
  copies of the flattened tensors, and the *unnormalised* tensors are combined as
  ``sin((1 - t) theta) / sin(theta) * a + sin(t theta) / sin(theta) * b``; when the normalised
  tensors are nearly parallel (``|dot| > 0.9995``) it falls back to linear interpolation.

Streaming: each output tensor is computed from the two inputs' current tensors (opened with
safetensors ``safe_open``) and written straight to the output file, whose header is known in
advance from A's shapes and dtypes; so peak memory is two input tensors plus one output tensor,
whatever the model size. Arithmetic is in float32, stored in A's dtype.
"""

from __future__ import annotations

import math
import json
import shutil
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .atomic import atomic_path, write_text
from .errors import ConfigError, ModelError
from .hashing import sha256_file
from .provenance import record, write_sidecar

#: mergekit's threshold on |cos(angle)| above which SLERP falls back to linear interpolation
DOT_THRESHOLD = 0.9995
_EPS = 1e-8
_INDEX = "model.safetensors.index.json"
_SINGLE = "model.safetensors"
_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


@dataclass(frozen=True)
class MergeMethod:
    """A registered merge method: a per-tensor function ``(a, b, t) -> (merged, fell_back)``."""

    name: str
    fn: Callable
    citation: str


def _lerp(a, b, t: float):
    return (1.0 - t) * a + t * b


def linear(a, b, t: float):
    """Linear interpolation ``(1 - t) a + t b`` (float tensors of one shape)."""
    return _lerp(a, b, t), False


def slerp(a, b, t: float, dot_threshold: float = DOT_THRESHOLD):
    """Spherical interpolation of two tensors as mergekit defines it; returns (tensor, fell_back).

    The angle comes from unit-normalised flattened copies; the unnormalised inputs are combined.
    Nearly parallel inputs (``|dot| > dot_threshold``) use linear interpolation instead.
    """
    import torch

    a32, b32 = a.to(torch.float32), b.to(torch.float32)
    # the cosine of the normalised copies, computed without materialising them
    norms = float(a32.norm()) * float(b32.norm())
    dot = float(torch.dot(a32.flatten(), b32.flatten())) / (norms + _EPS) if norms > 0 else 1.0
    dot = max(-1.0, min(1.0, dot))
    if abs(dot) > dot_threshold:
        return _lerp(a32, b32, t), True
    theta = math.acos(dot)
    sin_theta = math.sin(theta)
    out = a32.mul(math.sin((1.0 - t) * theta) / sin_theta)
    out.add_(b32, alpha=math.sin(t * theta) / sin_theta)
    return out, False


MERGE_METHODS: dict[str, MergeMethod] = {
    "linear": MergeMethod("linear", linear, "weight averaging; Wortsman et al. 2022, 'Model soups'"),
    "slerp": MergeMethod("slerp", slerp, "Shoemake 1985; per-tensor as in mergekit (Goddard et al. 2024, arXiv 2403.13257)"),
}


@dataclass
class MergeRecipe:
    """What ``merge.json`` records: inputs, method, t and what happened per tensor."""

    a: str
    b: str
    method: str
    t: float
    dot_threshold: float = DOT_THRESHOLD
    a_sha256: dict = field(default_factory=dict)
    b_sha256: dict = field(default_factory=dict)
    n_tensors: int = 0
    n_linear_fallback: int = 0
    n_copied: int = 0


def _weight_map(directory: Path) -> dict[str, str]:
    """tensor name -> shard file name, for a single-file or sharded safetensors checkpoint."""
    if (directory / _INDEX).exists():
        try:
            return dict(json.loads((directory / _INDEX).read_text())["weight_map"])
        except (json.JSONDecodeError, KeyError) as e:
            raise ModelError(f"{directory / _INDEX} is not a valid safetensors index ({e}); re-save the checkpoint") from None
    if (directory / _SINGLE).exists():
        from safetensors import safe_open

        with safe_open(str(directory / _SINGLE), framework="pt") as f:
            return {k: _SINGLE for k in f.keys()}
    raise ModelError(f"{directory} holds no {_SINGLE} or {_INDEX}: give a Hugging Face directory saved with safetensors")


def _read_header(path: Path) -> tuple[dict, dict]:
    """(tensor entries, metadata) of a safetensors file, read from its header only."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ModelError(f"{path} is truncated: not a safetensors file; re-save the checkpoint")
        (n,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelError(f"{path} has a corrupt safetensors header; re-save the checkpoint") from None
    meta = header.pop("__metadata__", None) or {}
    return header, meta


def _check_pair(a: Path, b: Path) -> None:
    for d in (a, b):
        if not d.is_dir():
            raise ModelError(f"model directory {d} does not exist; give a local Hugging Face checkpoint directory")
        if not (d / "config.json").exists():
            raise ModelError(f"{d} has no config.json: not a Hugging Face checkpoint directory")
    ca, cb = (json.loads((d / "config.json").read_text()) for d in (a, b))
    keys = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size", "n_embd", "n_layer")
    for k in keys:
        if ca.get(k) != cb.get(k):
            raise ConfigError(f"cannot merge {a} and {b}: config field {k!r} differs ({ca.get(k)!r} vs {cb.get(k)!r}); merge two checkpoints of one architecture")


def _file_hashes(directory: Path, files) -> dict[str, str]:
    return {name: sha256_file(directory / name) for name in sorted(set(files))}


def merge_models(a: str | Path, b: str | Path, method: str, t: float, out: str | Path, progress: bool = False) -> MergeRecipe:
    """Merge checkpoint directories ``a`` and ``b`` into ``out`` (``t = 0``: A, ``t = 1``: B)."""
    import torch
    from safetensors import safe_open
    from tqdm import tqdm

    a, b, out = Path(a), Path(b), Path(out)
    if method not in MERGE_METHODS:
        raise ConfigError(f"merge method {method!r} is unknown; valid methods: {', '.join(sorted(MERGE_METHODS))}")
    if not 0.0 <= float(t) <= 1.0:
        raise ConfigError(f"merge factor t={t} must lie in [0, 1] (0 gives A, 1 gives B)")
    t = float(t)
    _check_pair(a, b)
    map_a, map_b = _weight_map(a), _weight_map(b)
    if set(map_a) != set(map_b):
        only = sorted(set(map_a) ^ set(map_b))[:3]
        raise ConfigError(f"cannot merge {a} and {b}: their tensor names differ (e.g. {only}); merge two checkpoints of one architecture")
    fn = MERGE_METHODS[method].fn
    recipe = MergeRecipe(str(a), str(b), method, t, a_sha256=_file_hashes(a, map_a.values()), b_sha256=_file_hashes(b, map_b.values()))
    shards: dict[str, list[str]] = {}
    for name, shard in map_a.items():
        shards.setdefault(shard, []).append(name)

    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        for item in sorted(a.iterdir()):
            if item.suffix == ".safetensors" or item.name in (_INDEX, "merge.json", "provenance.json") or item.name.startswith("."):
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        if (a / _INDEX).exists():
            shutil.copy2(a / _INDEX, tmp / _INDEX)
        bar = tqdm(total=len(map_a), desc=f"merge {method} t={t:g}", disable=not progress, unit="tensor")
        handles_b: dict[str, object] = {}
        try:
            for shard, names in sorted(shards.items()):
                header_a, meta = _read_header(a / shard)
                names = sorted(names)
                entries, offset = {}, 0
                for name in names:
                    info = header_a[name]
                    size = info["data_offsets"][1] - info["data_offsets"][0]
                    entries[name] = {"dtype": info["dtype"], "shape": info["shape"], "data_offsets": [offset, offset + size]}
                    offset += size
                if meta:
                    entries["__metadata__"] = meta
                head = json.dumps(entries, separators=(",", ":")).encode()
                head += b" " * (-len(head) % 8)
                with safe_open(str(a / shard), framework="pt") as fa, open(tmp / shard, "wb") as fo:
                    fo.write(struct.pack("<Q", len(head)))
                    fo.write(head)
                    for name in names:
                        ta = fa.get_tensor(name)
                        shard_b = map_b[name]
                        if shard_b not in handles_b:
                            handles_b[shard_b] = safe_open(str(b / shard_b), framework="pt").__enter__()
                        tb = handles_b[shard_b].get_tensor(name)
                        if tuple(ta.shape) != tuple(tb.shape):
                            raise ConfigError(f"cannot merge: tensor {name} has shape {tuple(ta.shape)} in A and {tuple(tb.shape)} in B")
                        if ta.is_floating_point():
                            merged, fell_back = fn(ta.to(torch.float32), tb.to(torch.float32), t)
                            recipe.n_linear_fallback += bool(fell_back) and method == "slerp"
                            merged = merged.to(ta.dtype).contiguous()
                        else:
                            merged, recipe.n_copied = ta.contiguous(), recipe.n_copied + 1
                        data = merged.reshape(-1).view(torch.uint8).numpy()  # a view: no copy
                        begin, end = entries[name]["data_offsets"]
                        if data.nbytes != end - begin:
                            raise ModelError(f"{a / shard}: tensor {name} holds {end - begin} bytes in the header but {data.nbytes} in the data; re-save the checkpoint")
                        fo.write(data.tobytes() if not data.flags.c_contiguous else memoryview(data))
                        recipe.n_tensors += 1
                        del ta, tb, merged, data
                        bar.update(1)
        finally:
            for h in handles_b.values():
                h.__exit__(None, None, None)
            bar.close()
        write_text(tmp / "merge.json", json.dumps(asdict(recipe), indent=2, sort_keys=True) + "\n")
        write_sidecar(tmp, record("nex merge", config=asdict(recipe), model={"a": str(a), "b": str(b)}, inputs={"a": str(a), "b": str(b)}))
    return recipe
