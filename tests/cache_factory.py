"""Small random caches for the cache, CLI and bad-input tests (no model needed)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nex_interp.cache.writer import CacheWriter
from nex_interp.keys import KeyScheme

REFERENCE_CACHE = Path(__file__).parent / "data" / "reference" / "example_cache"
REFERENCE_WEIGHTS = Path(__file__).parent / "data" / "reference" / "example_weights.npz"
EXPECTED = Path(__file__).parent / "data" / "reference" / "EXPECTED.json"

CORE_FILES = (
    "rows/sample_row_ptr.int64",
    "rows/row_ptr.int64",
    "rows/token_row_ptr.int64",
    "rows/keys.uint32",
    "rows/w_sum.float16",
    "base/row_ptr.int64",
    "base/keys.uint32",
    "base/w_sum.float16",
)


@dataclass
class Response:
    rows: list  # (keys, mass float32, n_tokens)
    base_keys: np.ndarray
    base_mass: np.ndarray
    meta: dict
    streams: dict


def make_responses(n: int, seed: int = 0, scheme: KeyScheme | None = None, n_layers: int = 6, d_mlp: int = 64, streams: bool = True) -> list[Response]:
    """``n`` random responses; rows of 0..40 entries, some with no entries or no tokens."""
    scheme = scheme or KeyScheme.ref22()
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rows, t_total = [], 0
        for j in range(int(rng.integers(0, 8))):
            m = int(rng.integers(0, 40))
            layer = rng.integers(0, n_layers, m)
            unit = rng.integers(0, d_mlp, m)
            keys = scheme.pack(layer, unit)
            mass = rng.gamma(1.0, 2.0, m).astype(np.float32)
            n_tok = int(rng.integers(0, 33))
            rows.append((keys, mass, n_tok))
            t_total += n_tok
        bk = np.unique(np.concatenate([r[0] for r in rows])) if rows else np.zeros(0, dtype=scheme.key_dtype)
        bm = rng.gamma(2.0, 3.0, len(bk)).astype(np.float32)
        st = {}
        if streams:
            st = {"tokens": {"ids": rng.integers(0, 1000, t_total).astype(np.int32), "entropy": rng.random(t_total).astype(np.float32)}}
        out.append(Response(rows, bk, bm, {"id": f"r{i}", "problem_id": i // 2, "sample": i % 2}, st))
    return out


def write_cache(path: Path, responses: list[Response], scheme: KeyScheme | None = None, close: bool = True, **fields) -> Path:
    scheme = scheme or KeyScheme.ref22()
    manifest = {"model": "test-model", "rule": "gt0", "row_tokens": 32, **fields}
    w = CacheWriter(path, scheme, manifest)
    for r in responses:
        w.add_response(r.rows, r.base_keys, r.base_mass, r.meta, r.streams or None)
    if close:
        w.close()
    else:
        w.abandon()
    return Path(path)


def copy_reference(dst: Path) -> Path:
    shutil.copytree(REFERENCE_CACHE, dst)
    return dst
