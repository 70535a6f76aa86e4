"""Model ranking: how well a label-free score orders model variants by their real accuracy.

For each metric (NEX and the baselines) over the same variants: Pearson, Spearman and Kendall
correlation between the metric and accuracy (raw, not sign-flipped: a lower-is-better metric that
predicts well shows a negative correlation), Regret@1 (accuracy of the best variant minus accuracy
of the variant the metric ranks first, in its stated direction) and top-1 hit (1 if that variant
is a most accurate one). Ties for first place are resolved in expectation (mean over the tied).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from .. import stats
from ..errors import ConfigError

#: which way each built-in ranking metric is read when choosing a variant (True: higher is better)
DEFAULT_DIRECTIONS: dict[str, bool] = {
    "nex_score": True,  # mean GMF
    "high_entropy_rows": True,  # exploration proxy read as "more exploration is better" (the view the inverted U refutes)
    "mean_entropy": False,  # confidence view: lower mean entropy is better
    "mean_length": True,  # longer reasoning is better (test-time scaling view)
    "self_certainty": True,
    "mean_e_segments": True,
}

RANKING_COLUMNS = ("metric", "higher_is_better", "pearson_r", "spearman_rho", "kendall_tau", "regret_at_1", "top1_hit", "n_variants", "picked")


@dataclass(frozen=True)
class RankingResult:
    """How well one metric ranks the variants."""

    metric: str
    higher_is_better: bool
    pearson_r: float
    spearman_rho: float
    kendall_tau: float
    regret_at_1: float
    top1_hit: float
    n_variants: int
    picked: str


def regret_at_1(scores: np.ndarray, accuracy: np.ndarray, higher_is_better: bool = True) -> tuple[float, float, int]:
    """(Regret@1, top-1 hit, index of a first-ranked variant); NaN scores never rank first.

    >>> regret_at_1(np.array([0.9, 0.5, 0.7]), np.array([0.6, 0.8, 0.7]))
    (0.2, 0.0, 0)
    """
    s = np.asarray(scores, dtype=np.float64)
    a = np.asarray(accuracy, dtype=np.float64)
    ok = np.isfinite(s) & np.isfinite(a)
    if not ok.any():
        return float("nan"), float("nan"), -1
    s = s if higher_is_better else -s
    top = s[ok].max()
    first = np.flatnonzero(ok & (s == top))
    best = a[np.isfinite(a)].max()
    regret = float(np.mean(best - a[first]))
    hit = float(np.mean(a[first] == best))
    return round(regret, 12), hit, int(first[0])


def rank_metric(
    metric: str, scores: Mapping[str, float], accuracy: Mapping[str, float], higher_is_better: bool | None = None
) -> RankingResult:
    """Rank the variants of ``accuracy`` by ``scores`` (same variant names) and compare with accuracy."""
    if higher_is_better is None:
        if metric not in DEFAULT_DIRECTIONS:
            raise ConfigError(f"ranking metric {metric!r} has no known direction: pass higher_is_better")
        higher_is_better = DEFAULT_DIRECTIONS[metric]
    missing = [v for v in accuracy if v not in scores]
    if missing:
        raise ConfigError(f"ranking metric {metric!r} has no score for variant(s) {', '.join(map(str, missing))}")
    names = list(accuracy)
    s = np.asarray([scores[v] for v in names], dtype=np.float64)
    a = np.asarray([accuracy[v] for v in names], dtype=np.float64)
    ok = np.isfinite(s) & np.isfinite(a)
    regret, hit, first = regret_at_1(s, a, higher_is_better)
    return RankingResult(
        metric=metric,
        higher_is_better=bool(higher_is_better),
        pearson_r=stats.pearson(s, a),
        spearman_rho=stats.spearman(s, a),
        kendall_tau=stats.kendall(s, a),
        regret_at_1=regret,
        top1_hit=hit,
        n_variants=int(ok.sum()),
        picked=names[first] if first >= 0 else "",
    )


def rank_all(
    metric_scores: Mapping[str, Mapping[str, float]],
    accuracy: Mapping[str, float],
    directions: Mapping[str, bool] | None = None,
):
    """A DataFrame with one :class:`RankingResult` row per metric (columns :data:`RANKING_COLUMNS`)."""
    import pandas as pd

    directions = {**DEFAULT_DIRECTIONS, **(directions or {})}
    rows = []
    for metric, scores in metric_scores.items():
        r = rank_metric(metric, scores, accuracy, directions.get(metric))
        rows.append({c: getattr(r, c) for c in RANKING_COLUMNS})
    return pd.DataFrame(rows, columns=list(RANKING_COLUMNS))


def per_variant_baselines(variant_cands: Mapping[str, "object"]) -> dict[str, dict[str, float]]:
    """Output-side ranking baselines averaged per variant, from each variant's CandidateSet:
    ``mean_entropy`` (mean over responses of mean token entropy), ``mean_length`` (mean response
    tokens) and ``self_certainty`` (mean over responses). A metric a variant lacks is NaN."""
    from . import baselines
    from .token_inputs import ENTROPY, VOCAB_MEAN_LOGPROB

    out: dict[str, dict[str, float]] = {"mean_entropy": {}, "mean_length": {}, "self_certainty": {}}
    for name, c in variant_cands.items():
        ent = c.token_stats.get(ENTROPY)
        out["mean_entropy"][name] = _nanmean([baselines.mean_entropy(e) for e in ent if e is not None]) if ent else math.nan
        out["mean_length"][name] = _nanmean(c.n_tokens) if c.n_tokens is not None else math.nan
        voc = c.token_stats.get(VOCAB_MEAN_LOGPROB)
        vs = c.meta.get("vocab_size")
        out["self_certainty"][name] = (
            _nanmean([baselines.self_certainty(x, int(vs)) for x in voc if x is not None]) if voc and vs else math.nan
        )
    return out


def _nanmean(xs) -> float:
    a = np.asarray(list(xs), dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


def read_accuracy(path: str | Path) -> dict[str, float]:
    """Variant accuracies from a JSON object ``{variant: accuracy}`` or a CSV with ``variant, accuracy``."""
    import json

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"accuracy file {p} not found")
    if p.suffix == ".json":
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"accuracy file {p} is not valid JSON ({e.msg})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"accuracy file {p} must hold an object {{variant: accuracy}}")
        try:
            return {str(k): float(v) for k, v in data.items()}
        except (TypeError, ValueError):
            raise ConfigError(f"accuracy file {p}: every accuracy must be a number") from None
    import pandas as pd

    try:
        df = pd.read_csv(p)
    except Exception as e:  # pandas raises many types for a malformed CSV
        raise ConfigError(f"accuracy file {p} is not a readable CSV ({type(e).__name__})") from None
    if not {"variant", "accuracy"} <= set(df.columns):
        raise ConfigError(f"accuracy file {p} needs columns 'variant' and 'accuracy'")
    return {str(v): float(a) for v, a in zip(df["variant"], df["accuracy"])}
