"""Render a :class:`~nex_interp.report.data.ReportData` as one self-contained HTML page.

The page has no scripts and loads nothing: CSS and SVG are inline. Stable hooks for tests and
styling: ``#summary``, ``#novelty-svg``, ``#curve-svg``, ``#response-text`` whose rows are
``span.row.phase-E`` / ``span.row.phase-X`` (id ``row-<cache row>``, ``data-position`` = kept-row
index), ``#cycles-table`` (``tr.cycle.kind-<kind>``), ``#neurons-table`` (``tr.neuron.pos`` /
``tr.neuron.neg``).
"""

from __future__ import annotations

import math
from html import escape
from typing import Sequence

from .. import __version__
from ..plots import EXPLOIT_COLOR, EXPLORE_COLOR
from .data import CycleView, NeuronView, ReportData, RowView
from .svg import novelty_svg, token_neuron_svg

CSS = f"""
:root {{ --e: {EXPLORE_COLOR}; --x: {EXPLOIT_COLOR}; }}
* {{ box-sizing: border-box; }}
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1040px;
        padding: 18px 22px 40px; color: #202124; background: #fafafa; }}
h1 {{ font-size: 22px; margin: 4px 0 10px; }}
h2 {{ font-size: 17px; margin: 26px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }}
section {{ background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; padding: 8px 14px 14px; margin-top: 14px; }}
dl#summary {{ display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 3px 14px; margin: 0; }}
dl#summary dt {{ color: #5f6368; }} dl#summary dd {{ margin: 0; font-variant-numeric: tabular-nums; }}
.legend span {{ display: inline-block; padding: 1px 8px; border-radius: 3px; margin-right: 8px; font-size: 12px; }}
.legend .lg-E {{ background: color-mix(in srgb, var(--e) 28%, white); border-left: 4px solid var(--e); }}
.legend .lg-X {{ background: color-mix(in srgb, var(--x) 14%, white); border-left: 4px solid var(--x); }}
svg text.tick {{ font-size: 11px; fill: #5f6368; }} svg text.axis-label {{ font-size: 12px; fill: #202124; }}
svg text.cycle-label {{ font-size: 10px; fill: #9a4a00; }}
#response-text {{ font: 13px/1.7 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre-wrap;
                 word-break: break-word; }}
span.row {{ border-left: 3px solid transparent; padding: 1px 2px; }}
span.row.phase-E {{ background: color-mix(in srgb, var(--e) 26%, white); border-left-color: var(--e); }}
span.row.phase-X {{ background: color-mix(in srgb, var(--x) 10%, white); border-left-color: var(--x); }}
span.row:hover {{ outline: 1px solid #333; }}
span.row.rowbox {{ display: inline-block; margin: 2px; padding: 2px 6px; font-size: 11px; min-width: 88px; }}
.source, .note {{ color: #5f6368; font-size: 12px; margin: 2px 0 8px; }}
.fulltext {{ white-space: pre-wrap; font: 12px/1.5 ui-monospace, monospace; background: #f4f4f4; padding: 8px; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }}
th, td {{ text-align: right; padding: 3px 8px; border-bottom: 1px solid #eee; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ color: #5f6368; font-weight: 600; }}
tr.kind-effective td.kind {{ color: #137333; font-weight: 600; }}
tr.kind-redundant td.kind {{ color: #c5221f; font-weight: 600; }}
tr.neuron.pos td.contrib {{ color: #137333; }} tr.neuron.neg td.contrib {{ color: #c5221f; }}
.bar {{ display: inline-block; height: 9px; vertical-align: middle; margin-left: 6px; }}
tr.neuron.pos .bar {{ background: #34a853; }} tr.neuron.neg .bar {{ background: #ea4335; }}
footer {{ color: #80868b; font-size: 11px; margin-top: 24px; }}
"""


def _num(v: float, fmt: str = ".3f") -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _summary(d: ReportData) -> str:
    n_rows = len(d.rows)
    items = [
        ("cache", escape(d.cache)),
        ("response", f"{d.response} of {d.n_responses}"),
        ("rows kept", f"{n_rows} of {d.n_cache_rows}"),
        ("tokens", str(sum(r.tokens for r in d.rows))),
        ("E rows", f"{d.n_explore} ({(d.n_explore / n_rows * 100 if n_rows else 0):.0f}%)"),
        ("E→X cycles", str(len(d.cycles))),
        ("effective / redundant", f"{sum(c.kind == 'effective' for c in d.cycles)} / {sum(c.kind == 'redundant' for c in d.cycles)}"),
        ("GMF", f'<span id="gmf">{_num(d.gmf, ".4f")}</span>'),
        ("weights", escape(d.weights_source)),
    ]
    if d.skipped_reason:
        items.append(("not segmented", f'<span id="skipped">{escape(d.skipped_reason)}: all rows count as X</span>'))
    items += [(escape(str(k)), escape(str(v))) for k, v in sorted(d.meta.items())][:8]
    body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    return f'<dl id="summary">{body}</dl>'


def _legend() -> str:
    return '<p class="legend"><span class="lg-E">Explore (E): recruits new neurons</span><span class="lg-X">Exploit (X): reuses them</span></p>'


def _row_title(r: RowView) -> str:
    return escape(
        f"row {r.row} (kept #{r.position}) · {'E' if r.explore else 'X'} · {r.tokens} tokens · {r.n_new} new neurons · slope {r.slope:.3g}",
        quote=True,
    )


