"""The compiled inner loops of the NEX core (``_kernels.c``), when the install built them.

Learning and scoring use them when present; otherwise (no C compiler at install time, a stale build,
or ``NEX_KERNEL=plain``) the plain path runs (docs/core.md). Both compute docs/algorithm.md; they differ
only in the order of a few float64 sums (last bits), and the tests check each against the loop-by-loop
oracle.

The functions here hold the dtype and shape checks; the C code trusts them for types and checks
bounds itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from ..cache.arrays import CacheArrays

#: environment variable choosing the core's inner loops: "compiled" (default, when built) or "plain"
#: ("numpy", its name before the plain path called the libraries directly, is read as "plain")
KERNEL_ENV = "NEX_KERNEL"
PLAIN_CHOICES = ("plain", "numpy")
#: environment variable setting the compiled path's threads: 1 or 2 (unset: automatic)
WORKERS_ENV = "NEX_WORKERS"
#: the compiled kernels record first rows as uint16: a response may have at most this many rows
MAX_ROWS = 0xFFFE
NOT_KEPT = 0xFFFF


#: the ABI of _kernels.c this module calls (its NEX_KERNEL_ABI)
KERNEL_ABI = 6
_warned = False


def load() -> ModuleType | None:
    """The compiled module, or None when it was not built, is a stale build, or ``$NEX_KERNEL`` is ``plain``."""
    global _warned
    choice = os.environ.get(KERNEL_ENV, "compiled").strip().lower() or "compiled"
    if choice in PLAIN_CHOICES:
        return None
    try:
        from . import _kernels
    except ImportError:
        return None
    if getattr(_kernels, "ABI", None) != KERNEL_ABI:
        if not _warned:
            import warnings

            warnings.warn("nex-interp: the compiled NEX kernels are from another version of the source; using the "
                          "slower plain path (rebuild with: pip install -e .)", RuntimeWarning, stacklevel=2)
            _warned = True
        return None
    return _kernels


def active() -> str:
    """Which inner loops the core uses now: "compiled" or "plain" (recorded in the weights' provenance)."""
    return "compiled" if load() is not None else "plain"


class FirstRows:
    """The kernels' per-neuron first-row stamps (a uint16 per neuron, based per response so that the table
    is not cleared between responses), carried from one :func:`scan_rows` call to the next."""

    def __init__(self, n_neurons: int) -> None:
        self.table = np.zeros(n_neurons, dtype=np.uint16)
        self.base = 1


def _scheme(cache: CacheArrays) -> tuple[int, int, int]:
    s = cache.scheme
    return int(s.name == "wide"), int(s.n_layers), int(s.d_mlp)


def _u64(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int64)


def _common(cache: CacheArrays, order: np.ndarray) -> tuple:
    wide, n_layers, d_mlp = _scheme(cache)
    keys = np.ascontiguousarray(cache.keys, dtype=cache.scheme.key_dtype)
    mass = np.ascontiguousarray(cache.mass).view(np.uint16)
    return (keys, wide, n_layers, d_mlp, mass, _u64(cache.row_ptr), _u64(cache.token_row_ptr),
            _u64(cache.sample_row_ptr), _u64(order))


class Background:
    """``fn(*args)`` in a second thread (the compiled kernels let go of the GIL while they run);
    :meth:`result` waits for it and re-raises its error."""

    def __init__(self, fn, *args) -> None:
        import threading

        self._out = self._err = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), name="nex-kernel", daemon=True)
        self._thread.start()

    def _run(self, fn, args) -> None:
        try:
            self._out = fn(*args)
        except BaseException as e:  # noqa: BLE001 -- handed to the caller by result()
            self._err = e

    def result(self):
        self._thread.join()
        if self._err is not None:
            raise self._err
        return self._out


def default_workers() -> int | None:
    """Threads for the compiled path from ``$NEX_WORKERS`` (1 or 2), or None (unset or unreadable):
    automatic, i.e. two where there are 2+ CPUs (:func:`two_threads`)."""
    try:
        return min(2, max(1, int(os.environ[WORKERS_ENV])))
    except (KeyError, ValueError):
        return None


