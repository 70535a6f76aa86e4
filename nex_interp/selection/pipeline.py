"""From a responses file and a cache to a scored candidate set, then best-of-N.

:func:`candidates_for_cache` lines the responses up with the cache's responses (by id),
:func:`attach_token_stats` reads the per-token output statistics capture stored in the cache's
``tokens`` stream, and :func:`attach_nex_scores` adds the NEX GMF columns the ``nex_*`` methods
read. :func:`select_best_of_n` runs all of it; ``nex select`` and ``nex demo`` call it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..cache.arrays import CacheArrays
from ..core import NexParams
from ..config_dict import DictConfig
from ..errors import CacheError, ConfigError
from . import nex_api
from .candidates import CandidateSet, candidates_from_rows
from .token_inputs import ENTROPY, LOGPROB, TOPK_MEAN_LOGPROB, VOCAB_MEAN_LOGPROB

#: array names accepted in the cache's ``tokens`` stream for each statistic (first present wins)
STREAM_ALIASES: dict[str, tuple[str, ...]] = {
    ENTROPY: ("entropy",),
    LOGPROB: ("logprob", "chosen_logprob"),
    TOPK_MEAN_LOGPROB: ("topk_mean_logprob", "topk_logprob_mean", "top_k_mean_logprob"),
    VOCAB_MEAN_LOGPROB: ("vocab_mean_logprob", "mean_logprob", "logprob_mean"),
}

Calibration = Literal["problem", "pool"]


def align_to_cache(cands: CandidateSet, cache_meta: list[dict], n_cache: int) -> np.ndarray:
    """Cache response index of each candidate (-1: not in the cache).

    By id when the cache carries per-response metadata; a cache without it (a reference cache)
    must hold exactly the candidates, in order.
    """
    if cache_meta:
        where = {str(m.get("id", k)): k for k, m in enumerate(cache_meta)}
        return np.asarray([where.get(i, -1) for i in cands.ids], dtype=np.int64)
    if n_cache != len(cands):
        raise CacheError(
            f"the cache has no responses.jsonl to match ids and holds {n_cache} responses for {len(cands)} candidates: "
            "capture the same responses file"
        )
    return np.arange(len(cands), dtype=np.int64)


def token_stats_from_stream(ptr: np.ndarray, arrays: dict[str, np.ndarray], cache_index: np.ndarray):
    """(stats by canonical name, n_tokens) for the candidates at ``cache_index`` (-1: missing)."""
    stats: dict[str, list[np.ndarray | None]] = {}
    for name, aliases in STREAM_ALIASES.items():
        src = next((arrays[a] for a in aliases if a in arrays), None)
        if src is None:
            continue
        stats[name] = [None if k < 0 else np.asarray(src[ptr[k] : ptr[k + 1]], dtype=np.float64) for k in cache_index]
    n_tok = np.asarray([np.nan if k < 0 else float(ptr[k + 1] - ptr[k]) for k in cache_index], dtype=np.float64)
    return stats, n_tok


def vocab_size_of(manifest: dict) -> int | None:
    """The model's vocabulary size recorded in a cache manifest, if any."""
    for holder in (manifest, manifest.get("model") if isinstance(manifest.get("model"), dict) else {}):
        v = holder.get("vocab_size") if isinstance(holder, dict) else None
        if v:
            return int(v)
    streams = manifest.get("token_stats") or {}
    return int(streams["vocab_size"]) if isinstance(streams, dict) and streams.get("vocab_size") else None


def attach_token_stats(cands: CandidateSet, cache: CacheArrays, cache_index: np.ndarray) -> CandidateSet:
    """Attach the ``tokens`` stream's statistics (when the cache has one) and response lengths."""
    manifest = cache.manifest or {}
    if cache.has_stream("tokens"):
        ptr, arrays = cache.stream("tokens")
        stats, n_tok = token_stats_from_stream(ptr, arrays, cache_index)
    else:
        stats = {}
        per_resp = cache.response_tokens()
        n_tok = np.asarray([np.nan if k < 0 else float(per_resp[k]) for k in cache_index])
    meta = {}
    vs = vocab_size_of(manifest)
    if vs:
        meta["vocab_size"] = vs
    return cands.with_token_stats(stats, n_tok, **meta)


def _scatter(values: np.ndarray, cache_index: np.ndarray) -> np.ndarray:
    out = np.full(len(cache_index), np.nan)
    ok = cache_index >= 0
    out[ok] = values[cache_index[ok]]
    return out


