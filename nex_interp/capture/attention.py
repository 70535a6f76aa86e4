"""The HF model's own (SDPA) attention during a capture pass.

TransformerLens 4 re-implements attention step by step (scores, mask, softmax, mixing) so that its
attention-score and pattern hooks fire; it forces eager attention for the same reason. Capture
hooks MLP activations only, so it needs none of that: :func:`hf_attention` swaps, for the duration
of a ``with`` block, every attention component of the bridge for the HF module it wraps and sets
the model's attention implementation to ``"sdpa"`` (PyTorch's fused scaled-dot-product attention).
MLP, norm and block hook points stay in place. On SmolLM2-135M on a CPU the bridge's eager
attention cost about 1.7x the time of an SDPA forward pass at 1000 tokens (docs/capture.md).

Everything is restored on exit, also when the pass raises (e.g. to stop after the last layer).
"""

from __future__ import annotations

import contextlib
from typing import Iterator


def _attention_swaps(hf_model) -> list[tuple[object, str, object, object]]:
    """(parent, attribute, bridge component, wrapped HF module) for every attention bridge."""
    import torch

    swaps = []
    for parent in hf_model.modules():
        for name, child in parent.named_children():
            original = getattr(child, "original_component", None)
            if type(child).__name__.endswith("AttentionBridge") and isinstance(original, torch.nn.Module):
                swaps.append((parent, name, child, original))
    return swaps


def _configs(hf_model) -> list[object]:
    """The model's config and every distinct config its modules hold (attention modules read theirs)."""
    seen: dict[int, object] = {id(hf_model.config): hf_model.config}
    for m in hf_model.modules():
        c = getattr(m, "config", None)
        if c is not None and hasattr(c, "_attn_implementation"):
            seen.setdefault(id(c), c)
    return list(seen.values())


@contextlib.contextmanager
def hf_attention(hf_model, implementation: str = "sdpa") -> Iterator[int]:
    """Run ``hf_model``'s attention through its own HF modules with ``implementation``; yields the
    number of attention components swapped (0 when the model is not wrapped by a bridge)."""
    swaps = _attention_swaps(hf_model)
    configs = _configs(hf_model)
    before = [c._attn_implementation for c in configs]
    try:
        for parent, name, _bridge, original in swaps:
            setattr(parent, name, original)
        for c in configs:
            c._attn_implementation = implementation
        yield len(swaps)
    finally:
        for c, impl in zip(configs, before):
            c._attn_implementation = impl
        for parent, name, bridge, _original in swaps:
            setattr(parent, name, bridge)