def two_threads(workers: int | None) -> bool:
    """Whether to split compiled work over two threads: ``workers`` (1 or 2) if given, else
    ``$NEX_WORKERS`` (:func:`default_workers`), else (automatic) where there is more than one CPU."""
    if workers is None:
        workers = default_workers()
    return workers > 1 if workers is not None else (os.cpu_count() or 1) > 1


@dataclass
class Scan:
    """What :func:`scan_rows` found for responses ``order``, over their cache rows (and entries)
    concatenated in that order.

    kept:   uint8 per row: 0 dropped, 1 kept, 2 kept but holding reserved-layer keys or masses to sanitise.
    n_new:  int32 per row, the neurons a kept row introduces (0 elsewhere).
    n_kept: int64 per response, its number of kept rows.
    first:  uint16 per entry: the kept-row position (within its response) of the first kept row holding
            the entry's neuron (the entry's own row when it introduces the neuron); NOT_KEPT outside kept
            rows or for dropped entries (reserved layer).
    """

    kept: np.ndarray
    n_new: np.ndarray
    n_kept: np.ndarray
    first: np.ndarray


class ScanSpace:
    """Memory that :func:`scan_rows` writes its per-entry results into, kept from one call to the next:
    fresh memory costs a page fault per 4 KiB on first touch, which is a large share of a pass that
    does a few nanoseconds of work per entry."""

    def __init__(self) -> None:
        self._first = np.empty(0, dtype=np.uint16)

    def first(self, n: int) -> np.ndarray:
        if len(self._first) < n:
            self._first = np.empty(max(n, len(self._first) * 5 // 4), dtype=np.uint16)
        return self._first[:n]


def empty_scan(cache: CacheArrays, order: np.ndarray, space: ScanSpace | None = None) -> Scan:
    """Uninitialised :class:`Scan` arrays for responses ``order`` (the per-entry array from ``space``)."""
    srp = np.asarray(cache.sample_row_ptr)
    rp = np.asarray(cache.row_ptr)
    n_rows = int((srp[order + 1] - srp[order]).sum())
    n_entries = int((rp[srp[order + 1]] - rp[srp[order]]).sum())
    first = space.first(n_entries) if space is not None else np.empty(n_entries, dtype=np.uint16)
    return Scan(np.empty(n_rows, dtype=np.uint8), np.empty(n_rows, dtype=np.int32),
                np.empty(len(order), dtype=np.int64), first)


def scan_part(k: ModuleType, cache: CacheArrays, order: np.ndarray, firsts: FirstRows, scan: Scan,
              start: int, stop: int) -> None:
    """:func:`scan_rows` for ``order[start:stop]``, written into its place in ``scan`` (the arrays of all
    of ``order``). Two threads may scan disjoint parts of one ``scan``, each with its own ``firsts``."""
    srp = np.asarray(cache.sample_row_ptr)
    rp = np.asarray(cache.row_ptr)
    before, part = order[:start], order[start:stop]
    r0 = int((srp[before + 1] - srp[before]).sum())
    e0 = int((rp[srp[before + 1]] - rp[srp[before]]).sum())
    r1 = r0 + int((srp[part + 1] - srp[part]).sum())
    e1 = e0 + int((rp[srp[part + 1]] - rp[srp[part]]).sum())
    firsts.base = k.scan_rows(*_common(cache, part), firsts.table, firsts.base, scan.kept[r0:r1],
                              scan.n_new[r0:r1], scan.n_kept[start:stop], scan.first[e0:e1])


def scan_rows(k: ModuleType, cache: CacheArrays, order: np.ndarray, firsts: FirstRows,
              space: ScanSpace | None = None) -> Scan:
    """Sanitise the rows of responses ``order`` and measure novelty (first appearances). With ``space``,
    the per-entry result is written into its memory (valid until the next call with the same space)."""
    scan = empty_scan(cache, order, space)
    scan_part(k, cache, order, firsts, scan, 0, len(order))
    return scan


def credit(k: ModuleType, cache: CacheArrays, order: np.ndarray, scan: Scan, labels: np.ndarray, slopes: np.ndarray,
           effective: np.ndarray, redundant: np.ndarray, bound: np.ndarray) -> tuple[int, int]:
    """Add the credit of the cycles of responses ``order`` (as :func:`scan_rows` found them; E labels and
    slopes concatenated over the kept rows of the used responses) to the float32 accumulators, and
    widen ``bound`` (int64 [2], start at -1s) to cover every neuron credited: for ref22 keys the largest
    layer and the largest unit, for wide ones 0 and the largest dense index (:func:`credited` reads only
    that part of the accumulators). Returns the numbers of effective and redundant cycles credited."""
    for acc, dtype in ((effective, np.float32), (redundant, np.float32), (bound, np.int64)):
        if acc.dtype != dtype or not acc.flags.c_contiguous or not acc.flags.writeable:
            raise ValueError(f"the credit accumulators must be writable contiguous {np.dtype(dtype).name} arrays")
    if bound.shape != (2,):
        raise ValueError("bound must be an int64 array of 2")
    return k.credit(*_common(cache, order), scan.kept, scan.n_new, scan.first,
                    np.ascontiguousarray(labels, dtype=np.uint8), np.ascontiguousarray(slopes, dtype=np.float64),
                    effective, redundant, bound)


def gmf(k: ModuleType, cache: CacheArrays, table: np.ndarray, start: int, stop: int) -> np.ndarray:
    """GMF (float64, NaN where the sanitised base vector is empty) of responses ``start..stop-1``."""
    wide, n_layers, d_mlp = _scheme(cache)
    ptr = _u64(cache.base_ptr[start:stop + 1])
    b0, b1 = int(ptr[0]), int(ptr[-1])
    keys = np.ascontiguousarray(cache.base_keys[b0:b1], dtype=cache.scheme.key_dtype)
    mass = np.ascontiguousarray(cache.base_mass[b0:b1]).view(np.uint16)
    out = np.empty(stop - start, dtype=np.float64)
    k.gmf(keys, wide, n_layers, d_mlp, mass, ptr, b0, np.ascontiguousarray(table, dtype=np.float32), out)
    return out


def phases(k: ModuleType, slopes: np.ndarray, lengths: np.ndarray, rho: float, min_run: int,
           draws: tuple[float, float, float], given_z: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E labels (uint8, concatenated) of many series of slopes (concatenated; ``lengths`` each), per
    series a status (1: unsure, decode its z with the libraries, then smooth) and the z-scores.
    ``draws``: the k-means++ uniforms of ``RandomState(0)``. ``given_z``: the input already holds the
    z-scores to decode (skips the detrending; for tests)."""
    slopes = np.ascontiguousarray(slopes, dtype=np.float64)
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    labels = np.empty(len(slopes), dtype=np.uint8)
    status = np.empty(len(lengths), dtype=np.uint8)
    z = np.empty(len(slopes), dtype=np.float64)
    k.phases(slopes, lengths, float(rho), int(min_run), tuple(float(u) for u in draws), labels, status, z, given_z)
    return labels, status, z


def credited(effective: np.ndarray, redundant: np.ndarray, bound: np.ndarray,
             wide: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index, effective, redundant) of the neurons with credit, by increasing dense index, reading only
    the part of the accumulators that ``bound`` (from :func:`credit`) covers."""
    hi, lo = (int(b) for b in bound)
    if lo < 0:
        z = np.zeros(0, dtype=np.float32)
        return np.zeros(0, dtype=np.int64), z, z.copy()
    if wide:
        e, r = effective[:lo + 1], redundant[:lo + 1]
        index = np.flatnonzero((e > 0) | (r > 0))
        return index.astype(np.int64), e[index], r[index]
    e = effective.reshape(-1, 1 << 16)[:hi + 1, :lo + 1]  # [layer, unit]
    r = redundant.reshape(-1, 1 << 16)[:hi + 1, :lo + 1]
    layer, unit = np.nonzero((e > 0) | (r > 0))
    return (layer.astype(np.int64) << 16) | unit, e[layer, unit], r[layer, unit]
