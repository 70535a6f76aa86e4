"""The compiled path of learning: chunks of responses through the kernels of ``_kernels.c``.

Per chunk, :func:`kernel.scan_part` sanitises rows and finds first appearances (novelty), the phase
step runs on all the chunk's series (:func:`.phases.phase_labels_flat`), and :func:`kernel.credit`
adds the cycles' credit in response order. With two threads, :class:`_Pipeline` scans the next chunk
while this one is finished; the result is the same bits either way (docs/core.md).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..cache.arrays import CacheArrays
from ..cache.pages import release
from . import kernel
from .params import NexParams
from .phases import phase_labels_flat

#: the compiled path works in chunks of about this many entries (smaller chunks overlap better with the
#: background pass; each costs 5 bytes of scratch per entry)
COMPILED_CHUNK_ENTRIES = 2_000_000


def _chunks(cache: CacheArrays, order: np.ndarray, size: int, first: int | None = None) -> list[np.ndarray]:
    """``order`` cut into consecutive runs of about ``size`` cache entries (at least one response each); the
    first run about ``first`` entries if given (a short first run starts a pipeline sooner)."""
    srp = np.asarray(cache.sample_row_ptr)
    rp = np.asarray(cache.row_ptr)
    sizes = np.cumsum(rp[srp[order + 1]] - rp[srp[order]])
    if first is not None and first < size:
        sizes = sizes + (size - first)  # shifts every boundary: the first run ends near `first`
    cuts = np.flatnonzero(np.diff(sizes // size)) + 1
    return np.split(order, cuts) if len(order) else []


def phase_step(cache: CacheArrays, part: np.ndarray, scan: kernel.Scan,
               params: NexParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For responses ``part`` as :func:`kernel.scan_rows` found them: which take part in learning (at
    least 3 rows, 3 of them kept), and over their kept rows, concatenated, the novelty slopes and E labels."""
    srp, tp = cache.sample_row_ptr, cache.token_row_ptr
    r0, n_raw = srp[part], srp[part + 1] - srp[part]
    used = (n_raw >= 3) & (scan.n_kept >= 3)
    # cache row of each position in the concatenated rows; whether it is a kept row of a used response
    first_pos = np.cumsum(n_raw) - n_raw
    rows = np.arange(len(scan.kept), dtype=np.int64) + np.repeat(r0 - first_pos, n_raw)
    sel = scan.kept.astype(bool) & np.repeat(used, n_raw)
    rows = rows[sel]
    slopes = scan.n_new[sel] / (tp[rows + 1] - tp[rows])
    return used, slopes, phase_labels_flat(slopes, scan.n_kept[used], params.rho, params.min_run)


def compiled_response(k, cache: CacheArrays, i: int, params: NexParams) -> tuple:
    """Response ``i`` alone through the same passes as :func:`learn_compiled` (for diagnostics): its
    scan, slopes and E labels over kept rows (empty when it is skipped), the numbers of effective and
    redundant cycles credited, and the (index, effective, redundant) credit it adds."""
    part = np.array([i], dtype=np.int64)
    scan = kernel.scan_rows(k, cache, part, kernel.FirstRows(cache.scheme.n_neurons))
    used, slopes, labels = phase_step(cache, part, scan, params)
    effective = np.zeros(cache.scheme.n_neurons, dtype=np.float32)
    redundant = np.zeros(cache.scheme.n_neurons, dtype=np.float32)
    bound = np.full(2, -1, dtype=np.int64)
    cycles = kernel.credit(k, cache, part, scan, labels, slopes, effective, redundant, bound)
    credit = kernel.credited(effective, redundant, bound, cache.scheme.name == "wide")
    return scan, slopes, labels.astype(bool), cycles, credit


