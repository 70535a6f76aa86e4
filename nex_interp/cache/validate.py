"""Checks on cache files before any work: present, whole, as long as recorded, pointers sane.

Every failure is a :class:`~nex_interp.errors.CacheError` whose one line names the file, the
problem and the fix. Arrays are mapped read-only (``np.memmap``); only pointer arrays are read
(to check them), never the keys or mass arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CacheError

RECAPTURE = "the file is corrupt; re-run capture"


def check_directory(cache: Path) -> None:
    """The cache path exists, is a directory, is not empty and has ``rows/`` and ``base/``."""
    if not cache.exists():
        raise CacheError(f"cache {cache} does not exist: check the path (a cache is a directory written by nex capture)")
    if not cache.is_dir():
        raise CacheError(f"cache {cache} is a file, not a directory: pass the cache directory (holding rows/ and base/)")
    if not any(cache.iterdir()):
        raise CacheError(f"cache {cache} is an empty directory: it holds no rows/ or base/; run nex capture to make a cache")
    for sub in ("rows", "base"):
        if not (cache / sub).is_dir():
            raise CacheError(f"cache {cache} has no {sub}/ directory: it is not a NEX cache or is incomplete; re-run capture")


def array_length(cache: Path, rel: str, dtype: np.dtype, recorded: int | None = None, complete: bool = True) -> int:
    """Number of ``dtype`` items in ``cache/rel``, checked against the manifest's ``recorded`` length.

    ``complete`` manifests must match exactly; an unfinished cache's files may run past the commit
    point (an interrupted append) and are read only up to ``recorded``.
    """
    path = cache / rel
    if not path.exists():
        raise CacheError(f"cache file {path} is missing: the cache is incomplete; re-run capture")
    if not path.is_file():
        raise CacheError(f"cache file {path} is not a regular file: the cache is corrupt; re-run capture")
    size = path.stat().st_size
    if recorded is not None and not complete:
        # an unfinished cache: an interrupted append may have left any number of bytes past the commit point
        size = min(size, max(recorded, 0) * dtype.itemsize)
    if size % dtype.itemsize:
        raise CacheError(
            f"cache file {path} has {size} bytes, not a whole number of {dtype.name} items "
            f"({dtype.itemsize} bytes each): the file is truncated or corrupt; re-run capture"
        )
    n = size // dtype.itemsize
    if recorded is None:
        return n
    if recorded < 0:
        raise CacheError(f"cache manifest.json in {cache} records a negative length for {rel}: {RECAPTURE}")
    if n < recorded:
        raise CacheError(
            f"cache file {path} has {n} items but manifest.json records {recorded}: the file is truncated; re-run capture"
        )
    if complete and n > recorded:
        raise CacheError(
            f"cache file {path} has {n} items but manifest.json records {recorded}: "
            "the file was changed after capture; re-run capture"
        )
    return recorded


def map_array(cache: Path, rel: str, dtype: np.dtype, length: int) -> np.ndarray:
    """Read-only memory map of the first ``length`` items of ``cache/rel`` (an empty array for 0)."""
    if length == 0:
        out = np.zeros(0, dtype=dtype)
        out.flags.writeable = False
        return out
    return np.memmap(cache / rel, dtype=dtype, mode="r", shape=(length,))


def check_pointer(ptr: np.ndarray, path: Path, target_len: int | None, target: str | None) -> None:
    """A CSR pointer: at least one item, starts at 0, never decreases, ends at ``target_len``."""
    if len(ptr) == 0:
        raise CacheError(f"cache file {path} is empty (a pointer array holds at least the leading 0): {RECAPTURE}")
    p = np.asarray(ptr)
    if p[0] != 0:
        raise CacheError(f"cache file {path} starts at {int(p[0])}, not 0: {RECAPTURE}")
    if len(p) > 1:
        bad = np.flatnonzero(p[1:] < p[:-1])
        if len(bad):
            raise CacheError(f"cache file {path} decreases at entry {int(bad[0]) + 1}: {RECAPTURE}")
    if target_len is not None and int(p[-1]) != target_len:
        where = "points past the end of" if int(p[-1]) > target_len else "ends before the end of"
        raise CacheError(
            f"cache file {path} {where} {target} (last pointer {int(p[-1])}, {target_len} items): {RECAPTURE}"
        )


def check_same_length(cache: Path, a: str, n_a: int, b: str, n_b: int, why: str) -> None:
    if n_a != n_b:
        raise CacheError(f"cache {cache}: {a} has {n_a} items but {b} has {n_b} ({why}): {RECAPTURE}")
