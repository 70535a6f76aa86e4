"""Plots of NEX quantities: matplotlib functions that return a ``Figure``.

Every function takes plain data (numpy arrays, a :class:`~nex_interp.neuron_weights.NeuronWeights`,
a pandas DataFrame) and an optional ``ax``: given one, it draws there and returns ``ax.figure``;
otherwise it makes a new ``Figure`` without pyplot (no global figure state, safe under the Agg
backend and in servers). matplotlib is imported inside the functions, so importing this module
costs nothing and works without the ``plots`` extra until a plot is drawn.

Colours: Explore (E) rows orange, Exploit (X) rows blue, everywhere in the package (the HTML
report uses the same two colours).

Length: this module is a flat list of about ten independent figure functions (30-50 lines each)
that share only the colour constants and the small axis helpers at the top; it is kept as one file
so a notebook finds every figure in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from . import stats
from .atomic import atomic_path
from .errors import ConfigError
from .provenance import record, write_sidecar

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .neuron_weights import NeuronWeights

#: phase colours shared with the HTML report
EXPLORE_COLOR = "#e8710a"
EXPLOIT_COLOR = "#1a73e8"


@dataclass(frozen=True)
class PhaseSpan:
    """A maximal run of equal phase labels: rows [start, stop), ``explore`` True for E."""

    start: int
    stop: int
    explore: bool


def phase_spans(labels: Sequence[bool] | np.ndarray) -> list[PhaseSpan]:
    """Split per-row E/X labels (True = Explore) into maximal runs, in order.

    >>> [(s.start, s.stop, s.explore) for s in phase_spans([False, True, True, False])]
    [(0, 1, False), (1, 3, True), (3, 4, False)]
    """
    lab = np.asarray(labels, dtype=bool)
    if lab.ndim != 1:
        raise ConfigError(f"phase labels must be one-dimensional, got shape {lab.shape}")
    if len(lab) == 0:
        return []
    cuts = np.flatnonzero(lab[1:] != lab[:-1]) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [len(lab)]])
    return [PhaseSpan(int(a), int(b), bool(lab[a])) for a, b in zip(starts, stops)]


def _axes(ax: "Axes | None", figsize: tuple[float, float]) -> "Axes":
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def _as_1d(name: str, values: Any, n: int | None = None, dtype: Any = float) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype)
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise ConfigError(f"{name} has {len(arr)} values but {n} were expected (one per row/point)")
    return arr


def _shade_phases(ax: "Axes", edges: np.ndarray, labels: np.ndarray, *, explore_only: bool = False) -> None:
    """Shade each phase span between x = edges[start] and edges[stop]."""
    seen: set[bool] = set()
    for span in phase_spans(labels):
        if explore_only and not span.explore:
            continue
        name = "Explore (E)" if span.explore else "Exploit (X)"
        ax.axvspan(
            edges[span.start],
            edges[span.stop],
            color=EXPLORE_COLOR if span.explore else EXPLOIT_COLOR,
            alpha=0.18 if span.explore else 0.08,
            lw=0,
            label=None if span.explore in seen else name,
        )
        seen.add(span.explore)


def plot_token_neuron_curve(
    tokens: Sequence[int] | np.ndarray,
    n_new: Sequence[int] | np.ndarray,
    labels: Sequence[bool] | np.ndarray,
    ax: "Axes | None" = None,
    *,
    title: str | None = None,
) -> "Figure":
    """Cumulative distinct neurons against cumulative tokens, with the E/X spans shaded.

    ``tokens[j]`` is the token count of kept row j, ``n_new[j]`` the number of neurons first seen
    in row j, ``labels[j]`` True when row j is Explore (the fields of the core's
    ``ResponseDiagnostics``). Steep stretches recruit new neurons (explore), flat ones reuse
    them (exploit).
    """
    tok = _as_1d("tokens", tokens)
    n = len(tok)
    new = _as_1d("n_new", n_new, n)
    lab = _as_1d("labels", labels, n, bool)
    ax = _axes(ax, (7, 3.6))
    edges = np.concatenate([[0.0], np.cumsum(tok)])
    cum = np.concatenate([[0.0], np.cumsum(new)])
    _shade_phases(ax, edges, lab)
    ax.plot(edges, cum, color="black", lw=1.6, marker="o", ms=2.5, label="distinct neurons")
    ax.set_xlabel("tokens")
    ax.set_ylabel("cumulative distinct neurons")
    ax.set_xlim(0, max(edges[-1], 1.0))
    ax.set_ylim(bottom=0)
    ax.set_title(title or "Token-neuron curve")
    ax.legend(loc="lower right", fontsize="small")
    return ax.figure


def plot_novelty_slope(
    slopes: Sequence[float] | np.ndarray,
    labels: Sequence[bool] | np.ndarray,
    ax: "Axes | None" = None,
    *,
    title: str | None = None,
) -> "Figure":
    """Novelty slope (new neurons per token) of each kept row, coloured by its HMM state.

    A strip under the curve shows the decoded states; the dashed line is the response's median
    slope, the reference of each cycle's ``strength``.
    """
    s = _as_1d("slopes", slopes)
    lab = _as_1d("labels", labels, len(s), bool)
    ax = _axes(ax, (7, 3.6))
    rows = np.arange(len(s))
    ax.plot(rows, s, color="0.55", lw=1, zorder=1)
    for explore, color, name in ((True, EXPLORE_COLOR, "E"), (False, EXPLOIT_COLOR, "X")):
        sel = lab == explore
        if sel.any():
            ax.scatter(rows[sel], s[sel], color=color, s=14, zorder=2, label=f"{name} rows ({int(sel.sum())})")
    if len(s):
        ax.axhline(float(np.median(s)), color="0.3", ls="--", lw=0.8, label="median slope")
    top = float(np.max(s)) if len(s) else 1.0
    strip_h = 0.06 * max(top, 1e-9)
    edges = np.arange(len(s) + 1) - 0.5
    for span in phase_spans(lab):
        ax.fill_between(
            [edges[span.start], edges[span.stop]],
            -2.2 * strip_h,
            -1.2 * strip_h,
            color=EXPLORE_COLOR if span.explore else EXPLOIT_COLOR,
            lw=0,
        )
    ax.set_ylim(-2.6 * strip_h, top * 1.08 + strip_h)
    ax.set_xlim(-0.5, max(len(s) - 0.5, 0.5))
    ax.set_xlabel("row")
    ax.set_ylabel("novelty slope (new neurons / token)")
    ax.set_title(title or "Novelty slope and HMM states")
    ax.legend(loc="upper right", fontsize="small")
    return ax.figure


def plot_nex_vs_accuracy(
    nex: Sequence[float] | np.ndarray,
    accuracy: Sequence[float] | np.ndarray,
    names: Sequence[str] | None = None,
    ax: "Axes | None" = None,
    *,
    xlabel: str = "NEX score",
    title: str | None = None,
) -> "Figure":
    """Scatter of each model's (or variant's) NEX score against its accuracy, with a least-squares
    line and Pearson / Spearman correlations in the legend. NaN points are dropped."""
    x = _as_1d("nex", nex)
    y = _as_1d("accuracy", accuracy, len(x))
    ok = np.isfinite(x) & np.isfinite(y)
    ax = _axes(ax, (5, 4))
    ax.scatter(x[ok], y[ok], color=EXPLOIT_COLOR, s=28, zorder=3)
    if names is not None:
        if len(names) != len(x):
            raise ConfigError(f"names has {len(names)} entries but there are {len(x)} points")
        for xi, yi, nm, k in zip(x, y, names, ok):
            if k:
                ax.annotate(str(nm), (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize="x-small")
    if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
        b, a = np.polyfit(x[ok], y[ok], 1)
        xs = np.linspace(x[ok].min(), x[ok].max(), 50)
        r, rho = stats.pearson(x, y), stats.spearman(x, y)
        ax.plot(xs, a + b * xs, color="black", lw=1.2, label=f"linear fit (r={r:.2f}, Spearman={rho:.2f})")
        ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_title(title or f"{xlabel} vs accuracy (n={int(ok.sum())})")
    return ax.figure


def plot_inverted_u(
    proxy: Sequence[float] | np.ndarray,
    accuracy: Sequence[float] | np.ndarray,
    ax: "Axes | None" = None,
    *,
    xlabel: str = "exploration (fraction of E rows)",
    title: str | None = None,
) -> "Figure":
    """Accuracy against an exploration proxy with a quadratic fit: too little exploration and too
    much both hurt, so the fit bends down (an inverted U) when the effect is present. The vertex
    is marked when the fitted parabola opens downward and peaks inside the data's range."""
    x = _as_1d("proxy", proxy)
    y = _as_1d("accuracy", accuracy, len(x))
    ok = np.isfinite(x) & np.isfinite(y)
    ax = _axes(ax, (5, 4))
    ax.scatter(x[ok], y[ok], color=EXPLORE_COLOR, s=22, alpha=0.8, zorder=3)
    fit = stats.quadratic_fit(x, y)
    if fit.ok:
        xs = np.linspace(x[ok].min(), x[ok].max(), 100)
        ax.plot(xs, fit(xs), color="black", lw=1.2, label=f"quadratic fit (a={fit.a:.3g})")
        if fit.optimum is not None and x[ok].min() <= fit.optimum <= x[ok].max():
            ax.axvline(fit.optimum, color="0.4", ls=":", lw=1, label=f"peak at {fit.optimum:.3g}")
        ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_title(title or "Accuracy vs exploration")
    return ax.figure


