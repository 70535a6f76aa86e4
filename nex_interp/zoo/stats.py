"""Statistics of labelled responses at a row size: the issue's preconditions that need no model.

For responses with per-token E/X labels (reference traces, or a model's samples labelled by
:func:`.traces.label_tokens`), :func:`trace_stats` cuts each response into consecutive rows of
``row_tokens`` tokens (the last one may be shorter), as NEX does, and reports:

* ``median_response_tokens`` and ``median_rows``;
* ``mean_generator_e_spans``: maximal runs of E tokens per response;
* ``e_span_rows_ge2_share``: share of E spans that are the majority label of at least 2 rows
  (a row's label is the majority of its tokens' labels, ties E), so ``min_run = 2`` keeps them;
  ``row_e_runs_ge2_share`` is the same for maximal E runs of those row labels;
* token-type novelty, a model-free stand-in for neuron novelty: a token *type* is introduced
  at the first row of the response that holds it. ``late_token_novelty_share`` is the share of a
  response's distinct types introduced in its last 20% of rows (median over responses), and
  ``novelty_on_e_share`` the share of introductions that fall on E tokens, beside
  ``e_token_share``, the share of tokens that are E (novelty lands on E when the first exceeds
  the second).

Run ``python -m nex_interp.zoo.stats`` to print them for each style's reference traces
(``--models``: for each planned zoo model's training mixture, :mod:`.plan`).
"""

from __future__ import annotations

import math
import random
import statistics
from typing import Sequence

from .task import DEFAULT_SHAPE, TaskShape, generate_problems


def _runs(labels: Sequence[str], value: str) -> list[tuple[int, int]]:
    """Maximal runs of ``value`` as (start, end) index pairs, end exclusive."""
    runs, start = [], None
    for i, lab in enumerate([*labels, None]):
        if lab == value and start is None:
            start = i
        elif lab != value and start is not None:
            runs.append((start, i))
            start = None
    return runs


def row_labels(labels: Sequence[str], row_tokens: int) -> list[str]:
    """Majority label of each row (ties E)."""
    out = []
    for s in range(0, len(labels), row_tokens):
        row = labels[s : s + row_tokens]
        out.append("E" if 2 * sum(lab == "E" for lab in row) >= len(row) else "X")
    return out


