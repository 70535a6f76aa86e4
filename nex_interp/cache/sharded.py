"""Sharded caches: one directory whose shards are complete caches, read as one cache.

Layout (``docs/distributed.md``)::

    CACHE/
      shards.json                 the top-level manifest (format "nex-sharded-cache")
      shards/00000-00063/         a complete cache in the current format (manifest.json, rows/, base/, ...)
      shards/00064-00127/
      ...

``shards.json`` lists every shard in response order: its directory (named for the range of input
responses it holds, so the name is the same on every run), the range ``[first, stop)`` of input
responses, the number of responses it holds and the sha256 of its ``manifest.json`` (which in turn
records the sha256 of each of its files). A shard is written whole under a temporary name and renamed
into place, so a directory under ``shards/`` with that name is a finished shard.

:func:`open_sharded` memory-maps every shard and returns a :class:`ShardedCache`, a
:class:`~nex_interp.cache.arrays.CacheArrays` whose pointer arrays are the shards' pointers joined
(small: one int64 per row or response) and whose big arrays (keys, masses) are :class:`PartedArray`
views over the shards' own maps: no copy. A response never spans two shards, so slicing one
response's entries is a view. The NEX core learns and scores a sharded cache shard by shard
(:meth:`CacheArrays.pieces`), with the same accumulators in the same response order, so the weights
and GMF are the same bits as on the one-process cache. :func:`merge_sharded` writes one cache in the
reference layout (``nex cache merge``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import CacheError
from .arrays import CacheArrays, Stream
from ..hashing import sha256_file
from .manifest import MANIFEST_NAME, RESERVED_FIELDS, now_iso

SHARDS_NAME = "shards.json"
SHARDS_FORMAT = "nex-sharded-cache"
SHARDS_FORMAT_VERSION = 1
SHARDS_DIR = "shards"

__all__ = [
    "SHARDS_NAME", "PartedArray", "ShardedCache", "ShardSpec", "shard_specs", "shard_row", "is_sharded",
    "open_sharded", "read_shards_manifest", "write_shards_manifest", "merge_sharded", "split_cache", "copy_responses",
]


# ---------------------------------------------------------------------- layout


@dataclass(frozen=True)
class ShardSpec:
    """One shard to write: input responses ``[first, stop)`` under ``name`` (relative to the cache)."""

    first: int
    stop: int
    name: str


def shard_specs(n_responses: int, shard_size: int) -> list[ShardSpec]:
    """``n_responses`` input responses cut into shards of ``shard_size``; names ``shards/FFFFF-LLLLL``
    (first and last input index, zero-padded to at least 5 digits), the same for the same inputs."""
    if shard_size < 1:
        raise CacheError(f"shard size {shard_size} must be at least 1")
    width = max(5, len(str(max(n_responses - 1, 0))))
    return [ShardSpec(a, min(a + shard_size, n_responses), f"{SHARDS_DIR}/{a:0{width}d}-{min(a + shard_size, n_responses) - 1:0{width}d}")
            for a in range(0, n_responses, shard_size)]


def shard_row(root: str | os.PathLike, spec: ShardSpec) -> dict:
    """The manifest row of the finished shard ``spec`` under ``root`` (what a worker returns)."""
    shard = Path(root) / spec.name
    m = json.loads((shard / MANIFEST_NAME).read_text())
    return {"name": spec.name, "first": spec.first, "stop": spec.stop, "n_responses": int(m["n_responses"]),
            "manifest_sha256": sha256_file(shard / MANIFEST_NAME)}


def is_sharded(path: str | os.PathLike) -> bool:
    return (Path(path) / SHARDS_NAME).is_file()


def write_shards_manifest(root: str | os.PathLike, rows: list[dict], n_input: int, fields: dict | None = None) -> Path:
    """Atomically write ``root/shards.json`` for the shard rows ``rows`` (sorted by ``first``).
    ``complete`` is true when the rows cover all ``n_input`` input responses."""
    from ..atomic import write_text
    from .. import __version__

    rows = sorted(rows, key=lambda r: r["first"])
    covered = sum(r["stop"] - r["first"] for r in rows)
    data = {
        "format": SHARDS_FORMAT, "format_version": SHARDS_FORMAT_VERSION,
        "complete": covered == n_input, "n_input": n_input,
        "n_responses": sum(r["n_responses"] for r in rows),
        "shards": rows, "package_version": __version__, "updated": now_iso(), **(fields or {}),
    }
    path = Path(root) / SHARDS_NAME
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def read_shards_manifest(root: Path) -> dict:
    path = root / SHARDS_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CacheError(f"sharded cache {SHARDS_NAME} in {root} is not valid JSON ({e}): the file is corrupt; re-run the capture") from None
    if not isinstance(data, dict) or data.get("format") != SHARDS_FORMAT:
        raise CacheError(f"{path} is not a {SHARDS_FORMAT} manifest: the file is corrupt or not a NEX sharded cache")
    if not isinstance(data.get("format_version"), int) or data["format_version"] > SHARDS_FORMAT_VERSION:
        raise CacheError(f"{path} has format_version {data.get('format_version')!r}, which this nex-interp does not read: upgrade nex-interp")
    shards = data.get("shards")
    keys = ("name", "first", "stop", "n_responses", "manifest_sha256")
    if not isinstance(shards, list) or not all(isinstance(s, dict) and all(k in s for k in keys) for s in shards):
        raise CacheError(f"{path} has a malformed 'shards' list: the file is corrupt; re-run the capture")
    return data


# ---------------------------------------------------------------------- a view over parts


class PartedArray:
    """A read-only 1-D array made of consecutive parts (the shards' memory maps), without copying them.

    A slice inside one part is a view of that part; a slice across parts, an integer index array and
    ``np.asarray`` copy (so code written for one array still works, at that cost)."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = parts
        self.offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        self.dtype = parts[0].dtype if parts else np.dtype(np.uint8)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    ndim = 1

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return len(self) * self.itemsize

    def _part(self, i: int) -> int:
        return int(np.searchsorted(self.offsets, i, side="right")) - 1

    def __getitem__(self, key):
        n = len(self)
        if isinstance(key, slice) and key.step in (None, 1):
            a, b, _ = key.indices(n)
            if b <= a:
                return np.zeros(0, self.dtype)
            p, q = self._part(a), self._part(b - 1)
            if p == q:
                o = int(self.offsets[p])
                return self.parts[p][a - o : b - o]
            o = self.offsets
            return np.concatenate([self.parts[k][max(a - o[k], 0) : min(b, o[k + 1]) - o[k]] for k in range(p, q + 1)])
        if isinstance(key, (int, np.integer)):
            i = int(key) + (n if key < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"index {key} out of range for length {n}")
            p = self._part(i)
            return self.parts[p][i - int(self.offsets[p])]
        return np.asarray(self)[key]

    def __array__(self, dtype=None, copy=None):
        out = np.concatenate(self.parts) if self.parts else np.zeros(0, self.dtype)
        return out.astype(dtype, copy=False) if dtype is not None else out


def _join_ptr(ptrs: list[np.ndarray]) -> np.ndarray:
    """Pointer arrays (each starting at 0) joined into one: each shifted by the previous parts' ends."""
    out, base = [], 0
    for p in ptrs:
        p = np.asarray(p, dtype=np.int64)
        out.append(p[:-1] + base)
        base += int(p[-1])
    out.append(np.array([base], dtype=np.int64))
    return np.concatenate(out)


# ---------------------------------------------------------------------- the cache


@dataclass(frozen=True)
class ShardedCache(CacheArrays):
    """A sharded cache read as one (see the module docstring); ``parts`` are the shards, opened."""

    parts: tuple[CacheArrays, ...] = field(default=(), repr=False)

    @cached_property
    def _starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([p.n_responses for p in self.parts])]).astype(np.int64)

    def _whole(self) -> bool:
        """This is the sharded cache as opened (not a cache derived from it by :mod:`.ops`, which
        ``dataclasses.replace`` makes of the same class): its arrays are the shards' own."""
        if self.origin is not None or not self.parts:
            return False
        for f in ("keys", "mass", "base_keys", "base_mass"):
            arr = getattr(self, f)
            if not isinstance(arr, PartedArray) or len(arr.parts) != len(self.parts) or \
                    any(a is not getattr(p, f) for a, p in zip(arr.parts, self.parts)):
                return False
        return self.n_responses == int(self._starts[-1])

    def pieces(self, order: np.ndarray) -> list[tuple[CacheArrays, np.ndarray]]:
        """``order`` (global response indices) as consecutive runs inside one shard, in order:
        ``(shard, local indices)``."""
        if not self._whole():
            return super().pieces(order)
        order = np.asarray(order, dtype=np.int64)
        if not order.size:
            return []
        shard = np.searchsorted(self._starts, order, side="right") - 1
        cuts = np.flatnonzero(np.diff(shard)) + 1
        return [(self.parts[int(s[0])], o - self._starts[int(s[0])]) for s, o in zip(np.split(shard, cuts), np.split(order, cuts))]

    @cached_property
    def response_meta(self) -> list[dict]:
        if not self._whole():
            return CacheArrays.response_meta.func(self)
        return [m for p in self.parts for m in p.response_meta]

    @property
    def stream_names(self) -> tuple[str, ...]:
        if not self._whole():
            return super().stream_names
        return self.parts[0].stream_names

    def _open_stream(self, name: str) -> Stream:
        if not self._whole():
            return super()._open_stream(name)
        streams = [p.stream(name) for p in self.parts]
        names = streams[0].arrays.keys()
        return Stream(_join_ptr([s.ptr for s in streams]), {k: PartedArray([s.arrays[k] for s in streams]) for k in names})