def plot_weight_distribution(
    weights: "NeuronWeights",
    ax: "Axes | None" = None,
    *,
    title: str | None = None,
) -> "Figure":
    """Box plot of the nonzero NEX weights of each layer, with the count of effective (w > 0)
    and redundant (w < 0) neurons written above each box."""
    layer, _unit = weights.layer_unit()
    w = np.asarray(weights.weight, dtype=np.float64)
    nz = w != 0
    layer, w = layer[nz], w[nz]
    ax = _axes(ax, (max(6.0, 0.32 * len(np.unique(layer)) + 2), 3.8))
    layers = np.unique(layer)
    if len(layers) == 0:
        ax.text(0.5, 0.5, "no credited neurons", ha="center", va="center", transform=ax.transAxes)
    else:
        data = [w[layer == L] for L in layers]
        bp = ax.boxplot(data, positions=np.arange(len(layers)), widths=0.6, showfliers=False, patch_artist=True, medianprops={"color": "black"})
        for patch, d in zip(bp["boxes"], data):
            patch.set_facecolor(EXPLORE_COLOR if np.median(d) > 0 else EXPLOIT_COLOR)
            patch.set_alpha(0.5)
        for i, d in enumerate(data):
            ax.text(i, 1.05, f"{int((d > 0).sum())}", ha="center", va="bottom", fontsize="xx-small", color="#137333")
            ax.text(i, -1.05, f"{int((d < 0).sum())}", ha="center", va="top", fontsize="xx-small", color="#c5221f")
        ax.set_xticks(np.arange(len(layers)), [str(L) for L in layers], fontsize="x-small")
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set_ylim(-1.25, 1.25)
    ax.set_xlabel("layer")
    ax.set_ylabel("NEX weight (nonzero)")
    ax.set_title(title or f"Weights per layer ({int(nz.sum())} credited; counts: green w>0, red w<0)")
    return ax.figure


