"""Sensitivity: how NEX scores and rankings move with ``rho``, ``min_run``, row size and activation rule.

A sweep scores every variant's cache under each setting and compares with the default setting
(the ``rho`` and ``min_run`` of ``NexParams()``, :class:`nex_interp.core.NexParams`'s defaults; row
size as captured; the first activation rule):

* row size: rows are re-cut by merging ``m`` adjacent rows of a response (:func:`merge_rows`): the
  merged row holds the union of the neurons with their masses summed and spans the summed tokens,
  exactly what capturing with ``m`` times the row size records (base vectors are unchanged);
* activation rule: several caches of the same responses captured with different ``--rule``
  (labelled by their manifests or on the command line).

Design ``oat`` (default) varies one factor at a time around the default; ``grid`` crosses them all.
For each setting the table reports every variant's NEX score, the largest change of a score from
the default, the rank correlation of per-response GMF with the default's (Spearman, pooled over
variants), the variant ranking's Kendall tau against the default's and whether the top variant
is unchanged, and, when accuracies are known, Pearson r and Regret@1 against accuracy.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import stats
from .atomic import atomic_path
from .cache.arrays import CacheArrays
from .errors import ConfigError
from .provenance import record, write_sidecar

FLOAT16_MAX = float(np.finfo(np.float16).max)


def merge_rows(cache: CacheArrays, multiple: int) -> CacheArrays:
    """The cache re-cut into rows of ``multiple`` consecutive rows of each response (the last may be
    shorter). Masses of a neuron are summed across the merged rows (non-finite and negative
    masses count as 0, as the sanitiser would read them) and stored as float16, clipped to its range.

    >>> from nex_interp.keys import KeyScheme
    >>> c = CacheArrays(np.array([0, 3]), np.array([0, 2, 3, 4]), np.array([0, 32, 64, 80]),
    ...                 np.array([5, 7, 5, 9], np.uint32), np.array([1, 2, 3, 4], np.float16),
    ...                 np.array([0, 0]), np.zeros(0, np.uint32), np.zeros(0, np.float16))
    >>> m = merge_rows(c, 2)
    >>> m.row_ptr.tolist(), m.keys.tolist(), m.mass.tolist(), np.diff(m.token_row_ptr).tolist()
    ([0, 2, 3], [5, 7, 9], [4.0, 2.0, 4.0], [64, 16])
    """
    multiple = int(multiple)
    if multiple < 1:
        raise ConfigError(f"row multiple must be a positive integer, got {multiple}")
    if multiple == 1:
        return cache
    srp = np.asarray(cache.sample_row_ptr, dtype=np.int64)
    counts = np.diff(srp)
    n_rows = int(srp[-1])
    row_resp = np.repeat(np.arange(len(counts)), counts)
    local = np.arange(n_rows, dtype=np.int64) - srp[row_resp]
    new_counts = -(-counts // multiple)
    new_srp = np.concatenate([[0], np.cumsum(new_counts)]).astype(np.int64)
    new_of_old = new_srp[row_resp] + local // multiple
    n_new = int(new_srp[-1])
    tokens = np.diff(np.asarray(cache.token_row_ptr, dtype=np.int64))[:n_rows]
    new_tokens = np.bincount(new_of_old, weights=tokens, minlength=n_new).astype(np.int64)

    row_ptr = np.asarray(cache.row_ptr, dtype=np.int64)
    n_ent = int(row_ptr[n_rows])
    entry_row = np.repeat(np.arange(n_rows), np.diff(row_ptr[: n_rows + 1]))
    new_row = new_of_old[entry_row]
    keys = np.asarray(cache.keys[:n_ent])
    mass = np.asarray(cache.mass[:n_ent]).astype(np.float64)
    mass[~np.isfinite(mass) | (mass < 0)] = 0.0
    order = np.lexsort((keys, new_row))
    k_sorted, r_sorted, m_sorted = keys[order], new_row[order], mass[order]
    start = np.ones(len(order), dtype=bool)
    if len(order):
        start[1:] = (k_sorted[1:] != k_sorted[:-1]) | (r_sorted[1:] != r_sorted[:-1])
    first = np.flatnonzero(start)
    summed = np.add.reduceat(m_sorted, first) if len(first) else np.zeros(0)
    out_keys = k_sorted[first]
    out_rows = r_sorted[first]
    out_row_ptr = np.concatenate([[0], np.cumsum(np.bincount(out_rows, minlength=n_new))]).astype(np.int64)
    return CacheArrays(
        sample_row_ptr=new_srp,
        row_ptr=out_row_ptr,
        token_row_ptr=np.concatenate([[0], np.cumsum(new_tokens)]).astype(np.int64),
        keys=out_keys.astype(keys.dtype),
        mass=np.minimum(summed, FLOAT16_MAX).astype(np.float16),
        base_ptr=cache.base_ptr,
        base_keys=cache.base_keys,
        base_mass=cache.base_mass,
        scheme=cache.scheme,
        manifest={**cache.manifest, "row_multiple": multiple},
    )


@dataclass(frozen=True)
class SweepInput:
    """One cache in a sweep: the variant (model) it belongs to and the activation rule it was captured with."""

    variant: str
    rule: str
    cache: CacheArrays
    path: str = ""


@dataclass(frozen=True)
class Setting:
    """One point of the sweep."""

    rule: str
    row_multiple: int
    rho: float
    min_run: int


@dataclass(frozen=True)
class SweepSpec:
    """What to vary: the grid of values swept for each factor (``rhos``, ``min_runs``,
    ``row_multiples``; the defaults bracket ``NexParams()``'s values and the captured row size).
    ``design``: ``oat`` (one factor at a time around the default setting) or ``grid``. The default
    setting itself always comes from ``NexParams()``, whatever the grids hold."""

    rhos: tuple[float, ...] = (0.9, 0.95, 0.99)
    min_runs: tuple[int, ...] = (1, 2, 3)
    row_multiples: tuple[int, ...] = (1, 2, 4)
    design: str = "oat"

    def settings(self, rules: Sequence[str]) -> list[Setting]:
        """The settings to run, default first."""
        from .core import NexParams

        d = NexParams()
        default = Setting(rules[0], 1, d.rho, d.min_run)
        if self.design == "grid":
            pts = [Setting(r, m, rho, mr) for r, m, rho, mr in itertools.product(rules, self.row_multiples, self.rhos, self.min_runs)]
        elif self.design == "oat":
            pts = [Setting(r, 1, d.rho, d.min_run) for r in rules]
            pts += [Setting(rules[0], m, d.rho, d.min_run) for m in self.row_multiples]
            pts += [Setting(rules[0], 1, rho, d.min_run) for rho in self.rhos]
            pts += [Setting(rules[0], 1, d.rho, mr) for mr in self.min_runs]
        else:
            raise ConfigError(f"sweep design must be 'oat' or 'grid', got {self.design!r}")
        out = [default]
        for p in pts:
            if p not in out:
                out.append(p)
        return out


@dataclass(frozen=True)
class SweepResult:
    """Per-setting summary table, per-(setting, variant) scores, and the inputs' description."""

    table: "object"  # pandas DataFrame, one row per setting
    scores: "object"  # pandas DataFrame, one row per (setting, variant)
    variants: list[str]
    rules: list[str]
    accuracy: dict[str, float] = field(default_factory=dict)


def _top(variants: list[str], scores: np.ndarray) -> str:
    """The best-scoring variant; tied variants joined by '='; '' when no score is defined."""
    if not np.isfinite(scores).any():
        return ""
    best = np.nanmax(scores)
    return "=".join(v for v, s in zip(variants, scores) if s == best)


def run_sweep(
    inputs: Sequence[SweepInput], spec: SweepSpec | None = None, accuracy: dict[str, float] | None = None, progress: bool = True
) -> SweepResult:
    """Self-calibrate and score every variant under every setting of ``spec``; compare with the default."""
    import pandas as pd
    from tqdm.auto import tqdm

    from .core import NexParams
    from .selection import nex_api
    from .selection.ranking import rank_metric

    spec = spec or SweepSpec()
    if not inputs:
        raise ConfigError("a sweep needs at least one cache")
    variants = list(dict.fromkeys(i.variant for i in inputs))
    rules = list(dict.fromkeys(i.rule for i in inputs))
    by_key = {}
    for i in inputs:
        if (i.variant, i.rule) in by_key:
            raise ConfigError(f"two caches for variant {i.variant!r} with rule {i.rule!r}: label them VARIANT@RULE=PATH")
        by_key[(i.variant, i.rule)] = i
    missing = [(v, r) for v in variants for r in rules if (v, r) not in by_key]
    if missing:
        v, r = missing[0]
        raise ConfigError(f"variant {v!r} has no cache for rule {r!r}: give every variant a cache for every rule")
    n_resp = {v: by_key[(v, rules[0])].cache.n_responses for v in variants}
    for (v, r), i in by_key.items():
        if i.cache.n_responses != n_resp[v]:
            raise ConfigError(f"caches of variant {v!r} hold different numbers of responses across rules: capture the same responses")
    accuracy = dict(accuracy or {})
    settings = spec.settings(rules)
    rerowed: dict[tuple[str, str, int], CacheArrays] = {}
    score_rows, table_rows = [], []
    default_gmf: dict[str, np.ndarray] = {}
    default_scores: np.ndarray | None = None
    default_top = ""
    for s in tqdm(settings, desc="sensitivity sweep", unit="setting", disable=not progress):
        params = NexParams(rho=s.rho, min_run=s.min_run)
        scores = np.full(len(variants), np.nan)
        gmfs = {}
        for k, v in enumerate(variants):
            key = (v, s.rule, s.row_multiple)
            if key not in rerowed:
                rerowed[key] = merge_rows(by_key[(v, s.rule)].cache, s.row_multiple)
            g = nex_api.self_calibrated_gmf(rerowed[key], params)
            gmfs[v] = g
            fin = g[np.isfinite(g)]
            scores[k] = float(fin.mean()) if fin.size else float("nan")
            score_rows.append({**asdict(s), "variant": v, "nex_score": scores[k], "n_scored": int(fin.size)})
        if default_scores is None:
            default_scores, default_gmf = scores.copy(), gmfs
            default_top = _top(variants, scores)
        pooled_now = np.concatenate([gmfs[v] for v in variants])
        pooled_def = np.concatenate([default_gmf[v] for v in variants])
        top = _top(variants, scores)
        row = {
            **asdict(s),
            "is_default": s == settings[0],
            "mean_nex_score": float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan"),
            "max_abs_change": float(np.nanmax(np.abs(scores - default_scores))) if np.isfinite(scores - default_scores).any() else float("nan"),
            "gmf_spearman_vs_default": stats.spearman(pooled_now, pooled_def),
            "top_variant": top,
            "same_top_as_default": top == default_top,
            "ranking_kendall_vs_default": stats.kendall(scores, default_scores) if len(variants) > 1 else float("nan"),
        }
        if accuracy and len(variants) > 1:
            r = rank_metric("nex_score", dict(zip(variants, scores)), {v: accuracy[v] for v in variants}, higher_is_better=True)
            row.update(pearson_r=r.pearson_r, regret_at_1=r.regret_at_1)
        for v, sc in zip(variants, scores):
            row[f"nex[{v}]"] = sc
        table_rows.append(row)
    return SweepResult(pd.DataFrame(table_rows), pd.DataFrame(score_rows), variants, rules, accuracy)


def markdown_table(df, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured markdown table of a DataFrame (no extra dependency)."""

    def cell(x) -> str:
        if isinstance(x, (bool, np.bool_)):
            return "yes" if x else "no"
        if isinstance(x, (float, np.floating)):
            return "" if not np.isfinite(x) else format(float(x), floatfmt)
        return str(x).replace("|", "\\|")

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(x) for x in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def write_sweep(result: SweepResult, out_dir: str | Path, config: dict | None = None, inputs: dict | None = None) -> dict[str, Path]:
    """Write ``sweep.csv``, ``sweep_scores.csv`` and ``sweep.md`` in ``out_dir`` (atomically, with provenance)."""
    out_dir = Path(out_dir)
    rec = record("sweep", config=config, inputs=inputs or {}, variants=result.variants, rules=result.rules, accuracy=result.accuracy)
    paths = {"table": out_dir / "sweep.csv", "scores": out_dir / "sweep_scores.csv", "markdown": out_dir / "sweep.md"}
    for key, df in (("table", result.table), ("scores", result.scores)):
        with atomic_path(paths[key]) as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
        write_sidecar(paths[key], rec)
    d = result.table.iloc[0]
    text = (
        "# NEX sensitivity sweep\n\n"
        f"Variants: {', '.join(result.variants)}. Activation rules: {', '.join(result.rules)}. "
        f"First row: the default setting (rho {d['rho']:g}, min_run {d['min_run']}, row size as captured).\n\n"
        + markdown_table(result.table)
    )
    with atomic_path(paths["markdown"]) as tmp:
        tmp.write_text(text)
    write_sidecar(paths["markdown"], rec)
    return paths