def _shard_error(root: Path, name: str, what: str) -> CacheError:
    return CacheError(f"shard {name} of sharded cache {root} {what}: re-run the capture with the same settings "
                      "(it rewrites only missing shards), or remove the shard and re-run")


def open_sharded(path: str | os.PathLike, verify_checksums: bool = False) -> ShardedCache:
    """Validate and memory-map every shard of the sharded cache at ``path``, as one cache."""
    from .reader import open_cache

    root = Path(path)
    data = read_shards_manifest(root)
    if not data.get("complete"):
        raise CacheError(f"sharded cache {root} is unfinished (its {SHARDS_NAME} does not cover all responses): "
                         "re-run the capture to finish it")
    parts: list[CacheArrays] = []
    expect = 0
    for row in data["shards"]:
        name = row["name"]
        shard = root / name
        if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
            raise CacheError(f"sharded cache {root} lists a shard outside it ({name!r}): the {SHARDS_NAME} is corrupt")
        if row["first"] != expect:
            raise CacheError(f"sharded cache {root} lists shard {name} at response {row['first']}, expected {expect}: "
                             f"the {SHARDS_NAME} is corrupt")
        expect = row["stop"]
        if not (shard / MANIFEST_NAME).is_file():
            raise _shard_error(root, name, "is missing")
        if sha256_file(shard / MANIFEST_NAME) != row["manifest_sha256"]:
            raise _shard_error(root, name, f"does not match the sha256 recorded in {SHARDS_NAME} (changed or corrupt)")
        try:
            part = open_cache(shard, verify_checksums=verify_checksums)
        except CacheError as e:
            raise _shard_error(root, name, f"is not a valid cache ({e})") from None
        if not part.manifest.get("complete"):
            raise _shard_error(root, name, "is unfinished")
        if part.n_responses != row["n_responses"]:
            raise _shard_error(root, name, f"holds {part.n_responses} responses, not the {row['n_responses']} recorded")
        if parts and part.scheme != parts[0].scheme:
            raise _shard_error(root, name, "uses another key scheme than the first shard (a different model)")
        parts.append(part)
    if expect != data.get("n_input", expect):
        raise CacheError(f"sharded cache {root} covers {expect} of {data['n_input']} input responses: the {SHARDS_NAME} is corrupt")
    if not parts:
        raise CacheError(f"sharded cache {root} has no shards: re-run the capture")
    return _assemble(root, data, parts)