def _data_ticks(ax: "Axes", values: Any) -> None:
    """On a log x axis, tick the data's own x values (when few) with plain labels."""
    from matplotlib.ticker import NullFormatter, NullLocator

    xs = np.unique(np.asarray(values, dtype=float))
    xs = xs[np.isfinite(xs)]
    if 0 < len(xs) <= 12:
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(xs, [f"{v:g}" for v in xs])


def _grouped(df: "pd.DataFrame", group: str | None) -> list[tuple[str, "pd.DataFrame"]]:
    if group is None:
        return [("", df)]
    return [(str(k), g) for k, g in df.groupby(group, sort=True)]


def _check_columns(df: "pd.DataFrame", cols: Sequence[str | None], what: str) -> None:
    missing = [c for c in cols if c is not None and c not in df.columns]
    if missing:
        raise ConfigError(f"{what} table lacks column(s) {missing}; it has {list(df.columns)}")


def plot_dose_response(
    df: "pd.DataFrame",
    ax: "Axes | None" = None,
    *,
    x: str = "k",
    y: str = "delta",
    group: str | None = "condition",
    lo: str | None = "ci_low",
    hi: str | None = "ci_high",
    logx: bool = False,
    title: str | None = None,
) -> "Figure":
    """Dose-response of a neuron intervention: the effect ``y`` (e.g. accuracy change) against the
    number of neurons ``x`` for each condition (e.g. top-NEX, random, bottom-NEX), with the
    confidence band [lo, hi] shaded when those columns are given."""
    _check_columns(df, [x, y, group, lo, hi], "dose-response")
    ax = _axes(ax, (6, 4))
    for name, g in _grouped(df, group):
        g = g.sort_values(x)
        (line,) = ax.plot(g[x], g[y], marker="o", ms=3.5, lw=1.4, label=name or y)
        if lo is not None and hi is not None:
            ax.fill_between(g[x], g[lo], g[hi], color=line.get_color(), alpha=0.18, lw=0)
    ax.axhline(0, color="0.5", lw=0.6)
    if logx:
        ax.set_xscale("symlog", linthresh=1)
        _data_ticks(ax, df[x])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title or "Dose-response")
    if group is not None:
        ax.legend(fontsize="small", title=group)
    return ax.figure


