"""Batched greedy generation with a KV cache, optionally driving other models in lockstep.

Every condition of an experiment (untouched, transplanted, patched, ablated) is decoded by the same
loop, so differences in accuracy come from the intervention, not from the decoder. The loop runs
the Hugging Face model that a TransformerLens bridge wraps (the bridge's hooks fire inside it).
``lockstep`` models receive exactly the same input tokens, attention mask and positions at every
step, each with its own KV cache, *before* the main model: this is what activation patching
during generation needs (the donor's activations on the recipient's tokens).

Prompts are left-padded; position ids follow the attention mask, so a padded prompt decodes as it
would alone (up to floating-point summation order).

KV cache and TransformerLens 4.3 on transformers 5.24: the bridge's attention components look for
the cache under the keyword ``past_key_values`` (or ``layer_past``), but transformers 5.24 passes
it as ``cache``. Unrepaired, the cache stays empty and every decoding step attends to its own
token only (HF ``generate`` on the wrapped model is silently wrong too). :func:`bridge_kv_cache`
maps the keyword for the duration of a generation.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from jaxtyping import Int

if TYPE_CHECKING:
    from torch import Tensor
else:
    Tensor = Any


def _cache_keyword(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
        return args, {**kwargs, "past_key_values": kwargs["cache"]}
    return None


@contextlib.contextmanager
def bridge_kv_cache(model: Any) -> Iterator[int]:
    """Within the block, the bridge attention modules inside HF ``model`` use the KV cache it is given.

    Installs a forward pre-hook on every module that has the bridge's ``_update_kv_cache`` that
    copies the ``cache`` keyword to ``past_key_values``; removes them on exit. Yields how many
    modules were repaired (0 for a model not wrapped by a bridge).
    """
    handles = [m.register_forward_pre_hook(_cache_keyword, with_kwargs=True) for m in model.modules() if hasattr(m, "_update_kv_cache")]
    try:
        yield len(handles)
    finally:
        for h in handles:
            h.remove()


def _forward(model: Any, input_ids: Any, attention_mask: Any, position_ids: Any, cache: Any) -> tuple[Any, Any]:
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache, use_cache=True)
    return out.logits[:, -1, :], out.cache


def greedy_generate(
    model: Any,
    input_ids: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"],
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int,
    lockstep: Sequence[Any] = (),
) -> Int[Tensor, "batch new"]:
    """Greedy continuation of left-padded prompts; returns the new tokens (``pad`` after EOS).

    ``model`` and each of ``lockstep`` are HF causal LMs (e.g. ``bridge.original_model``). A
    sequence stops at its first ``eos_token_id``; the loop stops when all have, or after
    ``max_new_tokens``.
    """
    import torch

    batch = input_ids.shape[0]
    device = input_ids.device
    mask = attention_mask.to(device=device, dtype=torch.long)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    caches: list[Any] = [None] * (len(lockstep) + 1)
    step_ids, step_pos = input_ids, positions
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    new_tokens = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        for m in (*lockstep, model):
            stack.enter_context(bridge_kv_cache(m))
        for _ in range(max_new_tokens):
            for i, other in enumerate(lockstep):
                _, caches[i] = _forward(other, step_ids, mask, step_pos, caches[i])
            logits, caches[-1] = _forward(model, step_ids, mask, step_pos, caches[-1])
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