def _assemble(root: Path, data: dict, parts: list[CacheArrays]) -> ShardedCache:
    first = parts[0].manifest
    per_shard = ("arrays", "checksums", "created", "updated", "responses_bytes", "streams", "complete")
    manifest = {k: v for k, v in first.items() if k not in per_shard}
    for k in ("n_responses", "n_rows", "n_entries", "n_base_entries", "n_tokens"):
        manifest[k] = sum(int(p.manifest.get(k, 0)) for p in parts)
    manifest["complete"] = True
    manifest["streams"] = first.get("streams") or {}
    manifest["sharded"] = {"n_shards": len(parts), "shards": [r["name"] for r in data["shards"]]}
    return ShardedCache(
        sample_row_ptr=_join_ptr([p.sample_row_ptr for p in parts]),
        row_ptr=_join_ptr([p.row_ptr for p in parts]),
        token_row_ptr=_join_ptr([p.token_row_ptr for p in parts]),
        keys=PartedArray([p.keys for p in parts]),
        mass=PartedArray([p.mass for p in parts]),
        base_ptr=_join_ptr([p.base_ptr for p in parts]),
        base_keys=PartedArray([p.base_keys for p in parts]),
        base_mass=PartedArray([p.base_mass for p in parts]),
        scheme=parts[0].scheme,
        manifest=manifest,
        path=root,
        parts=tuple(parts),
    )


