"""The registered best-of-N methods: NEX and every baseline a user would otherwise pick.

Importing :mod:`nex_interp.selection` registers them. Per-token inputs use the names of
:mod:`nex_interp.selection.token_inputs`.
"""

from __future__ import annotations

import numpy as np

from . import baselines
from .candidates import CandidateSet
from .registry import SelectionOptions, register_method
from .token_inputs import ENTROPY, TOPK_MEAN_LOGPROB, VOCAB_MEAN_LOGPROB

NEX_CITATION = (
    "Chen et al. 2026, NEX: Neuron Explore-Exploit Scoring for Label-Free Chain-of-Thought "
    "Selection and Model Ranking, arXiv 2602.05805"
)


def _per_response(values: list[np.ndarray | None], fn) -> np.ndarray:
    return np.asarray([float("nan") if v is None or len(v) == 0 else fn(v) for v in values], dtype=np.float64)


def _register_gmf(name: str, summary: str) -> None:
    """Register ``name`` as a score method picking the highest precomputed GMF score of that name."""
    register_method(name, kind="score", citation=NEX_CITATION, summary=summary, requires=(f"score:{name}",))(
        lambda c, o: c.scores[name]
    )


_register_gmf(
    "nex_gmf",
    "highest Good-Mass Fraction, weights self-calibrated on the problem's own candidates (no labels)",
)
_register_gmf(
    "nex_gmf_pooled",
    "highest Good-Mass Fraction, weights self-calibrated on all problems' candidates pooled (no labels)",
)
_register_gmf(
    "nex_gmf_calibrated",
    "highest Good-Mass Fraction, weights learned on a separate unlabeled calibration set",
)


@register_method(
    "nex_weighted_vote",
    kind="vote",
    citation=NEX_CITATION,
    summary="majority vote over extracted answers, each response's vote weighted by its self-calibrated GMF",
    requires=("score:nex_gmf", "answers"),
)
def _nex_vote(c: CandidateSet, o: SelectionOptions) -> np.ndarray:
    w = np.asarray(c.scores["nex_gmf"], dtype=np.float64)
    return np.where(np.isfinite(w), np.clip(w, 0.0, None), 0.0)


@register_method(
    "random",
    kind="score",
    citation="uniform choice among the candidates (expected accuracy, computed exactly)",
    summary="expected accuracy of a uniformly random pick: the mean correctness per problem",
)
def _random(c: CandidateSet, o: SelectionOptions) -> np.ndarray:
    return np.zeros(len(c))


@register_method(
    "majority_vote",
    kind="vote",
    citation="Wang et al. 2023, Self-Consistency Improves Chain of Thought Reasoning in Language Models, ICLR 2023 (arXiv 2203.11171)",
    summary="the most frequent extracted answer (self-consistency)",
    requires=("answers",),
)
def _majority(c: CandidateSet, o: SelectionOptions) -> np.ndarray:
    return np.ones(len(c))


@register_method(
    "self_certainty",
    kind="score",
    citation="Kang et al. 2025, Scalable Best-of-N Selection for Large Language Models via Self-Certainty, arXiv 2502.18581",
    summary="highest mean KL(uniform || p) over response tokens",
    requires=(f"token:{VOCAB_MEAN_LOGPROB}", "meta:vocab_size"),
)
def _self_certainty(c: CandidateSet, o: SelectionOptions) -> np.ndarray:
    v = int(c.meta["vocab_size"])
    return _per_response(c.token_stats[VOCAB_MEAN_LOGPROB], lambda x: baselines.self_certainty(x, v))


@register_method(
    "deepconf",
    kind="score",
    citation="Fu et al. 2025, Deep Think with Confidence, arXiv 2508.15260",
    summary="highest lowest-group confidence (sliding-window mean of -mean top-k log-prob)",
    requires=(f"token:{TOPK_MEAN_LOGPROB}",),
)
def _deepconf(c: CandidateSet, o: SelectionOptions) -> np.ndarray:
    return _per_response(
        c.token_stats[TOPK_MEAN_LOGPROB], lambda x: baselines.lowest_group_confidence(-np.asarray(x), o.deepconf_window)
    )


@register_method(
    "mean_entropy",
    kind="score",
    citation="mean next-token entropy as a confidence proxy (e.g. Kadavath et al. 2022, arXiv 2207.05221)",
    summary="lowest mean token entropy",
    requires=(f"token:{ENTROPY}",),
)
def _mean_entropy(c: CandidateSet, o: SelectionOptions) -> np.ndarray:
    return -_per_response(c.token_stats[ENTROPY], baselines.mean_entropy)


@register_method(
    "length",
    kind="score",
    citation="Hassid et al. 2025, Don't Overthink It: Preferring Shorter Thinking Chains for Improved LLM Reasoning, arXiv 2505.17813",
    summary="shortest response (fewest tokens)",
    requires=("n_tokens",),
)
def _length(c: CandidateSet, o: SelectionOptions) -> np.ndarray:
    return -np.asarray(c.n_tokens, dtype=np.float64)


@register_method(
    "oracle",
    kind="score",
    citation="upper bound: a problem counts as solved if any candidate is correct (pass@N)",
    summary="any correct candidate (uses the labels; a ceiling, not a selector)",
    requires=("correct",),
    uses_labels=True,
)
def _oracle(c: CandidateSet, o: SelectionOptions) -> np.ndarray:
    return np.nan_to_num(np.asarray(c.correct, dtype=np.float64), nan=0.0)