def response_stats(tokens: Sequence[str], labels: Sequence[str], row_tokens: int) -> dict:
    """Per-response figures (see the module docstring)."""
    if len(tokens) != len(labels):
        raise ValueError(f"{len(tokens)} tokens but {len(labels)} labels")
    n_rows = math.ceil(len(tokens) / row_tokens)
    rows = row_labels(labels, row_tokens)
    spans = _runs(labels, "E")
    span_rows = []
    for s, e in spans:
        first, last = s // row_tokens, (e - 1) // row_tokens
        span_rows.append(sum(rows[r] == "E" for r in range(first, last + 1)))
    seen: set[str] = set()
    intro_rows, intro_on_e = [], 0
    for i, (tok, lab) in enumerate(zip(tokens, labels)):
        if tok not in seen:
            seen.add(tok)
            intro_rows.append(i // row_tokens)
            intro_on_e += lab == "E"
    late_from = n_rows - max(1, round(0.2 * n_rows))
    return {
        "tokens": len(tokens), "rows": n_rows, "e_spans": len(spans),
        "e_span_tokens": [e - s for s, e in spans], "e_span_rows": span_rows,
        "row_e_runs": [e - s for s, e in _runs(rows, "E")],
        "distinct_types": len(seen),
        "late_token_novelty_share": sum(r >= late_from for r in intro_rows) / max(1, len(seen)),
        "novelty_on_e_share": intro_on_e / max(1, len(seen)),
        "e_token_share": sum(lab == "E" for lab in labels) / max(1, len(labels)),
    }


def trace_stats(responses: Sequence[tuple[Sequence[str], Sequence[str]]], row_tokens: int) -> dict:
    """Aggregate figures over (tokens, labels) responses (see the module docstring)."""
    if not responses:
        raise ValueError("no responses to measure")
    per = [response_stats(t, lab, row_tokens) for t, lab in responses]
    spans = [r for p in per for r in p["e_span_rows"]]
    span_tok = [t for p in per for t in p["e_span_tokens"]]
    row_runs = [r for p in per for r in p["row_e_runs"]]
    med = statistics.median
    return {
        "n_responses": len(per), "row_tokens": row_tokens,
        "median_response_tokens": med(p["tokens"] for p in per),
        "min_response_tokens": min(p["tokens"] for p in per),
        "max_response_tokens": max(p["tokens"] for p in per),
        "median_rows": med(p["rows"] for p in per),
        "share_with_30_rows": sum(p["rows"] >= 30 for p in per) / len(per),
        "mean_generator_e_spans": statistics.fmean(p["e_spans"] for p in per),
        "median_e_span_tokens": med(span_tok) if span_tok else 0,
        "e_span_rows_ge2_share": sum(r >= 2 for r in spans) / len(spans) if spans else float("nan"),
        "row_e_runs_ge2_share": sum(r >= 2 for r in row_runs) / len(row_runs) if row_runs else float("nan"),
        "late_token_novelty_share": med(p["late_token_novelty_share"] for p in per),
        "novelty_on_e_share": statistics.fmean(p["novelty_on_e_share"] for p in per),
        "e_token_share": statistics.fmean(p["e_token_share"] for p in per),
    }


def style_report(n: int = 2000, seed: int = 0, row_tokens: int = 8, shape: TaskShape = DEFAULT_SHAPE) -> dict:
    """:func:`trace_stats` of ``n`` reference traces per style, plus each style's accuracy,
    mean opens and revisits (the brief style has no rows to speak of and is reported alone)."""
    from .traces import STYLES, reference_trace

    problems = generate_problems(n, seed, shape)
    out = {}
    for k, style in enumerate(STYLES):
        rng = random.Random(seed * 100 + k)
        traces = [reference_trace(p, style, rng) for p in problems]
        st = trace_stats([(t.tokens, t.labels) for t in traces], row_tokens) if style != "brief" else {}
        st.update(accuracy=statistics.fmean(t.correct for t in traces),
                  mean_opens=statistics.fmean(t.opens for t in traces),
                  mean_revisits=statistics.fmean(t.revisits for t in traces),
                  out_of_budget=statistics.fmean(t.answer == "none" for t in traces))
        out[style] = st
    prompt_tokens = [len(p.prompt().split()) for p in problems]
    out["prompt_tokens"] = {"min": min(prompt_tokens), "max": max(prompt_tokens)}
    return out


def mixture_report(mixture: dict[str, float], n: int = 2000, seed: int = 0, row_tokens: int = 8,
                   shape: TaskShape = DEFAULT_SHAPE) -> dict:
    """Reference-data figures of one training mixture: accuracy, share of worked solutions, and
    :func:`trace_stats` over its worked solutions."""
    from .traces import STYLES, reference_trace

    problems = generate_problems(n, seed, shape)
    rng = random.Random(seed)
    styles = [s for s in STYLES if mixture.get(s, 0) > 0]
    traces = [reference_trace(p, rng.choices(styles, [mixture[s] for s in styles])[0], rng) for p in problems]
    worked = [t for t in traces if t.style != "brief"]
    out = trace_stats([(t.tokens, t.labels) for t in worked], row_tokens) if worked else {}
    out.update(accuracy=statistics.fmean(t.correct for t in traces), worked_share=len(worked) / len(traces),
               mean_opens=statistics.fmean(t.opens for t in traces))
    return out


def main() -> None:  # pragma: no cover - a report printer
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Statistics of the box-search reference traces per style.")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--row-tokens", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--models", action="store_true", help="report the planned zoo models' training mixtures instead of styles")
    args = ap.parse_args()
    for rt in args.row_tokens:
        print(f"== row_tokens {rt}")
        if args.models:
            from .plan import MODELS

            rep = {m: mixture_report(mix, args.n, args.seed, rt) for m, mix in MODELS.items()}
        else:
            rep = style_report(args.n, args.seed, rt)
        print(json.dumps(rep, indent=1, default=float))


if __name__ == "__main__":  # pragma: no cover
    main()