def nex_self_calibrated(
    cands: CandidateSet, cache: CacheArrays, cache_index: np.ndarray, params=None,
    calibration: Calibration = "problem", progress: bool = False,
) -> np.ndarray:
    """Per-candidate GMF with weights learned, without labels, on the candidates themselves:
    on each problem's own candidates (``calibration="problem"``) or on all candidates pooled."""
    if calibration == "pool":
        idx = cache_index[cache_index >= 0]
        return _scatter(nex_api.self_calibrated_gmf(cache, params, np.unique(idx)), cache_index)
    if calibration != "problem":
        raise ConfigError(f"calibration must be 'problem' or 'pool', got {calibration!r}")
    from tqdm.auto import tqdm

    out = np.full(len(cands), np.nan)
    for _, members in tqdm(cands.problems(), desc="NEX per problem", unit="problem", disable=not progress):
        ci = cache_index[members]
        ok = ci >= 0
        if not ok.any():
            continue
        uniq = np.unique(ci[ok])
        gmf = nex_api.self_calibrated_gmf_of(cache, uniq, params)
        out[members[ok]] = gmf[np.searchsorted(uniq, ci[ok])]
    return out


def nex_cross_calibrated(
    cands: CandidateSet, cache: CacheArrays, cache_index: np.ndarray, params=None, folds: int = 2, seed: int = 0
) -> np.ndarray:
    """Per-candidate GMF with weights learned on a *separate* set: the candidates of the other
    problems (``folds``-fold split of the problems, seeded). No labels are used."""
    problems = cands.problems()
    if len(problems) < folds:
        raise ConfigError(f"cross-calibration needs at least {folds} problems, got {len(problems)}")
    order = np.random.default_rng(seed).permutation(len(problems))
    fold_of = np.empty(len(problems), dtype=np.int64)
    fold_of[order] = np.arange(len(problems)) % folds
    out = np.full(len(cands), np.nan)
    for f in range(folds):
        train = np.concatenate([m for (_, m), k in zip(problems, fold_of) if k != f])
        test = np.concatenate([m for (_, m), k in zip(problems, fold_of) if k == f])
        tr = cache_index[train]
        weights = nex_api.learn(cache, params, np.unique(tr[tr >= 0]))
        gmf = nex_api.gmf_scores(cache, weights)
        ti = cache_index[test]
        ok = ti >= 0
        out[test[ok]] = gmf[ti[ok]]
    return out


@dataclass(frozen=True)
class SelectConfig(DictConfig):
    """How ``nex select`` scores candidates.

    rho, min_run:        NEX parameters (defaults: those of ``NexParams()``).
    deepconf_window:     DeepConf sliding-window size in tokens.
    n_boot, seed:        bootstrap resamples and the seed of bootstrap and cross-calibration split.
    calibration_weights: weights file for ``nex_gmf_calibrated``; else
    calibration_cache:   a separate cache to learn them on; else a 2-fold split of the problems.
    """

    rho: float = NexParams().rho
    min_run: int = NexParams().min_run
    deepconf_window: int = 2048
    n_boot: int = 2000
    seed: int = 0
    calibration_weights: str | None = None
    calibration_cache: str | None = None

    def __post_init__(self) -> None:
        if int(self.deepconf_window) < 1:
            raise ConfigError(f"--deepconf-window must be a positive number of tokens, got {self.deepconf_window}")
        if int(self.n_boot) < 1:
            raise ConfigError(f"--n-boot must be a positive number of resamples, got {self.n_boot}")
        if self.calibration_weights and self.calibration_cache:
            raise ConfigError("give --calibration-weights or --calibration-cache, not both")



def attach_nex_scores(
    cands: CandidateSet, cache: CacheArrays, cache_index: np.ndarray, config: SelectConfig, progress: bool = False
) -> CandidateSet:
    """Add ``nex_gmf`` (self-calibrated on each problem's candidates), ``nex_gmf_pooled``
    (self-calibrated on all candidates) and ``nex_gmf_calibrated`` (separate calibration) scores."""
    params = NexParams(rho=config.rho, min_run=config.min_run)
    self_cal = nex_self_calibrated(cands, cache, cache_index, params, "problem", progress)
    pooled = nex_self_calibrated(cands, cache, cache_index, params, "pool")
    if config.calibration_weights:
        from ..weights_io import load_weights

        calibrated = _scatter(nex_api.gmf_scores(cache, load_weights(config.calibration_weights)), cache_index)
    elif config.calibration_cache:
        from ..cache.reader import open_cache

        other = open_cache(config.calibration_cache)
        if other.scheme != cache.scheme:
            raise ConfigError(
                f"calibration cache {config.calibration_cache} packs keys as {other.scheme.name}, the candidates' cache as "
                f"{cache.scheme.name}: both must come from the same model"
            )
        calibrated = _scatter(nex_api.gmf_scores(cache, nex_api.learn(other, params)), cache_index)
    elif len(cands.problems()) >= 2:
        calibrated = nex_cross_calibrated(cands, cache, cache_index, params, seed=config.seed)
    else:  # one problem and no separate set: nothing to calibrate on (the method is reported as skipped)
        return cands.with_scores(nex_gmf=self_cal, nex_gmf_pooled=pooled)
    return cands.with_scores(nex_gmf=self_cal, nex_gmf_pooled=pooled, nex_gmf_calibrated=calibrated)


