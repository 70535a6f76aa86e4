"""Sample efficiency of NEX model ranking: how many unlabeled problems are enough?

As in the paper: for each ``N`` of a grid and each of several seeds, draw ``N`` problems (the same
draw for every variant), learn each variant's NEX weights on its responses to those problems
only, score the variant (mean GMF), and compare the variants' scores with their accuracy (Pearson
r, Regret@1, measured on all problems with the labels, which NEX never sees). An exponential
saturation ``y(N) = a - b * exp(-N / tau)`` is fitted (``scipy.optimize.curve_fit``) to the
per-seed points of each curve: ``a`` is the plateau, ``tau`` the number of problems it takes to
close ~63% of the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..atomic import atomic_path
from ..errors import ConfigError
from ..provenance import record, write_sidecar
from .ranking import rank_metric

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

    from ..cache.arrays import CacheArrays

SAMPLE_EFFICIENCY_COLUMNS = ("n_problems", "seed", "pearson_r", "regret_at_1")
DEFAULT_SEEDS = 10


@dataclass(frozen=True)
class Variant:
    """One model variant: its cache, the problem of each cached response, and its true accuracy.

    name:        variant name.
    cache:       its sparse activation cache (responses to the shared problems).
    problem_ids: problem id of each cache response, in cache order.
    accuracy:    accuracy on all problems (evaluation only).
    """

    name: str
    cache: "CacheArrays"
    problem_ids: Sequence[str]
    accuracy: float

    @classmethod
    def from_cache(cls, name: str, cache: "CacheArrays | str | Path", accuracy: float) -> "Variant":
        """The variant of a cache (opened, or its path) whose responses record their ``problem_id``."""
        from ..cache.reader import as_cache

        cache = as_cache(cache)
        meta = cache.response_meta
        if not meta or any("problem_id" not in m for m in meta):
            raise ConfigError(f"variant {name!r}: cache {cache.path} does not record each response's problem_id: give problem_ids")
        return cls(name, cache, [str(m["problem_id"]) for m in meta], accuracy)

    def __post_init__(self) -> None:
        if len(self.problem_ids) != self.cache.n_responses:
            raise ConfigError(
                f"variant {self.name!r}: {len(self.problem_ids)} problem ids for {self.cache.n_responses} cached responses"
            )


#: scorer(variant, response indices) -> the variant's NEX score from those responses
Scorer = Callable[[Variant, np.ndarray], float]


def nex_subset_scorer(params=None, score_on: str = "subset") -> Scorer:
    """Score a variant from a subset of its responses: learn weights on the subset, then take the mean
    GMF over the subset (``score_on="subset"``, nothing outside the N problems is used) or over all
    the variant's responses (``score_on="all"``)."""
    if score_on not in ("subset", "all"):
        raise ConfigError(f"score_on must be 'subset' or 'all', got {score_on!r}")
    from ..core import NexParams
    from . import nex_api

    params = params or NexParams()

    def score(variant: Variant, idx: np.ndarray) -> float:
        idx = np.unique(np.asarray(idx, dtype=np.int64))
        if score_on == "subset":  # learn and score on a view of just these responses
            g = nex_api.self_calibrated_gmf_of(variant.cache, idx, params)
        else:
            g = nex_api.self_calibrated_gmf(variant.cache, params, idx)
        g = g[np.isfinite(g)]
        return float(g.mean()) if g.size else float("nan")

    return score


def shared_problems(variants: Sequence[Variant]) -> list[str]:
    """Problems every variant answered, sorted."""
    if not variants:
        raise ConfigError("sample efficiency needs at least two variants")
    common = set(variants[0].problem_ids)
    for v in variants[1:]:
        common &= set(v.problem_ids)
    return sorted(common)


def sample_efficiency(
    variants: Sequence[Variant],
    grid: Sequence[int],
    seeds: int = DEFAULT_SEEDS,
    scorer: Scorer | None = None,
    seed: int = 0,
    progress: bool = True,
) -> "pd.DataFrame":
    """One row per (N, seed): ``n_problems, seed, pearson_r, regret_at_1`` (and ``spearman_rho``,
    ``kendall_tau``, ``top1_hit``). ``N`` larger than the shared problem pool is an error; at the
    full pool every seed draws the same set."""
    import pandas as pd
    from tqdm.auto import tqdm

    if len(variants) < 2:
        raise ConfigError(f"sample efficiency needs at least two variants, got {len(variants)}")
    pool = shared_problems(variants)
    bad = [n for n in grid if not 1 <= int(n) <= len(pool)]
    if bad:
        raise ConfigError(f"problem counts {bad} are outside 1..{len(pool)} (the problems every variant answered)")
    scorer = scorer or nex_subset_scorer()
    accuracy = {v.name: float(v.accuracy) for v in variants}
    pids = [np.asarray(v.problem_ids) for v in variants]
    rows = []
    jobs = [(int(n), s) for n in grid for s in range(seeds)]
    for n, s in tqdm(jobs, desc="sample efficiency", unit="draw", disable=not progress):
        rng = np.random.default_rng([seed, n, s])
        chosen = set(rng.choice(np.asarray(pool, dtype=object), size=n, replace=False).tolist())
        scores = {}
        for v, p in zip(variants, pids):
            idx = np.flatnonzero(np.isin(p, list(chosen)))
            scores[v.name] = scorer(v, idx)
        r = rank_metric("nex_score", scores, accuracy, higher_is_better=True)
        rows.append({"n_problems": n, "seed": s, "pearson_r": r.pearson_r, "regret_at_1": r.regret_at_1,
                     "spearman_rho": r.spearman_rho, "kendall_tau": r.kendall_tau, "top1_hit": r.top1_hit})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class SaturationFit:
    """Fit of ``y(N) = a - b * exp(-N / tau)`` with its R^2 over the points; ``ok`` False (and NaN
    parameters) when it failed. ``tau`` is bounded to [min N / 2, 10 max N]."""

    a: float
    b: float
    tau: float
    ok: bool
    message: str = ""
    n_points: int = 0
    r2: float = float("nan")

    def __call__(self, n: np.ndarray) -> np.ndarray:
        return self.a - self.b * np.exp(-np.asarray(n, dtype=np.float64) / self.tau)

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "tau": self.tau, "r2": self.r2, "ok": self.ok, "message": self.message,
                "n_points": self.n_points}