def plot_sample_efficiency(
    df: "pd.DataFrame",
    ax: "Axes | None" = None,
    *,
    x: str = "n_problems",
    y: str = "spearman_rho",
    group: str | None = None,
    lo: str | None = None,
    hi: str | None = None,
    logx: bool = True,
    title: str | None = None,
) -> "Figure":
    """Sample-efficiency curve: a quality measure ``y`` (e.g. the ranking correlation of NEX with
    accuracy) against the number of calibration problems ``x``, per ``group``.

    With one row per ``x`` the band is [lo, hi] when given. With several rows per ``x`` (one per
    random draw, as :func:`nex_interp.selection.sample_efficiency.sample_efficiency` returns) the
    line is their mean and the band spans the 10th to 90th percentile of the draws.
    """
    _check_columns(df, [x, y, group, lo, hi], "sample-efficiency")
    ax = _axes(ax, (6, 4))
    for name, g in _grouped(df, group):
        g = g[np.isfinite(g[y].astype(float))]
        if g.empty:
            continue
        if g[x].duplicated().any():
            per_x = g.groupby(x)[y].agg(["mean", lambda v: np.quantile(v, 0.1), lambda v: np.quantile(v, 0.9), "size"])
            per_x.columns = ["mean", "q10", "q90", "n"]
            xs, ys, band = per_x.index.to_numpy(), per_x["mean"].to_numpy(), (per_x["q10"].to_numpy(), per_x["q90"].to_numpy())
            label = f"{name or y} (mean of {int(per_x['n'].max())} draws)"
        else:
            g = g.sort_values(x)
            xs, ys = g[x].to_numpy(), g[y].to_numpy()
            band = (g[lo].to_numpy(), g[hi].to_numpy()) if lo is not None and hi is not None else None
            label = name or y
        (line,) = ax.plot(xs, ys, marker="o", ms=3.5, lw=1.4, label=label)
        if band is not None:
            ax.fill_between(xs, band[0], band[1], color=line.get_color(), alpha=0.18, lw=0)
    if not ax.get_lines():
        ax.text(0.5, 0.5, f"no finite {y} values", ha="center", va="center", transform=ax.transAxes)
    elif logx:
        ax.set_xscale("log")
        _data_ticks(ax, df[x])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title or "Sample efficiency")
    if ax.get_lines():
        ax.legend(fontsize="small", title=group)
    return ax.figure


