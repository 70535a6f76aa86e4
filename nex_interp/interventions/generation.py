"""Batched greedy generation with a KV cache, optionally driving other models in lockstep.

Every condition of an experiment (untouched, transplanted, patched, ablated) is decoded by the same
loop, so differences in accuracy come from the intervention, not from the decoder. The loop runs
the Hugging Face model of a :class:`~nex_interp.models.loader.LoadedModel` (its bridge's hooks
fire inside it). ``lockstep`` models receive exactly the same input tokens, attention mask and positions at every
step, each with its own KV cache, *before* the main model: this is what activation patching
during generation needs (the donor's activations on the recipient's tokens).

Prompts are left-padded; position ids follow the attention mask, so a padded prompt decodes as it
would alone (up to floating-point summation order).

Without lockstep models, a Qwen3 model (the zoo's) decodes by :func:`nex_interp.decoding.decode`
(the same tokens, several times faster; hooks and transplanted weights act the same). Otherwise
decoding runs through the HF model, so the bridge's KV-cache keyword repair
(:func:`nex_interp.models.hooks.repair_bridge_kv_cache`) must be in place; it is applied to every
model here (a no-op for models :func:`nex_interp.models.loader.load_model` booted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from jaxtyping import Int

from nex_interp import decoding
from nex_interp.models.hooks import repair_bridge_kv_cache

if TYPE_CHECKING:
    from torch import Tensor

    from nex_interp.models.loader import LoadedModel
else:
    Tensor = Any


def _forward(model: Any, input_ids: Any, attention_mask: Any, position_ids: Any, cache: Any) -> tuple[Any, Any]:
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache, use_cache=True)
    return out.logits[:, -1, :], out.cache


def greedy_generate(
    model: "LoadedModel",
    input_ids: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"],
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int,
    lockstep: Sequence["LoadedModel"] = (),
) -> Int[Tensor, "batch new"]:
    """Greedy continuation of left-padded prompts; returns the new tokens (``pad`` after EOS).

    ``model`` and each of ``lockstep`` are loaded models (their HF models decode). A sequence
    stops at its first ``eos_token_id``; the loop stops when all have, or after ``max_new_tokens``.
    """
    import torch

    batch = input_ids.shape[0]
    device = input_ids.device
    if not lockstep and max_new_tokens > 0 and decoding.supported(model.hf_model):
        return _fast_greedy(model, input_ids, attention_mask, max_new_tokens, eos_token_id, pad_token_id)
    mask = attention_mask.to(device=device, dtype=torch.long)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    caches: list[Any] = [None] * (len(lockstep) + 1)
    step_ids, step_pos = input_ids, positions
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    new_tokens = []
    for m in (*lockstep, model):
        repair_bridge_kv_cache(m.hf_model)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            for i, other in enumerate(lockstep):
                _, caches[i] = _forward(other.hf_model, step_ids, mask, step_pos, caches[i])
            logits, caches[-1] = _forward(model.hf_model, step_ids, mask, step_pos, caches[-1])
            nxt = logits.argmax(dim=-1)
            nxt = torch.where(done, torch.full_like(nxt, pad_token_id), nxt)
            new_tokens.append(nxt)
            if eos_token_id is not None:
                done = done | (nxt == eos_token_id)
            if bool(done.all()):
                break
            step_ids = nxt[:, None]
            step_pos = step_pos[:, -1:] + 1
            mask = torch.cat([mask, torch.ones(batch, 1, dtype=mask.dtype, device=device)], dim=1)
    if not new_tokens:
        return torch.zeros(batch, 0, dtype=torch.long, device=device)
    return torch.stack(new_tokens, dim=1)


def _fast_greedy(model: "LoadedModel", input_ids: Any, attention_mask: Any, max_new_tokens: int,
                 eos_token_id: int | None, pad_token_id: int) -> Any:
    """The same continuation by :func:`nex_interp.decoding.decode` (Qwen3 models, no lockstep):
    it calls the model's own modules, so the bridge's hooks (ablation) and transplanted weights
    act as in the loop above (``tests/test_interventions_ops.py`` checks both paths agree)."""
    import torch

    prompts = [row[m.bool()].tolist() for row, m in zip(input_ids.cpu(), attention_mask.cpu())]
    eos = {eos_token_id} if eos_token_id is not None else set()
    seqs = decoding.decode(model.hf_model, prompts, 1, max_new_tokens, eos, decoding.greedy, pad_token_id)
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out.to(input_ids.device)