def _saturation(n, a, b, tau):
    return a - b * np.exp(-n / tau)


def fit_saturation(n: np.ndarray, y: np.ndarray) -> SaturationFit:
    """Least-squares fit of the exponential saturation to points ``(n, y)`` (NaNs dropped)."""
    from scipy.optimize import curve_fit

    n = np.asarray(n, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(n) & np.isfinite(y)
    n, y = n[ok], y[ok]
    nan = float("nan")
    if len(np.unique(n)) < 3:
        return SaturationFit(nan, nan, nan, False, "needs points at 3 or more distinct N", int(len(n)))
    order = np.argsort(n)
    lo = y[n == n[order[0]]].mean()
    hi = y[n == n[order[-1]]].mean()
    # tau is kept between half the smallest and ten times the largest N of the grid: outside that
    # range the curve is flat or a step over the sampled N and its parameters mean nothing
    tau_lo, tau_hi = float(n.min()) / 2.0, 10.0 * float(n.max())
    tau0 = float(np.clip(np.median(np.unique(n)), tau_lo, tau_hi))
    try:
        (a, b, tau), _ = curve_fit(
            _saturation, n, y, p0=(hi, hi - lo if hi != lo else 1e-3, tau0),
            bounds=([-np.inf, -np.inf, tau_lo], [np.inf, np.inf, tau_hi]), maxfev=20000,
        )
    except (RuntimeError, ValueError) as e:
        return SaturationFit(nan, nan, nan, False, f"curve_fit failed: {e}", int(len(n)))
    resid = y - _saturation(n, a, b, tau)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    return SaturationFit(float(a), float(b), float(tau), True, "", int(len(n)), r2)


def fit_curves(df: "pd.DataFrame") -> dict[str, SaturationFit]:
    """Saturation fits of ``pearson_r`` and ``regret_at_1`` against ``n_problems``."""
    return {col: fit_saturation(df["n_problems"].to_numpy(), df[col].to_numpy()) for col in ("pearson_r", "regret_at_1")}


def plot_sample_efficiency_fits(df: "pd.DataFrame", fits: dict[str, SaturationFit] | None = None) -> "Figure":
    """The figure ``sample_efficiency.png``: two panels, Pearson r and Regret@1 against N, each the
    mean over seeds with a 10-90% band (one :func:`nex_interp.plots.plot_sample_efficiency` curve)
    plus its exponential saturation fit (``fits``; default :func:`fit_curves` of ``df``)."""
    from matplotlib.figure import Figure

    from ..plots import plot_sample_efficiency as plot_curve

    fits = fits if fits is not None else fit_curves(df)
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, col, label in zip(axes, ("pearson_r", "regret_at_1"), ("Pearson r (NEX vs accuracy)", "Regret@1")):
        plot_curve(df, ax=ax, y=col, logx=False, title=label)
        fit = fits.get(col)
        if fit is not None and fit.ok:
            n = df["n_problems"].to_numpy(dtype=np.float64)
            xs = np.linspace(n.min(), n.max(), 200)
            ax.plot(xs, fit(xs), "--", color="0.3", label=f"fit: a={fit.a:.3g}, b={fit.b:.3g}, tau={fit.tau:.3g}")
            ax.legend(fontsize="small")
        ax.set_xlabel("unlabeled problems N")
        ax.set_ylabel(label)
    fig.suptitle("NEX ranking sample efficiency (seeds per N: mean, 10-90% band)")
    return fig


def write_sample_efficiency(df: "pd.DataFrame", out_dir: str | Path, config: dict | None = None, plot: bool = True) -> dict[str, Path]:
    """Write ``sample_efficiency.csv`` (and ``sample_efficiency.png``) in ``out_dir`` with provenance;
    the fits go into the CSV's sidecar (``fits``). Returns the written paths."""
    out_dir = Path(out_dir)
    fits = fit_curves(df)
    csv = out_dir / "sample_efficiency.csv"
    cols = list(SAMPLE_EFFICIENCY_COLUMNS) + [c for c in df.columns if c not in SAMPLE_EFFICIENCY_COLUMNS]
    with atomic_path(csv) as tmp:
        df[cols].to_csv(tmp, index=False, float_format="%.6g")
    rec = record("sample efficiency", config=config, fits={k: f.to_dict() for k, f in fits.items()})
    write_sidecar(csv, rec)
    paths = {"csv": csv}
    if plot:
        png = out_dir / "sample_efficiency.png"
        fig = plot_sample_efficiency_fits(df, fits)
        with atomic_path(png) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        write_sidecar(png, rec)
        paths["png"] = png
    return paths
