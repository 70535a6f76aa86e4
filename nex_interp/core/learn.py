"""Learning signed neuron weights from an unlabeled calibration set (NEX-ALGORITHM.md, learning).

Responses are processed in chunks: each chunk's rows are sanitised and their novelty measured, the
phase step runs once for the whole chunk (batched), then each response's cycles add their credit in
response order. Arrays are read from the (memory-mapped) cache and each chunk's pages are handed back
to the kernel once it is done, so memory stays bounded by the chunk size, not the cache size.

Two implementations (docs/core.md): the compiled kernels (:mod:`.kernel`; with two workers the next
chunk's first pass runs in a second thread, :class:`_Pipeline`) and the numpy path (:mod:`.rows`,
:mod:`.cycles`; with ``workers=2`` a forked helper learns the first half of the responses and the
parent adds its own half's credit after the helper's sums). Either way the float32 accumulation order,
and so the result, is that of one thread.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from .. import __version__
from ..cache.arrays import CacheArrays
from ..cache.pages import release
from ..errors import ConfigError
from ..keys import KeyScheme
from ..neuron_weights import NeuronWeights
from . import kernel
from .forked import Forked, can_fork
from .params import EPS, NexParams
from .phases import phase_labels_flat, segment_phases_batch

#: flush a chunk to the batched phase step once it holds this many entries or responses
CHUNK_ENTRIES = 4_000_000
CHUNK_RESPONSES = 256
#: the compiled path works in chunks of about this many entries (smaller chunks overlap better with the
#: background pass; each costs 5 bytes of scratch per entry)
COMPILED_CHUNK_ENTRIES = 2_000_000


def select_responses(cache: CacheArrays, params: NexParams, responses: np.ndarray | None) -> np.ndarray:
    """The response indices to learn on: ``responses`` (default all), then the first ``max_responses``."""
    n = cache.n_responses
    if responses is None:
        order = np.arange(n, dtype=np.int64)
    else:
        order = np.asarray(responses)
        if order.ndim != 1 or (order.size and not np.issubdtype(order.dtype, np.integer)):
            raise ConfigError("responses must be a 1-D array of integer response indices")
        order = order.astype(np.int64)
        bad = order[(order < 0) | (order >= n)]
        if bad.size:
            raise ConfigError(f"response index {int(bad[0])} is out of range: the cache has {n} responses (0..{n - 1})")
    if params.max_responses is not None:
        order = order[: params.max_responses]
    return order


def weights_from_credit(effective: np.ndarray, redundant: np.ndarray) -> np.ndarray:
    """float32 ``tanh(log((effective + EPS) / (redundant + EPS)))`` of credited neurons' sums."""
    e = np.asarray(effective).astype(np.float64)
    r = np.asarray(redundant).astype(np.float64)
    return np.tanh(np.log((e + EPS) / (r + EPS))).astype(np.float32)


def _cache_identity(cache: CacheArrays) -> dict:
    ident = {"n_responses": cache.n_responses, "n_rows": cache.n_rows, "n_entries": cache.n_entries,
             "key_scheme": cache.scheme.to_dict()}
    # the manifest's identity (model, rule, row size, checksums, ...), without the bulky per-array tables
    ident.update({k: v for k, v in cache.manifest.items() if k not in ("arrays", "streams")})
    return ident