def learn_compiled(k, cache: CacheArrays, mapped: CacheArrays, order: np.ndarray, params: NexParams,
                   effective: np.ndarray, redundant: np.ndarray, bound: np.ndarray,
                   advance: Callable[[int], object], two_threads: bool) -> dict:
    """Add the credit of responses ``order`` with the compiled kernels (``cache``: plain views of the
    arrays of ``mapped``, whose pages are handed back as chunks are done). Per chunk of responses, one
    pass sanitises rows and finds first appearances (novelty), the phase step runs on the chunk's
    slopes, and one pass adds the cycles' credit. With ``two_threads`` (:class:`_Pipeline`), the next chunk's first pass runs in a
    second thread meanwhile; credit is still added by one thread in response order, so the result is the
    same either way."""
    counts = {"used": 0, "skipped": 0, "effective_cycles": 0, "redundant_cycles": 0}
    srp, rp = cache.sample_row_ptr, cache.row_ptr
    parts = _chunks(cache, order, COMPILED_CHUNK_ENTRIES, COMPILED_CHUNK_ENTRIES // 4 if two_threads else None)
    pipeline = _Pipeline(k, cache, parts, two_threads)
    for n, part in enumerate(parts):
        scan = pipeline.scanned(n)
        try:
            used, slopes, flat = phase_step(cache, part, scan, params)
            counts["used"] += int(used.sum())
            counts["skipped"] += int(len(part) - used.sum())
            n_eff, n_red = kernel.credit(k, cache, part, scan, flat, slopes, effective, redundant, bound)
            pipeline.finished(n)
        except BaseException:
            pipeline.stop()
            raise
        counts["effective_cycles"] += n_eff
        counts["redundant_cycles"] += n_red
        e0, e1 = int(rp[srp[part[0]]]), int(rp[srp[part[-1] + 1]])
        if e1 - e0 == int((rp[srp[part + 1]] - rp[srp[part]]).sum()):  # a contiguous run of responses
            release(mapped.keys, e0, e1)
            release(mapped.mass, e0, e1)
        advance(len(part))
    return counts


class _Pipeline:
    """The first passes (:func:`kernel.scan_part`) of a chunked run, spread over two threads.

    While the main thread finishes chunk n (phases and credit), a background thread scans the front of
    chunk n+1; the main thread then scans its back, so that both threads keep busy. The share of the
    background thread adapts to how long each side took on the last chunk. Each thread has its own
    first-row table (responses are scanned independently, so where the cut falls changes nothing).
    """

    def __init__(self, k, cache: CacheArrays, parts: list[np.ndarray], two_threads: bool) -> None:
        self.k, self.cache, self.parts, self.two = k, cache, parts, two_threads
        n = cache.scheme.n_neurons
        self.firsts = (kernel.FirstRows(n), kernel.FirstRows(n) if two_threads else None)
        self.spaces = (kernel.ScanSpace(), kernel.ScanSpace())  # chunk n's results, chunk n+1's
        self.share = 0.85  # of a chunk's responses, scanned by the background thread
        self.scans: dict[int, kernel.Scan] = {}
        self.pending = None  # (chunk, cut, Background, started)
        self.main_s = 0.0  # the main thread's own work on the last chunk
        srp = np.asarray(cache.sample_row_ptr)
        rp = np.asarray(cache.row_ptr)
        self.sizes = [rp[srp[p + 1]] - rp[srp[p]] for p in parts]  # entries per response, per chunk

    def _cut(self, n: int) -> int:
        """How many responses of chunk n the background thread scans (from the front)."""
        cum = np.cumsum(self.sizes[n])
        return int(np.searchsorted(cum, self.share * cum[-1])) if len(cum) else 0

    def _start(self, n: int) -> None:
        part = self.parts[n]
        scan = self.scans[n] = kernel.empty_scan(self.cache, part, self.spaces[n % 2])
        cut = max(1, min(len(part), self._cut(n))) if self.two else len(part)
        job = kernel.Background(self._timed, self.firsts[0], scan, n, 0, cut) if self.two else None
        self.pending = (n, cut, job)
        if job is None:
            self._timed(self.firsts[0], scan, n, 0, cut)

    def _timed(self, firsts, scan, n: int, start: int, stop: int) -> float:
        t = time.perf_counter()
        kernel.scan_part(self.k, self.cache, self.parts[n], firsts, scan, start, stop)
        return time.perf_counter() - t

    def _complete(self) -> None:
        """Scan the back of the pending chunk here, wait for the front, and adapt the share."""
        n, cut, job = self.pending
        part = self.parts[n]
        back_s = self._timed(self.firsts[1], self.scans[n], n, cut, len(part)) if cut < len(part) else 0.0
        if job is not None:
            front_s = job.result()
            # choose the next share so that front (background) = main's own work + back (main), by rates
            cum = np.cumsum(self.sizes[n])
            front_e, back_e = float(cum[cut - 1]), float(cum[-1] - cum[cut - 1])
            r_front = front_s / max(front_e, 1.0)
            r_back = back_s / back_e if back_e > 0 else r_front
            total = front_e + back_e
            want = (self.main_s + r_back * total) / ((r_front + r_back) * total) if total else 0.85
            self.share = min(1.0, max(0.25, want))
        self.pending = None

    def scanned(self, n: int) -> "kernel.Scan":
        """Chunk n's scan; starts the next chunk's in the background."""
        if n == 0:
            self._start(0)
            self._complete()
        self._t0 = time.perf_counter()
        if n + 1 < len(self.parts):
            self._start(n + 1)
        return self.scans[n]

    def finished(self, n: int) -> None:
        """Chunk n is done: the main thread scans its share of the next chunk."""
        self.main_s = time.perf_counter() - self._t0
        self.scans.pop(n, None)
        if self.pending is not None:
            self._complete()

    def stop(self) -> None:
        """On an error: let the background pass finish before its arrays go away."""
        if self.pending is not None and self.pending[2] is not None:
            try:
                self.pending[2].result()
            except BaseException:  # noqa: BLE001 -- the caller's error is the one to report
                pass
            self.pending = None
