"""Turn per-problem correctness into the results table, the dose-response plot and the summary.

Each evaluated *unit* (one condition, one k, one random seed) has a 0/1 correctness vector over the
same problems as the untouched recipient. A condition's ``delta`` is its mean paired difference
from the untouched recipient; ``ci_low``/``ci_high`` are the percentile bootstrap interval of that
delta, resampling problems (the same resample for both arms: paired). Random sets are pooled over
their seeds by averaging each problem's correctness over the seeds first.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nex_interp.atomic import atomic_path
from nex_interp.stats import bootstrap_mean_ci

RESULT_COLUMNS = ("condition", "k", "accuracy", "delta", "ci_low", "ci_high", "n")
#: rows that are not interventions: the untouched recipient (delta 0) and the donor
REFERENCE_CONDITIONS = ("recipient", "donor")


@dataclass(frozen=True)
class ResultRow:
    """One line of ``results.csv``."""

    condition: str
    k: int
    accuracy: float
    delta: float
    ci_low: float
    ci_high: float
    n: int


def paired_row(condition: str, k: int, correct: np.ndarray, baseline: np.ndarray, n_boot: int, seed: int = 0) -> ResultRow:
    """Accuracy of ``correct`` and its paired bootstrap delta against ``baseline`` (same problems)."""
    correct = np.asarray(correct, dtype=np.float64)
    baseline = np.asarray(baseline, dtype=np.float64)
    if correct.shape != baseline.shape:
        raise ValueError(f"{condition} k={k}: {correct.shape} results against a baseline of {baseline.shape}")
    ci = bootstrap_mean_ci(correct - baseline, n_boot=n_boot, seed=seed)
    return ResultRow(condition, int(k), float(correct.mean()), ci.estimate, ci.low, ci.high, int(correct.size))


def aggregate(units: dict[tuple[str, int, int | None], np.ndarray], baseline: np.ndarray, n_boot: int) -> list[ResultRow]:
    """Result rows from ``{(condition, k, seed or None): correctness}``; random seeds are pooled."""
    rows = [paired_row("recipient", 0, baseline, baseline, n_boot)]
    if ("donor", 0, None) in units:
        rows.append(paired_row("donor", 0, units[("donor", 0, None)], baseline, n_boot))
    order = {"effective": 0, "redundant": 1, "random": 2}
    for (cond, k), c in sorted(_pooled(units).items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][1])):
        rows.append(paired_row(cond, k, c, baseline, n_boot))
    return rows


def _pooled(units: dict[tuple[str, int, int | None], np.ndarray]) -> dict[tuple[str, int], np.ndarray]:
    """Per-problem correctness of each (condition, k) of the sets, random seeds averaged per problem."""
    grouped: dict[tuple[str, int], list[np.ndarray]] = {}
    for (cond, k, _seed), c in sorted(units.items(), key=lambda kv: (kv[0][0], kv[0][1], -1 if kv[0][2] is None else kv[0][2])):
        if cond not in REFERENCE_CONDITIONS:
            grouped.setdefault((cond, k), []).append(np.asarray(c, dtype=np.float64))
    return {key: np.mean(cs, axis=0) for key, cs in grouped.items()}


@dataclass(frozen=True)
class Contrast:
    """The effective set against another set of the same size: the mean per-problem difference in
    correctness (effective minus ``versus``) with its paired percentile bootstrap interval."""

    k: int
    versus: str
    difference: float
    ci_low: float
    ci_high: float
    n: int


def contrasts(units: dict[tuple[str, int, int | None], np.ndarray], n_boot: int) -> list[Contrast]:
    """Effective vs random (seeds averaged per problem) and effective vs redundant, per k: does the
    effective set move accuracy more than the other sets, problem by problem (the same resample
    of problems for both arms)."""
    pooled = _pooled(units)
    out = []
    for (cond, k), eff in sorted(pooled.items(), key=lambda kv: kv[0][1]):
        if cond != "effective":
            continue
        for other in ("random", "redundant"):
            if (other, k) in pooled:
                ci = bootstrap_mean_ci(eff - pooled[(other, k)], n_boot=n_boot)
                out.append(Contrast(int(k), other, ci.estimate, ci.low, ci.high, int(eff.size)))
    return out


def results_csv_text(rows: list[ResultRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RESULT_COLUMNS)
    for r in rows:
        w.writerow((r.condition, r.k, f"{r.accuracy:.6g}", f"{r.delta:.6g}", f"{r.ci_low:.6g}", f"{r.ci_high:.6g}", r.n))
    return buf.getvalue()


def write_results_csv(rows: list[ResultRow], path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(results_csv_text(rows))


def plot_results(rows: list[ResultRow], title: str = "", baseline: str = "recipient"):
    """The experiment's ``dose_response.png``: a matplotlib Figure of delta vs k per condition with
    the bootstrap intervals shaded, drawn by :func:`nex_interp.plots.plot_dose_response` from the
    result rows, plus the donor's own delta as a dashed line."""
    import pandas as pd

    from nex_interp.plots import plot_dose_response as plot_curve

    sets = [r for r in rows if r.condition not in REFERENCE_CONDITIONS]
    df = pd.DataFrame({"condition": [r.condition for r in sets], "k": [r.k for r in sets],
                       "delta": [r.delta for r in sets], "ci_low": [r.ci_low for r in sets],
                       "ci_high": [r.ci_high for r in sets]})
    ks = sorted(set(df["k"]))
    fig = plot_curve(df, logx=bool(ks) and max(ks) / max(min(ks), 1) >= 8, title=title or None)
    ax = fig.axes[0]
    donor = [r for r in rows if r.condition == "donor"]
    if donor:
        ax.axhline(donor[0].delta, color="tab:blue", lw=0.8, ls="--", label="donor")
        ax.legend(fontsize="small", title="condition")
    ax.set_xlabel("neurons in the set (k)")
    ax.set_ylabel(f"accuracy change vs untouched {baseline}")
    return fig
