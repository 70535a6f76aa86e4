"""Sensitivity: how NEX scores and rankings move with ``rho``, ``min_run``, row size and activation rule.

A sweep scores every variant's cache under each setting and compares with the default setting
(the ``rho`` and ``min_run`` of ``NexParams()``, :class:`nex_interp.core.NexParams`'s defaults; row
size as captured; the first activation rule):

* row size: rows are re-cut by merging ``m`` adjacent rows of a response (:func:`nex_interp.cache.ops.merge_rows`): the
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
from .cache.ops import merge_rows  # noqa: F401  (its home is nex_interp.cache.ops; kept importable here)
from .config_dict import DictConfig
from .errors import ConfigError
from .provenance import record, write_sidecar



@dataclass(frozen=True)
class SweepInput:
    """One cache in a sweep: the variant (model) it belongs to and the activation rule it was captured
    with (:func:`sweep_input` fills them in from the cache's manifest)."""

    variant: str
    rule: str
    cache: CacheArrays
    path: str = ""  # where the cache lies (default: the cache's own path)

    def __post_init__(self) -> None:
        if not self.path and self.cache.path is not None:
            object.__setattr__(self, "path", str(self.cache.path))


def sweep_input(cache: CacheArrays | str | Path, variant: str | None = None, rule: str | None = None) -> SweepInput:
    """A sweep input from a cache (opened, or its path): the variant and rule default to what its
    manifest records (the model's spec or path, the rule's spec or kind), else the directory name
    and ``default``."""
    from .cache.reader import as_cache

    c = as_cache(cache)
    m = c.manifest
    model = m.get("model")
    model_name = (model.get("spec") or model.get("path")) if isinstance(model, dict) else model
    rule_m = m.get("rule")
    rule_name = (rule_m.get("spec") or rule_m.get("kind")) if isinstance(rule_m, dict) else rule_m
    where = str(c.path) if c.path is not None else ""
    name = variant or str(model_name or (Path(where).name if where else "variant"))
    return SweepInput(name, rule or str(rule_name or "default"), c, where)


def accuracy_from_caches(inputs: Sequence[SweepInput]) -> dict[str, float]:
    """Each variant's accuracy from its caches' own response metadata, when every response of every
    variant is graded (``correct`` or a reference answer); else ``{}``."""
    from .selection.candidates import candidates_from_rows

    accuracy: dict[str, float] = {}
    for i in inputs:
        meta = i.cache.response_meta
        if meta and all("problem_id" in r for r in meta):
            c = candidates_from_rows(meta, source=i.path or i.variant)
            if c.correct is not None and not np.isnan(c.correct).any():
                accuracy.setdefault(i.variant, float(np.mean(c.correct)))
    return accuracy if set(accuracy) == {i.variant for i in inputs} else {}


@dataclass(frozen=True)
class Setting:
    """One point of the sweep."""

    rule: str
    row_multiple: int
    rho: float
    min_run: int


@dataclass(frozen=True)
class SweepSpec(DictConfig):
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
