"""Test helpers: build CacheArrays in memory (planted explore/exploit structure, the spec's dirty
cases) and read a reference-layout cache directory with ``np.fromfile``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nex_interp.cache.arrays import CacheArrays
from nex_interp.keys import KeyScheme

Row = tuple[np.ndarray, np.ndarray, int]  # (keys, float16 mass, n_tokens)


def read_reference_layout(path: str | Path, scheme: KeyScheme | None = None, mmap: bool = False) -> CacheArrays:
    """CacheArrays of a cache directory in the reference layout (no validation: tests only)."""
    path = Path(path)
    scheme = scheme or KeyScheme.ref22()

    def arr(name: str, dtype) -> np.ndarray:
        f = path / name
        if mmap:
            return np.memmap(f, dtype=dtype, mode="r") if f.stat().st_size else np.zeros(0, dtype)
        return np.fromfile(f, dtype=dtype)

    kd = scheme.key_dtype
    ks = scheme.key_suffix
    return CacheArrays(arr("rows/sample_row_ptr.int64", np.int64), arr("rows/row_ptr.int64", np.int64),
                       arr("rows/token_row_ptr.int64", np.int64), arr(f"rows/keys.{ks}", kd),
                       arr("rows/w_sum.float16", np.float16), arr("base/row_ptr.int64", np.int64),
                       arr(f"base/keys.{ks}", kd), arr("base/w_sum.float16", np.float16), scheme)


def build_cache(responses: list[list[Row]], scheme: KeyScheme | None = None,
                bases: list[tuple[np.ndarray, np.ndarray]] | None = None) -> CacheArrays:
    """CacheArrays from explicit rows; base vectors default to per-key mass sums over each response."""
    scheme = scheme or KeyScheme.ref22()
    kd = scheme.key_dtype
    sample_ptr, row_ptr, tok_ptr, keys, mass = [0], [0], [0], [], []
    base_ptr, base_keys, base_mass = [0], [], []
    for r, rows in enumerate(responses):
        for k, m, t in rows:
            keys.append(np.asarray(k, dtype=kd))
            mass.append(np.asarray(m, dtype=np.float16))
            row_ptr.append(row_ptr[-1] + len(k))
            tok_ptr.append(tok_ptr[-1] + int(t))
        sample_ptr.append(sample_ptr[-1] + len(rows))
        if bases is not None:
            bk, bm = bases[r]
        else:
            acc: dict[int, float] = {}
            for k, m, _ in rows:
                k = np.asarray(k, dtype=kd)
                in_table = scheme.dense_index(k) != -2  # out-of-table keys would void the whole base vector
                for kk, mm in zip(k[in_table].tolist(), np.asarray(m, dtype=np.float32)[in_table].tolist()):
                    acc[kk] = acc.get(kk, 0.0) + mm
            bk = np.array(sorted(acc), dtype=kd)
            bm = np.array([acc[k] for k in sorted(acc)], dtype=np.float16)
        base_keys.append(np.asarray(bk, dtype=kd))
        base_mass.append(np.asarray(bm, dtype=np.float16))
        base_ptr.append(base_ptr[-1] + len(bk))

    def cat(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return CacheArrays(np.asarray(sample_ptr, np.int64), np.asarray(row_ptr, np.int64), np.asarray(tok_ptr, np.int64),
                       cat(keys, kd), cat(mass, np.float16), np.asarray(base_ptr, np.int64), cat(base_keys, kd),
                       cat(base_mass, np.float16), scheme)


def planted_rows(rng: np.random.Generator, n_rows: int, scheme: KeyScheme, universe: int = 400,
                 per_row: int = 12, n_layers: int = 4, dirty: float = 0.0) -> list[Row]:
    """Rows of one response alternating sticky explore (many unseen neurons) and exploit (reuse) phases.

    ``dirty`` is the probability of each sanitising case: reserved layer 255, NaN/inf/negative/zero
    mass, keys outside the table, rows with 0 tokens, empty rows.
    """
    layers = rng.integers(0, n_layers, universe)
    units = rng.integers(0, 4096, universe)
    pool = np.unique(scheme.pack(layers, units).astype(np.uint64))
    rng.shuffle(pool)
    cursor = 0
    explore = bool(rng.random() < 0.5)
    rows: list[Row] = []
    big_layer = 70 if scheme.name == "ref22" else scheme.n_layers + 1
    for j in range(n_rows):
        if rng.random() < 0.2:
            explore = not explore
        k = max(1, int(rng.integers(per_row // 2, per_row + 1)))
        n_new = min(int(k * (rng.uniform(0.4, 0.9) if explore else rng.uniform(0.0, 0.2))), len(pool) - cursor)
        new = pool[cursor:cursor + n_new]
        cursor += n_new
        old = rng.choice(pool[:cursor], size=min(k - n_new, cursor), replace=False) if cursor else pool[:0]
        keys = np.unique(np.concatenate([new, old]))
        mass = rng.lognormal(0.0, 0.7, len(keys)).astype(np.float16)
        tokens = 32 if j < n_rows - 1 else int(rng.integers(1, 33))
        if dirty > 0 and len(keys):
            u = rng.random(len(keys))
            keys = keys.copy()
            keys[u < dirty / 4] = scheme.pack(255, 7)
            mass[(u >= dirty / 4) & (u < dirty / 2)] = rng.choice(np.array([np.nan, np.inf, -np.inf, -1.5, 0.0], np.float16))
            keys = np.unique(keys, return_index=True)
            mass = mass[keys[1]]
            keys = keys[0]
            if rng.random() < dirty:
                keys = np.append(keys, scheme.pack(big_layer, 3))
                mass = np.append(mass, np.float16(1.0))
            if rng.random() < dirty:
                tokens = 0
            if rng.random() < dirty:
                keys, mass = keys[:0], mass[:0]
            if rng.random() < dirty:
                mass = np.zeros_like(mass)
        rows.append((keys.astype(scheme.key_dtype), mass.astype(np.float16), tokens))
    return rows


def random_cache(seed: int, n_responses: int, rows_lo: int, rows_hi: int, scheme: KeyScheme | None = None,
                 dirty: float = 0.0, universe: int = 400, per_row: int = 12) -> CacheArrays:
    """A cache of planted responses (``rows_lo..rows_hi`` rows each)."""
    scheme = scheme or KeyScheme.ref22()
    rng = np.random.default_rng(seed)
    responses = [planted_rows(rng, int(rng.integers(rows_lo, rows_hi + 1)), scheme, universe, per_row, dirty=dirty)
                 for _ in range(n_responses)]
    return build_cache(responses, scheme)