def load_candidates(
    cache: CacheArrays | str | Path, responses: str | Path | None = None, progress: bool = False,
    config: SelectConfig | None = None, with_nex: bool = True, **row_options,
) -> tuple[CandidateSet, CacheArrays, np.ndarray]:
    """(scored candidate set, cache, cache index per candidate) from a cache (opened, or its path)
    and a responses file.

    Without ``responses`` the cache's own ``responses.jsonl`` (what capture recorded per response)
    is the candidate list. ``row_options`` go to :func:`~nex_interp.selection.candidates.candidates_from_rows`.
    """
    from ..cache.reader import as_cache
    from .candidates import read_responses

    config = config or SelectConfig()
    cache = as_cache(cache)
    where = cache.path if cache.path is not None else "(in memory)"
    meta = cache.response_meta
    if responses is not None:
        rows, source = read_responses(responses), str(responses)
    elif meta:
        rows, source = meta, str(Path(cache.path) / "responses.jsonl") if cache.path is not None else "the cache's metadata"
    else:
        raise ConfigError(f"cache {where} records no per-response metadata: pass --responses with the responses file")
    cands = candidates_from_rows(rows, source=source, **row_options)
    index = align_to_cache(cands, meta, cache.n_responses)
    if (index < 0).all():
        raise ConfigError(f"none of the {len(cands)} responses in {source} is in cache {where}: the ids do not match")
    cands = attach_token_stats(cands, cache, index)
    if with_nex:
        cands = attach_nex_scores(cands, cache, index, config, progress)
    return dataclasses.replace(cands, meta={**cands.meta, "cache": str(where), "n_missing_in_cache": int((index < 0).sum())}), cache, index


def select_best_of_n(
    cache: CacheArrays | str | Path, responses: str | Path | None = None, methods: list[str] | None = None,
    config: SelectConfig | None = None, progress: bool = False, **row_options,
):
    """Load, score and evaluate the candidates of ``cache`` (opened, or its path): returns
    (:class:`~nex_interp.selection.best_of_n.SelectionReport`, CandidateSet)."""
    from .best_of_n import run_best_of_n
    from .registry import SelectionOptions

    from .registry import get_method

    config = config or SelectConfig()
    needs_nex = methods is None or any(r.startswith("score:nex_") for m in methods for r in get_method(m).requires)
    cands, _, _ = load_candidates(cache, responses, progress, config, with_nex=needs_nex, **row_options)
    report = run_best_of_n(cands, methods, SelectionOptions(config.deepconf_window), n_boot=config.n_boot, seed=config.seed)
    return report, cands


def cache_row_tokens(cache: CacheArrays, response: int) -> np.ndarray:
    """Token count of each cache row of ``response``, as the cache cut them."""
    start, stop = cache.response_rows(response)
    return np.diff(np.asarray(cache.token_row_ptr[start : stop + 1], dtype=np.int64))


def candidate_entropy_rows(
    cands: CandidateSet, cache: CacheArrays, cache_index: np.ndarray, row_tokens: int | None = None
) -> list[tuple[np.ndarray, np.ndarray | int]]:
    """``(per-token entropy, rows)`` of each candidate that has per-token entropies (the others are
    left out), for :func:`~nex_interp.selection.baselines.row_mean_entropies`: ``rows`` is the token
    count of each row as the cache cut that response (``row_tokens`` None), else ``row_tokens``.
    Rows that do not cover the response's tokens are an error (the cache is inconsistent)."""
    from . import baselines

    out = []
    for e, k in zip(cands.token_stats.get(ENTROPY) or [], cache_index):
        if e is None:
            continue
        rows = cache_row_tokens(cache, int(k)) if row_tokens is None else int(row_tokens)
        try:
            baselines.row_mean_entropies(e, rows)
        except ValueError as err:
            raise CacheError(f"response {int(k)} of the cache: {err}: its rows and its tokens stream disagree; re-run capture") from None
        out.append((e, rows))
    return out


