"""Per-token output statistics computed during capture, for the selection baselines.

Stored as the cache stream ``tokens`` (one value per response token, pointer ``tokens/ptr.int64``):

==========================  =======  ==================================================================
array                       dtype    meaning (``p_t``: the model's next-token distribution before token t)
==========================  =======  ==================================================================
``ids``                     int32    the response token id
``logprob``                 float32  ``log p_t(token_t)``, the chosen token's log-probability
``entropy``                 float32  ``H(p_t)`` in nats
``top1_logprob``            float32  ``max_j log p_t(j)``
``topk_mean_logprob``       float32  mean of the ``k`` largest ``log p_t(j)`` (DeepConf; ``k`` in the manifest)
``vocab_mean_logprob``      float32  ``(1/V) sum_j log p_t(j)`` (self-certainty = ``-this - log V``)
==========================  =======  ==================================================================

Logits are computed here from the final-norm hidden states in chunks of positions, so the full
``[batch, pos, vocab]`` logits tensor of a plain forward pass is never materialised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from jaxtyping import Float, Int
    from torch import Tensor

STREAM = "tokens"
ARRAYS = ("ids", "logprob", "entropy", "top1_logprob", "topk_mean_logprob", "vocab_mean_logprob")
DEFAULT_TOPK = 20


def token_stats(
    hidden: "Float[Tensor, 'n d_model']",
    targets: "Int[Tensor, 'n']",
    unembed,
    topk: int = DEFAULT_TOPK,
    softcap: float | None = None,
    chunk: int = 256,
) -> dict[str, np.ndarray]:
    """Statistics of the distributions predicted from ``hidden`` (one row per response token)."""
    import torch

    n = hidden.shape[0]
    cols: dict[str, list] = {k: [] for k in ARRAYS if k != "ids"}
    for s in range(0, n, chunk):
        logits = unembed(hidden[s : s + chunk]).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        logp = torch.log_softmax(logits, dim=-1)
        del logits
        t = targets[s : s + chunk]
        cols["logprob"].append(logp.gather(-1, t[:, None])[:, 0])
        cols["entropy"].append(-(logp.exp() * logp).sum(-1))
        top = logp.topk(min(topk, logp.shape[-1]), dim=-1).values
        cols["top1_logprob"].append(top[:, 0])
        cols["topk_mean_logprob"].append(top.mean(-1))
        cols["vocab_mean_logprob"].append(logp.mean(-1))
    out = {k: (torch.cat(v).cpu().numpy().astype(np.float32) if v else np.zeros(0, np.float32)) for k, v in cols.items()}
    out["ids"] = targets.cpu().numpy().astype(np.int32)
    return {k: out[k] for k in ARRAYS}