def phase_text_html(rows: Sequence[RowView], *, with_text: bool = True) -> str:
    """The ``#response-text`` block: one span per kept row, coloured by phase. Rows without text
    are shown as labelled boxes. Usable on its own (a notebook displays it with IPython's HTML)."""
    spans = []
    for r in rows:
        ph = "E" if r.explore else "X"
        attrs = f'class="row phase-{ph}{"" if with_text and r.text is not None else " rowbox"}" id="row-{r.row}" data-position="{r.position}" title="{_row_title(r)}"'
        if with_text and r.text is not None:
            spans.append(f"<span {attrs}>{escape(r.text)}</span>")
        else:
            spans.append(f"<span {attrs}>row {r.row} · {ph} · {r.n_new} new</span>")
    return f'<div id="response-text">{"".join(spans)}</div>'


def phase_text_document(rows: Sequence[RowView]) -> str:
    """``phase_text_html`` with the report's CSS and legend, for display outside a full report."""
    return f"<div><style>{CSS}</style>{_legend()}{phase_text_html(rows)}</div>"


def _cycles_table(cycles: Sequence[CycleView]) -> str:
    if not cycles:
        return '<p class="note" id="no-cycles">No E→X cycle: the response credits no neurons.</p>'
    head = (
        "<tr><th>cycle</th><th>E rows</th><th>X rows</th><th>slope E</th><th>slope X</th><th>strength</th>"
        "<th>consolidation</th><th>reuse</th><th>progress</th><th>kind</th><th>scale</th></tr>"
    )
    body = "".join(
        f'<tr class="cycle kind-{escape(c.kind)}" id="cycle-{c.index}"><td>C{c.index}</td><td>{c.e_start}–{c.e_stop - 1}</td>'
        f"<td>{c.x_start}–{c.x_stop - 1}</td><td>{_num(c.slope_e)}</td><td>{_num(c.slope_x)}</td><td>{_num(c.strength)}</td>"
        f"<td>{_num(c.consolidation)}</td><td>{_num(c.reuse)}</td><td>{_num(c.progress)}</td>"
        f'<td class="kind">{escape(c.kind)}</td><td>{_num(c.scale)}</td></tr>'
        for c in cycles
    )
    return f'<table id="cycles-table"><thead>{head}</thead><tbody>{body}</tbody></table>'


def _neuron_rows(ns: Sequence[NeuronView], cls: str, scale: float) -> str:
    return "".join(
        f'<tr class="neuron {cls}"><td>L{n.layer}.{n.unit}</td><td>{n.layer}</td><td>{n.unit}</td><td>{_num(n.mass, ".2f")}</td>'
        f'<td>{_num(n.weight, "+.3f")}</td><td class="contrib">{_num(n.contribution, "+.2f")}'
        f'<span class="bar" style="width:{abs(n.contribution) / scale * 120:.0f}px"></span></td></tr>'
        for n in ns
    )


def _neurons_table(d: ReportData) -> str:
    if not d.top_neurons and not d.bottom_neurons:
        return '<p class="note" id="no-neurons">No neuron of this response carries a nonzero weight.</p>'
    scale = max((abs(n.contribution) for n in [*d.top_neurons, *d.bottom_neurons]), default=1.0) or 1.0
    head = "<tr><th>neuron</th><th>layer</th><th>unit</th><th>mass</th><th>weight</th><th>mass × weight</th></tr>"
    body = (
        f'<tr class="group"><th colspan="6">toward good mass (weight &gt; 0)</th></tr>{_neuron_rows(d.top_neurons, "pos", scale)}'
        f'<tr class="group"><th colspan="6">against (weight &lt; 0)</th></tr>{_neuron_rows(d.bottom_neurons, "neg", scale)}'
    )
    return f'<table id="neurons-table"><thead>{head}</thead><tbody>{body}</tbody></table>'


def render_report(d: ReportData) -> str:
    """The whole HTML page of a response report."""
    slopes = [r.slope for r in d.rows]
    labels = [r.explore for r in d.rows]
    cycles = [(c.e_start, c.e_stop, c.x_start, c.x_stop, c.kind) for c in d.cycles]
    has_text = any(r.text is not None for r in d.rows)
    full = f'<details><summary>whole response text</summary><div class="fulltext">{escape(d.full_text)}</div></details>' if d.full_text and not has_text else ""
    params = ", ".join(f"{escape(k)}={escape(str(v))}" for k, v in sorted(d.params.items()))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>NEX report: response {d.response}</title><style>{CSS}</style></head>
<body>
<header><h1>NEX report · response {d.response}</h1>{_summary(d)}</header>
<section id="novelty"><h2>Novelty and phases</h2>{_legend()}
<p class="note">Novelty slope = neurons first seen in a row / the row's tokens. The strip under the plot is the sticky HMM's
decoded phase of each row; shaded boxes C0, C1, ... are E→X cycles.</p>
{novelty_svg(slopes, labels, cycles)}
<h2>Token-neuron curve</h2>{token_neuron_svg([r.tokens for r in d.rows], [r.n_new for r in d.rows], labels)}
</section>
<section id="text"><h2>Response by phase</h2>{_legend()}<p class="source" id="text-source">{escape(d.text_source)}</p>
{phase_text_html(d.rows)}{full}</section>
<section id="cycles"><h2>E→X cycles</h2>
<p class="note">strength = median E slope − median slope of the response; consolidation = 1 − slope X / slope E; reuse = share
of the X rows' mass on neurons the E rows introduced; progress = reuse − the response's median reuse. Effective cycles
(progress &gt; 0 and consolidation &gt; 0) credit their new neurons; redundant ones debit them.</p>
{_cycles_table(d.cycles)}</section>
<section id="neurons"><h2>Top contributing neurons</h2>
<p class="note">Mass = the neuron's activation summed over the response; GMF = Σ mass·max(w,0) / Σ mass·|w|.</p>
{_neurons_table(d)}</section>
<footer>nex-interp {escape(__version__)} · {params}</footer>
</body></html>
"""