def variant_metrics(
    variants: dict[str, CacheArrays | str | Path], params=None, entropy_threshold: float | None = None, row_tokens: int | None = None,
    progress: bool = False, responses: dict[str, str | Path] | None = None, **row_options,
):
    """Per-variant label-free metrics and accuracy, one row per variant (pandas DataFrame);
    ``variants`` maps a name to its cache (opened, or its path).

    Columns: ``variant, n_responses, accuracy`` (from the responses' correctness, NaN if unknown),
    ``nex_score`` (mean GMF, weights self-calibrated on the variant's cache), ``mean_entropy``,
    ``mean_length``, ``self_certainty`` (averaged over responses) and ``high_entropy_rows`` (the
    entropy exploration proxy: mean number of rows whose mean token entropy exceeds
    ``entropy_threshold``; rows are the cache's own rows, or blocks of ``row_tokens`` tokens when
    given; default threshold: the 75th percentile of all variants' row entropies pooled, a
    label-free reference shared by all variants). Returns ``(frame, candidate sets by variant,
    threshold used)``. ``responses`` maps a variant to its responses file (text for grading;
    capture does not store the text), else the cache's metadata is used.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from . import baselines
    from .ranking import per_variant_baselines

    cands_by, nex, ent_rows = {}, {}, {}
    for name, cache in tqdm(list(variants.items()), desc="variants", unit="variant", disable=not progress):
        cands, cache, index = load_candidates(cache, (responses or {}).get(name), with_nex=False, **row_options)
        cands_by[name] = cands
        nex[name] = _nanmean(nex_api.self_calibrated_gmf(cache, params))
        ent_rows[name] = candidate_entropy_rows(cands, cache, index, row_tokens)
    base = per_variant_baselines(cands_by)
    if entropy_threshold is None:
        pooled = [baselines.row_mean_entropies(e, r) for er in ent_rows.values() for e, r in er]
        pooled = np.concatenate(pooled) if pooled else np.zeros(0)
        entropy_threshold = float(np.nanquantile(pooled, 0.75)) if pooled.size else float("nan")
    rows = []
    for name, c in cands_by.items():
        acc = float(np.nanmean(c.correct)) if c.correct is not None else float("nan")
        her = [baselines.high_entropy_rows(e, r, entropy_threshold) for e, r in ent_rows[name]]
        rows.append({
            "variant": name, "n_responses": len(c), "accuracy": acc, "nex_score": nex[name],
            "mean_entropy": base["mean_entropy"][name], "mean_length": base["mean_length"][name],
            "self_certainty": base["self_certainty"][name],
            "high_entropy_rows": float(np.mean(her)) if her else float("nan"),
        })
    return pd.DataFrame(rows), cands_by, entropy_threshold


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


#: the label-free metrics `rank_variants` correlates with accuracy (those a variant set lacks are left out)
RANKED_METRICS = ("nex_score", "high_entropy_rows", "mean_entropy", "mean_length", "self_certainty")


@dataclass
class VariantRanking:
    """What :func:`rank_variants` found: ``variants`` (one row per variant, the columns of
    :func:`variant_metrics`), ``ranking`` (one row per metric: correlations with accuracy, Regret@1,
    top-1 hit), the candidate sets by variant and the entropy threshold used."""

    variants: "object"
    ranking: "object"
    candidates: dict
    entropy_threshold: float


def rank_variants(
    variants: dict[str, CacheArrays | str | Path], accuracy: dict[str, float] | None = None, params=None,
    entropy_threshold: float | None = None, progress: bool = False, responses: dict[str, str | Path] | None = None,
    **row_options,
) -> VariantRanking:
    """Rank model variants without labels: each variant's NEX score (self-calibrated) and the
    output-side baselines (:func:`variant_metrics`), each correlated with the variants' accuracy
    (:func:`~nex_interp.selection.ranking.rank_all`). ``accuracy`` maps every variant to its accuracy;
    without it, accuracy comes from the responses' correctness (an error where a variant has none)."""
    from .ranking import rank_all

    if len(variants) < 2:
        raise ConfigError(f"ranking needs at least two variants, got {len(variants)}")
    frame, cands_by, threshold = variant_metrics(variants, params, entropy_threshold, progress=progress,
                                                 responses=responses, **row_options)
    if accuracy is not None:
        missing = [v for v in variants if v not in accuracy]
        if missing:
            raise ConfigError(f"no accuracy given for variant(s) {', '.join(missing)}")
        frame["accuracy"] = [float(accuracy[v]) for v in frame["variant"]]
    if frame["accuracy"].isna().any():
        bad = ", ".join(frame.loc[frame["accuracy"].isna(), "variant"])
        raise ConfigError(f"no accuracy for variant(s) {bad}: give accuracies or caches whose responses carry 'correct' or a reference answer")
    acc = dict(zip(frame["variant"], frame["accuracy"]))
    metrics = {m: dict(zip(frame["variant"], frame[m])) for m in RANKED_METRICS if frame[m].notna().any()}
    return VariantRanking(frame, rank_all(metrics, acc), cands_by, threshold)
