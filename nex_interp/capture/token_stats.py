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
``[batch, pos, vocab]`` logits tensor of a plain forward pass is never materialised. Each chunk's
logits ``z`` are read a few times and exponentiated once: with ``m = max_j z_j``,
``e_j = exp(z_j - m)``, ``S = sum_j e_j`` and ``log Z = m + log S``, every statistic follows
without a log-softmax tensor (when every row's max is small enough for ``exp(z)`` not to overflow,
the shift ``m`` is skipped, ``log Z = log S``): ``log p(t) = z_t - log Z``, ``H = log Z - sum_j e_j z_j / S``,
``top1 = m - log Z``, the top-k mean is ``mean(topk(z)) - log Z`` and the vocabulary mean is
``mean(z) - log Z``.
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
#: rows whose largest logit is below this in magnitude are exponentiated unshifted (float32 exp overflows past 88)
_NO_SHIFT = 60.0


def token_stats(
    hidden: "Float[Tensor, 'n d_model']",
    targets: "Int[Tensor, 'n']",
    unembed,
    topk: int = DEFAULT_TOPK,
    softcap: float | None = None,
    chunk: int = 128,
) -> dict[str, np.ndarray]:
    """Statistics of the distributions predicted from ``hidden`` (one row per response token)."""
    import torch

    n = hidden.shape[0]
    dev = hidden.device
    cols = {k: torch.empty(n, dtype=torch.float32, device=dev) for k in ARRAYS if k != "ids"}
    buf = None
    for s in range(0, n, chunk):
        z = unembed(hidden[s : s + chunk])
        z = z.float() if z.dtype != torch.float32 else z  # a fresh tensor either way: changed in place
        if softcap:
            z.div_(softcap).tanh_().mul_(softcap)
        m, v = z.shape
        top = z.topk(min(topk, v), dim=-1).values  # sorted: column 0 is the max
        if buf is None or buf.shape[0] < m:
            buf = torch.empty_like(z)
        if bool((top[:, 0].abs() < _NO_SHIFT).all()):  # exp(z) cannot overflow: skip the shift (one pass less)
            e = torch.exp(z, out=buf[:m])
            total = e.sum(-1)
            log_z = total.log()
        else:
            e = torch.sub(z, top[:, :1], out=buf[:m]).exp_()
            total = e.sum(-1)
            log_z = top[:, 0] + total.log()
        sl = slice(s, s + m)
        cols["logprob"][sl] = z.gather(-1, targets[sl, None])[:, 0] - log_z
        cols["entropy"][sl] = log_z - torch.linalg.vecdot(e, z) / total
        cols["top1_logprob"][sl] = top[:, 0] - log_z
        cols["topk_mean_logprob"][sl] = top.mean(-1) - log_z
        cols["vocab_mean_logprob"][sl] = z.mean(-1) - log_z
        del z, e, top
    out = {k: v.cpu().numpy() for k, v in cols.items()}
    out["ids"] = targets.cpu().numpy().astype(np.int32)
    return {k: out[k] for k in ARRAYS}