def plot_selection(
    df: "pd.DataFrame",
    ax: "Axes | None" = None,
    *,
    title: str | None = None,
) -> "Figure":
    """Best-of-N accuracy of each selection method with its confidence interval, best first
    (the table of :meth:`nex_interp.selection.SelectionReport.to_frame`: ``method, accuracy,
    ci_low, ci_high`` and optionally ``uses_labels``). Methods that read labels (the oracle) are
    drawn hollow, NEX methods orange, the rest blue."""
    _check_columns(df, ["method", "accuracy", "ci_low", "ci_high"], "selection")
    d = df[np.isfinite(df["accuracy"].astype(float))].sort_values("accuracy", ascending=True)
    ax = _axes(ax, (6, 0.38 * len(d) + 1.4))
    ys = np.arange(len(d))
    for y, rec in zip(ys, d.itertuples(index=False)):
        color = EXPLORE_COLOR if str(rec.method).startswith("nex") else EXPLOIT_COLOR
        labels = bool(getattr(rec, "uses_labels", False))
        ax.plot([rec.ci_low, rec.ci_high], [y, y], color=color, lw=2, alpha=0.6)
        ax.plot([rec.accuracy], [y], "o", ms=7, color=color, mfc="white" if labels else color)
    ax.set_yticks(ys, [str(m) + (" (labels)" if bool(getattr(r, "uses_labels", False)) else "") for m, r in zip(d["method"], d.itertuples(index=False))])
    lo = float(np.nanmin(d["ci_low"])) if len(d) else 0.0
    hi = float(np.nanmax(d["ci_high"])) if len(d) else 1.0
    ax.set_xlim(min(0.0, lo) - 0.03, max(1.0, hi) + 0.03)
    ax.set_xlabel("best-of-N accuracy")
    ax.set_title(title or "Best-of-N selection")
    ax.grid(axis="x", color="0.9")
    return ax.figure


def plot_overlap(
    df: "pd.DataFrame",
    ax: "Axes | None" = None,
    *,
    value: str = "jaccard",
    title: str | None = None,
) -> "Figure":
    """Heat map of pairwise set overlap (the long table of
    :func:`nex_interp.report.neurons.effective_overlap`: columns ``a``, ``b`` and ``value``),
    each cell annotated with its value and the shared count when present."""
    _check_columns(df, ["a", "b", value], "overlap")
    names = list(dict.fromkeys(df["a"].tolist() + df["b"].tolist()))
    mat = np.full((len(names), len(names)), np.nan)
    shared = np.full_like(mat, np.nan)
    pos = {n: i for i, n in enumerate(names)}
    for rec in df.itertuples(index=False):
        i, j = pos[getattr(rec, "a")], pos[getattr(rec, "b")]
        mat[i, j] = float(getattr(rec, value))
        if "shared" in df.columns:
            shared[i, j] = float(getattr(rec, "shared"))
    ax = _axes(ax, (1.1 * len(names) + 2.5, 1.0 * len(names) + 1.5))
    im = ax.imshow(mat, cmap="viridis", vmin=0, vmax=1 if value == "jaccard" else None)
    for i in range(len(names)):
        for j in range(len(names)):
            if np.isfinite(mat[i, j]):
                txt = f"{mat[i, j]:.2f}" + (f"\n{int(shared[i, j])}" if np.isfinite(shared[i, j]) else "")
                ax.text(j, i, txt, ha="center", va="center", fontsize="x-small", color="white" if mat[i, j] < 0.6 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label=value)
    ax.set_title(title or f"Overlap of neuron sets ({value})")
    return ax.figure


def save_figure(fig: "Figure", path: str | os.PathLike, *, command: str = "plot", **provenance: Any) -> None:
    """Save ``fig`` atomically (format from the suffix: .png, .svg, .pdf) with a provenance sidecar
    ``<path>.provenance.json``; ``provenance`` keywords (config, model, inputs, ...) go into it."""
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if fmt not in ("png", "svg", "pdf", "jpg", "jpeg"):
        raise ConfigError(f"cannot tell the figure format of {path!r}: use a .png, .svg or .pdf name")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=150)
    write_sidecar(path, record(command, **provenance))
