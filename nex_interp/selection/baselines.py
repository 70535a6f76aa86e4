"""Output-side confidence signals of one response, on plain per-token numpy arrays.

These are the baselines NEX is measured against. Each takes the per-token statistics that
capture stores beside the activation cache (see :mod:`nex_interp.selection.token_inputs`) and
returns one number per response; none needs a model, so each is tested on hand-made arrays.

Definitions (``T`` response tokens, vocabulary size ``V``, ``p_t`` the next-token distribution the
model produced at response position ``t``):

* **Self-certainty** (Kang et al. 2025, "Scalable Best-of-N Selection for Large Language Models
  via Self-Certainty", arXiv 2502.18581): the mean over tokens of ``KL(U || p_t)``, the divergence
  of the model's distribution from uniform ``U``. Expanding the KL::

      KL(U || p_t) = sum_j (1/V) log((1/V) / p_t(j)) = -log V - (1/V) sum_j log p_t(j)

  so ``self_certainty = -(1/T) sum_t [ (1/V) sum_j log p_t(j) ] - log V``. It is 0 for a uniform
  distribution and grows as the distribution concentrates; higher means more certain. Only the
  per-token mean of ``log p_t(j)`` over the vocabulary is needed.
* **DeepConf lowest group confidence** (Fu et al. 2025, "Deep Think with Confidence",
  arXiv 2508.15260): token confidence ``C_t = -(1/k) sum_{j<=k} log p_t(j)`` over the ``k`` most
  likely tokens; group confidence is the mean of ``C_t`` over a sliding window of ``n`` tokens
  (stride 1); the response's score is its *lowest* group confidence. Higher is better. A response
  shorter than the window forms one group.
* **Mean entropy**: mean over tokens of ``H(p_t)``; lower is better.
* **High-entropy rows** (the entropy exploration proxy of ``nex rank`` and ``nex demo``): the number
  of a response's rows whose mean token entropy exceeds a threshold shared by all the variants
  compared (a quantile of their pooled row entropies, chosen by the caller).
* **Length**: number of response tokens; shorter is better (Hassid et al. 2025, "Don't Overthink
  It: Preferring Shorter Thinking Chains for Improved LLM Reasoning", arXiv 2505.17813).
"""

from __future__ import annotations

import math

import numpy as np

#: DeepConf's sliding-window size in tokens (Fu et al. 2025 use 2048)
DEEPCONF_WINDOW = 2048


def self_certainty(vocab_mean_logprob: np.ndarray, vocab_size: int) -> float:
    """Mean over tokens of KL(uniform || p_t), from each token's mean log-probability over the vocabulary.

    ``vocab_mean_logprob[t] = (1/V) * sum_j log p_t(j)``. Returns NaN for an empty response.

    >>> round(self_certainty(np.array([-math.log(4.0)]), 4), 12)  # uniform over 4 tokens
    0.0
    """
    x = np.asarray(vocab_mean_logprob, dtype=np.float64)
    if x.size == 0 or vocab_size <= 0:
        return float("nan")
    return float(-x.mean() - math.log(vocab_size))


def token_confidence(topk_logprobs: np.ndarray) -> np.ndarray:
    """DeepConf token confidence ``-(1/k) sum_j log p_t(j)`` over the top-k; input ``[T, k]``, output ``[T]``."""
    lp = np.asarray(topk_logprobs, dtype=np.float64)
    if lp.ndim != 2:
        raise ValueError(f"topk_logprobs must be [tokens, k], got shape {lp.shape}")
    return -lp.mean(axis=1)


def lowest_group_confidence(confidence: np.ndarray, window: int = DEEPCONF_WINDOW) -> float:
    """Minimum over sliding windows (stride 1) of the mean token confidence; NaN if empty.

    >>> lowest_group_confidence(np.array([3.0, 1.0, 2.0, 5.0]), window=2)
    1.5
    """
    c = np.asarray(confidence, dtype=np.float64)
    if c.size == 0:
        return float("nan")
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    n = min(int(window), c.size)
    csum = np.concatenate([[0.0], np.cumsum(c)])
    means = (csum[n:] - csum[:-n]) / n
    return float(means.min())


def mean_entropy(entropy: np.ndarray) -> float:
    """Mean per-token entropy (nats); NaN for an empty response."""
    e = np.asarray(entropy, dtype=np.float64)
    return float(e.mean()) if e.size else float("nan")


def row_token_counts(n_tokens: int, row_tokens: int) -> np.ndarray:
    """Token count of each row when ``n_tokens`` tokens are cut into rows of ``row_tokens`` (the last
    may be shorter), as capture cuts a response.

    >>> row_token_counts(5, 2).tolist()
    [2, 2, 1]
    """
    if int(row_tokens) <= 0:
        raise ValueError(f"row_tokens must be positive, got {row_tokens}")
    full, rest = divmod(int(n_tokens), int(row_tokens))
    return np.asarray([int(row_tokens)] * full + ([rest] if rest else []), dtype=np.int64)


def row_mean_entropies(entropy: np.ndarray, rows: "int | np.ndarray") -> np.ndarray:
    """Mean token entropy of each row of one response.

    ``rows`` is either the token count of each row, in order (a cache's own rows: the differences
    of its ``token_row_ptr`` over the response; they must cover ``entropy`` exactly), or one int,
    ``row_tokens``: consecutive rows of that many tokens, the last possibly shorter
    (:func:`row_token_counts`). A row of 0 tokens has NaN entropy.

    >>> row_mean_entropies(np.array([0.0, 2.0, 4.0, 1.0, 1.0]), 2).tolist()
    [1.0, 2.5, 1.0]
    >>> row_mean_entropies(np.array([0.0, 2.0, 4.0, 1.0, 1.0]), [3, 0, 2]).tolist()
    [2.0, nan, 1.0]
    """
    e = np.asarray(entropy, dtype=np.float64)
    if np.ndim(rows) == 0:
        counts = row_token_counts(e.size, int(rows))
    else:
        counts = np.asarray(rows, dtype=np.int64)
        if counts.ndim != 1 or (counts < 0).any():
            raise ValueError("row token counts must be a one-dimensional array of non-negative integers")
        if int(counts.sum()) != e.size:
            raise ValueError(f"the rows span {int(counts.sum())} tokens but there are {e.size} entropy values")
    out = np.full(len(counts), np.nan)
    filled = counts > 0
    if filled.any():
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[filled]
        out[filled] = np.add.reduceat(e, starts) / counts[filled]
    return out


def high_entropy_rows(entropy: np.ndarray, rows: "int | np.ndarray", threshold: float) -> int:
    """The entropy exploration proxy of one response: how many of its rows (``rows`` as in
    :func:`row_mean_entropies`) have a mean token entropy above ``threshold``.

    >>> high_entropy_rows(np.array([0.1, 0.1, 2.0, 2.0, 0.1]), 2, threshold=1.0)
    1
    """
    return int((row_mean_entropies(entropy, rows) > threshold).sum())
