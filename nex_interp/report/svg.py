"""Inline SVG charts for the HTML report (no JavaScript, no external resources).

Colours match :mod:`nex_interp.plots`: Explore orange, Exploit blue.
"""

from __future__ import annotations

from html import escape
from typing import Sequence

import numpy as np

from ..plots import EXPLOIT_COLOR, EXPLORE_COLOR, phase_spans

WIDTH, HEIGHT = 960, 250
LEFT, RIGHT, TOP, BOTTOM = 56, 14, 16, 58
STRIP_H = 12


def _fmt(v: float) -> str:
    return f"{v:.1f}"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** np.floor(np.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    first = np.ceil(lo / step) * step
    return [float(t) for t in np.arange(first, hi + step * 0.001, step)]


def _axes(parts: list[str], x0: float, x1: float, y0: float, y1: float, xlabel: str, ylabel: str, xt: list[float], yt: list[float], sx, sy) -> None:
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts.append(f'<rect class="plot-bg" x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fff" stroke="#bbb"/>')
    for t in yt:
        y = sy(t)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{_fmt(y)}" y2="{_fmt(y)}" stroke="#eee"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{_fmt(y + 4)}" text-anchor="end" class="tick">{t:g}</text>')
    for t in xt:
        x = sx(t)
        parts.append(f'<text x="{_fmt(x)}" y="{TOP + ph + 15}" text-anchor="middle" class="tick">{t:g}</text>')
    parts.append(f'<text x="{LEFT + pw / 2}" y="{HEIGHT - 6}" text-anchor="middle" class="axis-label">{escape(xlabel)}</text>')
    parts.append(
        f'<text transform="translate(14,{TOP + ph / 2}) rotate(-90)" text-anchor="middle" class="axis-label">{escape(ylabel)}</text>'
    )


def novelty_svg(slopes: Sequence[float], labels: Sequence[bool], cycles: Sequence[tuple[int, int, int, int, str]] = ()) -> str:
    """SVG ``#novelty-svg``: each kept row's novelty slope (points coloured by phase), the median
    slope, the phase strip (``rect.strip-E`` / ``rect.strip-X``, one per row) under the plot,
    and each cycle's span (``g.cycle-mark``) labelled ``C<k>``.

    ``cycles`` holds (e_start, e_stop, x_start, x_stop, kind) in kept-row positions.
    """
    s = np.asarray(slopes, dtype=float)
    lab = np.asarray(labels, dtype=bool)
    n = len(s)
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    ymax = float(np.nanmax(s)) * 1.08 if n and np.isfinite(s).any() and np.nanmax(s) > 0 else 1.0

    def sx(j: float) -> float:
        return LEFT + (j + 0.5) * pw / max(n, 1)

    def sy(v: float) -> float:
        return TOP + ph - (v / ymax) * ph

    parts = [
        f'<svg id="novelty-svg" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        f'role="img" aria-label="novelty slope per row with E/X phase strip">'
    ]
    xt = [t for t in _ticks(0, max(n - 1, 1)) if t == int(t)]
    _axes(parts, 0, n, 0, ymax, "row (kept rows, in order)", "new neurons / token", xt, _ticks(0, ymax), sx, sy)
    for k, (e0, e1, x0, x1, kind) in enumerate(cycles):
        a, b = LEFT + e0 * pw / max(n, 1), LEFT + x1 * pw / max(n, 1)
        parts.append(
            f'<g class="cycle-mark kind-{escape(kind)}" data-cycle="{k}"><rect x="{_fmt(a)}" y="{TOP}" width="{_fmt(b - a)}" '
            f'height="{ph}" fill="{EXPLORE_COLOR}" fill-opacity="0.06"/>'
            f'<text x="{_fmt(a + 3)}" y="{TOP + 11}" class="cycle-label">C{k}</text></g>'
        )
    if n and np.isfinite(s).any():
        med = float(np.nanmedian(s))
        parts.append(
            f'<line class="median" x1="{LEFT}" x2="{LEFT + pw}" y1="{_fmt(sy(med))}" y2="{_fmt(sy(med))}" '
            f'stroke="#555" stroke-dasharray="4 3"><title>median slope {med:.3g}</title></line>'
        )
        pts = " ".join(f"{_fmt(sx(j))},{_fmt(sy(v if np.isfinite(v) else 0))}" for j, v in enumerate(s))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#999" stroke-width="1.2"/>')
        for j, (v, e) in enumerate(zip(s, lab)):
            ph_ = "E" if e else "X"
            parts.append(
                f'<circle class="pt pt-{ph_}" cx="{_fmt(sx(j))}" cy="{_fmt(sy(v if np.isfinite(v) else 0))}" r="3" '
                f'fill="{EXPLORE_COLOR if e else EXPLOIT_COLOR}"><title>row {j}: {ph_}, slope {v:.3g}</title></circle>'
            )
    y_strip = TOP + ph + 22
    for j, e in enumerate(lab):
        ph_ = "E" if e else "X"
        a = LEFT + j * pw / max(n, 1)
        parts.append(
            f'<rect class="strip strip-{ph_}" data-position="{j}" x="{_fmt(a)}" y="{y_strip}" width="{_fmt(pw / max(n, 1) + 0.3)}" '
            f'height="{STRIP_H}" fill="{EXPLORE_COLOR if e else EXPLOIT_COLOR}"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def token_neuron_svg(tokens: Sequence[int], n_new: Sequence[int], labels: Sequence[bool]) -> str:
    """SVG ``#curve-svg``: cumulative distinct neurons against cumulative tokens, E spans shaded."""
    tok = np.asarray(tokens, dtype=float)
    new = np.asarray(n_new, dtype=float)
    lab = np.asarray(labels, dtype=bool)
    edges = np.concatenate([[0.0], np.cumsum(tok)])
    cum = np.concatenate([[0.0], np.cumsum(new)])
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    xmax = max(float(edges[-1]), 1.0)
    ymax = max(float(cum[-1]) * 1.05, 1.0)

    def sx(v: float) -> float:
        return LEFT + v / xmax * pw

    def sy(v: float) -> float:
        return TOP + ph - v / ymax * ph

    parts = [
        f'<svg id="curve-svg" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        f'role="img" aria-label="cumulative distinct neurons over tokens">'
    ]
    _axes(parts, 0, xmax, 0, ymax, "tokens", "distinct neurons", _ticks(0, xmax), _ticks(0, ymax), sx, sy)
    for span in phase_spans(lab):
        a, b = sx(edges[span.start]), sx(edges[span.stop])
        color = EXPLORE_COLOR if span.explore else EXPLOIT_COLOR
        parts.append(
            f'<rect class="span span-{"E" if span.explore else "X"}" x="{_fmt(a)}" y="{TOP}" width="{_fmt(b - a)}" height="{ph}" '
            f'fill="{color}" fill-opacity="{0.2 if span.explore else 0.07}"/>'
        )
    pts = " ".join(f"{_fmt(sx(x))},{_fmt(sy(y))}" for x, y in zip(edges, cum))
    parts.append(f'<polyline class="curve" points="{pts}" fill="none" stroke="#111" stroke-width="1.6"/>')
    parts.append("</svg>")
    return "".join(parts)