class _Progress:
    """tqdm progress over responses; with ``delay`` seconds, the bar (and the tqdm import) only comes
    once the loop has run that long, so short runs stay quiet and fast."""

    def __init__(self, total: int, enabled: bool | float) -> None:
        self.total = total
        self.done = 0
        self.bar = None
        self.delay = None if not enabled else (0.0 if enabled is True else float(enabled))
        self.t0 = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.delay is not None and time.monotonic() - self.t0 >= self.delay:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.done, desc="nex train", unit="resp")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Credit:
    """Where credited cycles' ``mass * scale`` goes: straight into the float32 accumulators, in
    response order (or kept in that order, as streams, for adding later)."""

    def __init__(self, n_neurons: int, keep_streams: bool = False, scheme: KeyScheme | None = None) -> None:
        self.effective = np.zeros(n_neurons, dtype=np.float32)
        self.redundant = np.zeros(n_neurons, dtype=np.float32)
        # the compiled kernels keep the bounds of the neurons they credit (kernel.credit), so finding them
        # afterwards reads only that part of the accumulators
        self.scheme = scheme
        self.bound = np.full(2, -1, dtype=np.int64) if scheme is not None else None
        self.streams: list[tuple[int, np.ndarray, np.ndarray]] | None = [] if keep_streams else None

    def credited(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(index, effective, redundant) of the credited neurons, by increasing dense index."""
        if self.bound is None:
            index = np.flatnonzero((self.effective > 0) | (self.redundant > 0)).astype(np.int64)
            return index, self.effective[index], self.redundant[index]
        return kernel.credited(self.effective, self.redundant, self.bound, self.scheme.name == "wide")

    def add(self, code: int, idx: list[np.ndarray], vals: list[np.ndarray]) -> None:
        if not idx:
            return
        i, v = np.concatenate(idx), np.concatenate(vals)
        if self.streams is not None:
            self.streams.append((code, i, v))
        else:
            self._add(code, i, v)

    def _add(self, code: int, i: np.ndarray, v: np.ndarray) -> None:
        from .cycles import EFFECTIVE_CODE

        np.add.at(self.effective if code == EFFECTIVE_CODE else self.redundant, i, v)

    def apply_streams(self) -> None:
        for code, i, v in self.streams or ():
            self._add(code, i, v)
        self.streams = None


def plain_arrays(cache: CacheArrays) -> CacheArrays:
    """The same cache with plain ndarray views of its (memory-mapped) arrays: slicing an ``np.memmap``
    costs ~10 us of Python per slice, a view's slice ~1 us. No data is copied."""
    fields = ("sample_row_ptr", "row_ptr", "token_row_ptr", "keys", "mass", "base_ptr", "base_keys", "base_mass")
    return dataclasses.replace(cache, **{f: np.asarray(getattr(cache, f)) for f in fields})


def _learn_sequential(cache: CacheArrays, order: np.ndarray, params: NexParams, credit: _Credit,
                      bar: _Progress) -> dict:
    """Learn on ``order`` one response after another (chunked), adding credit in response order."""
    from .cycles import EFFECTIVE_CODE, REDUNDANT_CODE, credit_parts, cycle_table
    from .rows import FirstSeen, response_rows

    mapped, cache = cache, plain_arrays(cache)  # read through views; release pages of the maps
    seen = FirstSeen(cache.scheme.n_neurons)
    counts = {"used": 0, "skipped": 0, "effective_cycles": 0, "redundant_cycles": 0}
    ptr = cache.row_ptr
    srp = cache.sample_row_ptr

    def flush(chunk: list) -> None:
        labels = segment_phases_batch([r.slopes for r in chunk], params.rho, params.min_run)
        parts = {EFFECTIVE_CODE: ([], []), REDUNDANT_CODE: ([], [])}
        for rows, lab in zip(chunk, labels):
            table = cycle_table(rows, lab)
            for code, (idx, vals) in parts.items():
                i, v = credit_parts(rows, table, code)
                idx += i
                vals += v
        # one ordered add per accumulator: within a response every neuron is introduced once, so this
        # adds exactly what per-cycle adds would, in the same (response) order
        for code, name in ((EFFECTIVE_CODE, "effective_cycles"), (REDUNDANT_CODE, "redundant_cycles")):
            idx, vals = parts[code]
            counts[name] += len(idx)
            credit.add(code, idx, vals)
        for r in chunk:
            done_with(r.response)

    def done_with(i: int) -> None:
        """Response ``i``'s cache pages are no longer needed: keep the resident set small."""
        e0, e1 = int(ptr[srp[i]]), int(ptr[srp[i + 1]])
        release(mapped.keys, e0, e1)
        release(mapped.mass, e0, e1)

    chunk: list = []  # of rows.ResponseRows
    chunk_entries = 0
    for i in order.tolist():
        rows = response_rows(cache, i, seen)
        if rows.skipped_reason is None:
            counts["used"] += 1
            chunk.append(rows)
            chunk_entries += len(rows.entry_first)
            if chunk_entries >= CHUNK_ENTRIES or len(chunk) >= CHUNK_RESPONSES:
                flush(chunk)
                chunk, chunk_entries = [], 0
        else:
            counts["skipped"] += 1
            done_with(i)
        bar.update(1)
    if chunk:
        flush(chunk)
    return counts


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


def _learn_compiled(k, cache: CacheArrays, order: np.ndarray, params: NexParams, credit: _Credit,
                    bar: _Progress, two_threads: bool) -> dict:
    """:func:`_learn_sequential` with the compiled kernels. Per chunk of responses, one pass sanitises rows
    and finds first appearances (novelty), the phase step runs batched on the slopes, and one pass adds the
    cycles' credit. With ``two_threads`` (:class:`_Pipeline`), the next chunk's first pass runs in a
    second thread meanwhile; credit is still added by one thread in response order, so the result is the
    same either way."""
    mapped, cache = cache, plain_arrays(cache)
    counts = {"used": 0, "skipped": 0, "effective_cycles": 0, "redundant_cycles": 0}
    srp, rp, tp = cache.sample_row_ptr, cache.row_ptr, cache.token_row_ptr
    parts = _chunks(cache, order, COMPILED_CHUNK_ENTRIES, COMPILED_CHUNK_ENTRIES // 4 if two_threads else None)
    pipeline = _Pipeline(k, cache, parts, two_threads)
    for n, part in enumerate(parts):
        scan = pipeline.scanned(n)
        try:
            r0, n_raw = srp[part], srp[part + 1] - srp[part]
            used = (n_raw >= 3) & (scan.n_kept >= 3)
            counts["used"] += int(used.sum())
            counts["skipped"] += int(len(part) - used.sum())
            # cache row of each position in the concatenated rows; whether it is a kept row of a used response
            first_pos = np.cumsum(n_raw) - n_raw
            rows = np.arange(len(scan.kept), dtype=np.int64) + np.repeat(r0 - first_pos, n_raw)
            sel = scan.kept.astype(bool) & np.repeat(used, n_raw)
            rows = rows[sel]
            slopes = scan.n_new[sel] / (tp[rows + 1] - tp[rows])
            flat = phase_labels_flat(slopes, scan.n_kept[used], params.rho, params.min_run)
            n_eff, n_red = kernel.credit(k, cache, part, scan, flat, slopes, credit.effective, credit.redundant,
                                         credit.bound)
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
        bar.update(len(part))
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


def _split(cache: CacheArrays, order: np.ndarray) -> int:
    """Where to cut ``order`` so that both parts hold about half of its cache entries."""
    srp = np.asarray(cache.sample_row_ptr, dtype=np.int64)
    rp = np.asarray(cache.row_ptr)
    sizes = np.asarray(rp[srp[order + 1]], dtype=np.int64) - np.asarray(rp[srp[order]], dtype=np.int64)
    cum = np.cumsum(sizes)
    return int(np.searchsorted(cum, cum[-1] / 2)) + 1 if len(cum) else 0


def _learn_part(cache: CacheArrays, order: np.ndarray,
                params: NexParams) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """The first part, in a helper process: counts and its (sparse) accumulators."""
    credit = _Credit(cache.scheme.n_neurons)
    counts = _learn_sequential(cache, order, params, credit, _Progress(len(order), False))
    idx = np.flatnonzero((credit.effective != 0) | (credit.redundant != 0))
    return counts, idx, credit.effective[idx], credit.redundant[idx]


def _learn(cache: CacheArrays, order: np.ndarray, params: NexParams, bar: _Progress,
           workers: int | None) -> tuple[dict, _Credit]:
    """Credit for ``order``; with 2 workers a forked helper takes the first half. The parent keeps its own
    half's credit in order and adds it after the helper's sums, so float32 sums are exactly sequential."""
    n_neurons = cache.scheme.n_neurons
    k = kernel.load()
    srp = np.asarray(cache.sample_row_ptr)
    if k is not None and len(order) and int((srp[order + 1] - srp[order]).max()) > kernel.MAX_ROWS:
        k = None  # a response too long for the kernels' uint16 row numbers (over 2M tokens): the numpy path
    if k is not None:  # the compiled path: one process; with 2 workers a second thread scans ahead
        credit = _Credit(n_neurons, scheme=cache.scheme)
        two = kernel.two_threads(workers)
        return dict(_learn_compiled(k, cache, order, params, credit, bar, two), kernel="compiled"), credit
    workers = 1 if workers is None or not can_fork() else workers
    h = _split(cache, order) if workers > 1 and len(order) > 1 else 0
    if not 0 < h < len(order):
        credit = _Credit(n_neurons)
        return dict(_learn_sequential(cache, order, params, credit, bar), kernel="numpy"), credit
    try:
        helper = Forked(_learn_part, cache, order[:h], params)
    except OSError:  # no process to spare: one process it is
        credit = _Credit(n_neurons)
        return dict(_learn_sequential(cache, order, params, credit, bar), kernel="numpy"), credit
    try:
        credit = _Credit(n_neurons, keep_streams=True)
        counts = _learn_sequential(cache, order[h:], params, credit, bar)
        first = helper.result()
    except BaseException:
        helper.cancel()
        raise
    if first is None:  # the helper failed: do its half here (same result)
        first = _learn_part(cache, order[:h], params)
    first_counts, idx, eff, red = first
    credit.effective[idx] = eff
    credit.redundant[idx] = red
    credit.apply_streams()
    bar.update(h)
    return dict({k: counts[k] + first_counts[k] for k in counts}, kernel="numpy"), credit


def learn_weights(cache: CacheArrays, params: NexParams = NexParams(), progress: bool | float = False,
                  responses: np.ndarray | None = None, workers: int | None = None) -> NeuronWeights:
    """Learn NEX neuron weights on ``cache`` (optionally on a subset of its responses).

    Every response with at least 3 non-empty rows is segmented into explore/exploit phases; its E->X
    cycles credit the neurons their explore rows introduced, as effective or redundant. Returns sparse
    weights over the cache's key scheme with ``meta`` recording the params, the cache and counts.
    ``progress``: True shows a tqdm bar; a number of seconds shows it only once learning takes longer.
    ``workers``: 1 or 2 (None: automatic). With the compiled kernels, 2 runs each chunk's first pass in
    a second thread while the previous chunk is finished (the default where there are 2+ CPUs); on the
    numpy path, 2 lets a forked helper process learn half the responses (Linux; default 1). The result
    is identical either way; see :func:`nex_interp.core.forked.default_workers`.
    """
    order = select_responses(cache, params, responses)
    bar = _Progress(len(order), progress)
    try:
        counts, credit = _learn(cache, order, params, bar, workers)
    finally:
        bar.close()
    index, effective, redundant = credit.credited()
    weight = weights_from_credit(effective, redundant)
    meta = {
        "method": "nex",
        "params": params.to_dict(),
        "cache": _cache_identity(cache),
        "n_responses_requested": int(len(order)),
        "n_responses_used": counts["used"],
        "n_responses_skipped": counts["skipped"],
        "n_effective_cycles": counts["effective_cycles"],
        "n_redundant_cycles": counts["redundant_cycles"],
        "kernel": counts["kernel"],
        "version": __version__,
    }
    return NeuronWeights(index, weight, effective, redundant, cache.scheme, meta)