# ---------------------------------------------------------------------- copying responses


def copy_responses(src: CacheArrays, writer, indices) -> int:
    """Append responses ``indices`` of ``src`` to ``writer`` (a :class:`~nex_interp.cache.writer.CacheWriter`)
    byte for byte: rows, base vector, metadata and every stream. Returns how many were copied."""
    meta = src.response_meta
    streams = {s: src.stream(s) for s in src.stream_names}
    srp, rp, tp, bp = (np.asarray(a, dtype=np.int64) for a in (src.sample_row_ptr, src.row_ptr, src.token_row_ptr, src.base_ptr))
    n = 0
    for i in indices:
        r0, r1 = int(srp[i]), int(srp[i + 1])
        rows = [(src.keys[rp[j]:rp[j + 1]], src.mass[rp[j]:rp[j + 1]], int(tp[j + 1] - tp[j])) for j in range(r0, r1)]
        b0, b1 = int(bp[i]), int(bp[i + 1])
        writer.add_response(rows, src.base_keys[b0:b1], src.base_mass[b0:b1], meta[i] if meta else {},
                            {s: st.of(i) for s, st in streams.items()} or None)
        n += 1
    return n


def merge_sharded(sharded: str | os.PathLike, out: str | os.PathLike, progress: bool = False) -> CacheArrays:
    """Write the sharded cache ``sharded`` as one cache at ``out`` (the reference layout, with manifest
    and provenance; temp path, then rename). Returns the merged cache, opened."""
    from tqdm.auto import tqdm

    from ..atomic import atomic_path
    from ..provenance import record, write_sidecar
    from .reader import open_cache
    from .writer import CacheWriter

    out = Path(out)
    if out.exists():
        raise CacheError(f"output {out} already exists: choose a new directory for the merged cache")
    src = open_sharded(sharded)
    fields = {k: v for k, v in src.manifest.items() if k not in RESERVED_FIELDS and k != "sharded"}
    with atomic_path(out) as tmp:
        writer = CacheWriter(tmp, src.scheme, fields, durable=False)
        bar = tqdm(total=src.n_responses, unit="resp", desc="merge", disable=not progress)
        for part in src.parts:
            copy_responses(part, writer, range(part.n_responses))
            bar.update(part.n_responses)
        bar.close()
        writer.close()
        write_sidecar(tmp, record("cache merge", inputs={"sharded": str(sharded), "n_shards": len(src.parts)},
                                  n_responses=src.n_responses))
    return open_cache(out)



def split_cache(src: CacheArrays | str | os.PathLike, out: str | os.PathLike, shard_size: int) -> ShardedCache:
    """Write the cache ``src`` as a sharded cache at ``out``, ``shard_size`` responses a shard (the inverse
    of :func:`merge_sharded`; each shard temp path, then rename). Returns it, opened."""
    from ..atomic import atomic_path
    from .reader import as_cache
    from .writer import CacheWriter

    src = as_cache(src)
    out = Path(out)
    if out.exists():
        raise CacheError(f"output {out} already exists: choose a new directory for the sharded cache")
    fields = {k: v for k, v in src.manifest.items() if k not in RESERVED_FIELDS and k != "sharded"}
    specs = shard_specs(src.n_responses, shard_size)
    with atomic_path(out) as tmp:
        rows = []
        for spec in specs:
            writer = CacheWriter(tmp / spec.name, src.scheme, fields, durable=False)
            copy_responses(src, writer, range(spec.first, spec.stop))
            writer.close()
            rows.append(shard_row(tmp, spec))
        write_shards_manifest(tmp, rows, src.n_responses)
    return open_sharded(out)
