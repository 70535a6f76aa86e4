"""The experiment's figures: NEX vs accuracy, the inverted U, and one response's token-neuron curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..traces import label_tokens
from .config import DemoConfig, VariantResult
from .variant import variant_cache, variant_responses


def demo_figures(out: Path, merge: list[VariantResult], hi_rows: list[float], best: VariantResult, cfg: DemoConfig) -> list[str]:
    """Write the three PNG figures into ``out``; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ...core import NexParams, diagnose_response
    from ...plots import plot_inverted_u, plot_nex_vs_accuracy, plot_token_neuron_curve, save_figure

    acc = [r.accuracy for r in merge]
    names = [f"{r.lam:g}" for r in merge]
    written = []
    fig = plot_nex_vs_accuracy([r.nex_score for r in merge], acc, names, title="SLERP family: NEX vs accuracy (labels: lambda)")
    save_figure(fig, out / "nex_vs_accuracy.png", command="nex demo")
    plt.close(fig)
    written.append("nex_vs_accuracy.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    plot_inverted_u(hi_rows, acc, ax=axes[0], xlabel="high-entropy rows per response", title="Accuracy vs entropy proxy")
    plot_inverted_u([r.mean_e_segments for r in merge], acc, ax=axes[1], xlabel="E segments per response", title="Accuracy vs E segments")
    fig.tight_layout()
    save_figure(fig, out / "inverted_u.png", command="nex demo")
    plt.close(fig)
    written.append("inverted_u.png")

    # one response of the best variant: the longest correct worked solution, preferring one in
    # which the HMM found an explore phase (so the figure shows both kinds of span)
    cache = variant_cache(out, best.name)
    responses = variant_responses(out, best.name, cache)
    diags = [diagnose_response(cache, j, NexParams()) for j in range(len(responses))]
    order = sorted(range(len(responses)), key=lambda j: (not best.correct[j], diags[j].n_e_segments == 0,
                                                         -len(responses[j]["response"].split()), j))
    i = order[0]
    d = diags[i]
    tokens = responses[i]["response"].split()
    gold = np.array([l == "E" for l in label_tokens(tokens)])
    row_tok = np.asarray(d.tokens, dtype=np.int64)
    edges = np.concatenate([[0], np.cumsum(row_tok)])
    gold_rows = [bool(gold[a:b].mean() >= 0.5) if b > a and b <= len(gold) else False for a, b in zip(edges[:-1], edges[1:])]
    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    plot_token_neuron_curve(row_tok, d.n_new, d.labels, ax=axes[0], title=f"{best.name}, {responses[i]['id']}: HMM phases (E shaded)")
    plot_token_neuron_curve(row_tok, d.n_new, gold_rows, ax=axes[1], title="same response: generator's E/X labels (row majority)")
    fig.tight_layout()
    save_figure(fig, out / "token_neuron_curve.png", command="nex demo")
    plt.close(fig)
    written.append("token_neuron_curve.png")
    return written
