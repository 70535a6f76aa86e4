"""Synthetic candidate caches for the selection, ranking, agreement and sensitivity tests.

A cache of ``n_problems x n_samples`` responses with planted explore/exploit rows
(:func:`synth_cache.planted_rows`), per-response metadata (id, problem_id, response text with an
``ans`` line, correct) and a ``tokens`` stream with the statistics the baselines read.
"""

from __future__ import annotations

import math
from pathlib import Path
from unittest import mock

import numpy as np
from synth_cache import planted_rows

from nex_interp.cache.writer import CacheWriter
from nex_interp.keys import KeyScheme

VOCAB = 50


def token_stream(rng: np.random.Generator, n_tokens: int, sharp: float) -> dict[str, np.ndarray]:
    """Per-token stats computed from real random distributions over a small vocabulary."""
    logits = rng.normal(0.0, sharp, size=(n_tokens, VOCAB))
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    u = rng.random((n_tokens, 1))
    ids = np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), VOCAB - 1).astype(np.int32)
    top = np.sort(logp, axis=1)[:, ::-1][:, :5]
    return {
        "ids": ids,
        "entropy": (-(p * logp).sum(axis=1)).astype(np.float32),
        "logprob": logp[np.arange(n_tokens), ids].astype(np.float32),
        "topk_mean_logprob": top.mean(axis=1).astype(np.float32),
        "vocab_mean_logprob": logp.mean(axis=1).astype(np.float32),
    }


def write_candidate_cache(
    path: Path, n_problems: int = 6, n_samples: int = 4, seed: int = 0, p_correct: float = 0.5,
    rows_lo: int = 16, rows_hi: int = 30, model: str = "synth", rule: str = "gt0", streams: bool = True,
) -> Path:
    """Write the cache; returns its path. Same seed, same cache. (fsync is skipped: test data only.)"""
    with mock.patch("os.fsync", lambda fd: None):
        return _write(path, n_problems, n_samples, seed, p_correct, rows_lo, rows_hi, model, rule, streams)


def _write(path, n_problems, n_samples, seed, p_correct, rows_lo, rows_hi, model, rule, streams) -> Path:
    rng = np.random.default_rng(seed)
    scheme = KeyScheme.ref22()
    manifest = {"model": model, "rule": rule, "row_tokens": 32, "vocab_size": VOCAB}
    w = CacheWriter(path, scheme, manifest)
    for p in range(n_problems):
        answer = int(rng.integers(10, 99))
        for s in range(n_samples):
            rows = planted_rows(rng, int(rng.integers(rows_lo, rows_hi + 1)), scheme, universe=300, per_row=10)
            n_tok = sum(r[2] for r in rows)
            correct = bool(rng.random() < p_correct)
            given = answer if correct else int(rng.integers(0, 9))
            base = {}
            for k, m, _ in rows:
                for kk, mm in zip(k.tolist(), np.asarray(m, np.float32).tolist()):
                    base[kk] = base.get(kk, 0.0) + mm
            bk = np.array(sorted(base), dtype=np.uint32)
            bm = np.array([base[k] for k in sorted(base)], dtype=np.float32)
            meta = {"id": f"p{p}-s{s}", "problem_id": f"p{p}", "sample": s, "response": f"try it ; ans {given}",
                    "reference_answer": str(answer), "correct": correct}
            st = {"tokens": token_stream(rng, n_tok, 1.0 + 2.0 * correct)} if streams else None
            w.add_response([(k, np.asarray(m, np.float32), t) for k, m, t in rows], bk, bm, meta, st)
    w.close()
    return Path(path)


def kl_uniform(logp: np.ndarray) -> float:
    """KL(U || p) for one distribution, straight from the definition."""
    v = len(logp)
    return float(sum((1.0 / v) * (math.log(1.0 / v) - lp) for lp in logp))
