"""A capture pass through the HF modules themselves, with TransformerLens hook names.

TransformerLens 4's bridge wraps every HF module in a component that fires hook points; its
attention component even re-implements attention step by step (forcing eager attention) so that
score and pattern hooks fire. Capture reads two kinds of values only: the input of each MLP output
projection (``blocks.{L}.mlp.out.hook_in``) and the final norm's output (``ln_final.hook_out``).
:func:`hf_pass` runs a forward pass as the plain HF model would (the bridge's components swapped
for the HF modules they wrap, attention through PyTorch's fused SDPA), and delivers those values
to functions registered under the bridge's hook names, as PyTorch hooks on the very HF modules the
bridge maps those names to. The bridge still tells which module a name means, so any architecture
TransformerLens supports works the same way; the values are the ones the bridge's hooks see.

On SmolLM2-135M on a CPU, the bridge's eager attention made a 1018-token pass cost 1.7-1.9x an
SDPA pass (docs/capture.md).
Everything is restored on exit, also when a hook stops the pass early by raising.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator


def _unwrap_all(root) -> list[tuple[object, str, object]]:
    """Replace, under ``root``, every bridge component by the module it wraps (recursively);
    returns ``(parent, attribute, bridge component)`` for undoing it."""
    import torch

    undo, stack = [], [root]
    while stack:
        parent = stack.pop()
        for name, child in list(parent.named_children()):
            original = getattr(child, "original_component", None)
            while isinstance(original, torch.nn.Module) and type(child).__module__.startswith("transformer_lens"):
                undo.append((parent, name, child))
                setattr(parent, name, original)
                child, original = original, getattr(original, "original_component", None)
            stack.append(child)
    return undo


def _configs(hf_model) -> list[object]:
    """The model's config and every distinct config its modules hold (attention modules read theirs)."""
    seen: dict[int, object] = {id(hf_model.config): hf_model.config}
    for m in hf_model.modules():
        c = getattr(m, "config", None)
        if c is not None and hasattr(c, "_attn_implementation"):
            seen.setdefault(id(c), c)
    return list(seen.values())


def hooked_module(bridge, hook_name: str):
    """``(HF module, "in"|"out")`` for a bridge hook name ending in ``.hook_in`` or ``.hook_out``."""
    path, _, kind = hook_name.rpartition(".")
    if kind not in ("hook_in", "hook_out") or hook_name not in bridge.hook_dict:
        raise KeyError(f"the model has no hook point {hook_name!r}")
    component = bridge.get_submodule(path)
    module = getattr(component, "original_component", None)
    if module is None:
        raise KeyError(f"hook point {hook_name!r} wraps no HF module")
    return module, kind[5:]


@contextlib.contextmanager
def hf_pass(model, hooks: list[tuple[str, Callable]], attention: str = "sdpa") -> Iterator[None]:
    """Within the block, ``model.hf_model`` runs as the plain HF model with ``attention`` and calls
    each ``fn(value)`` of ``hooks`` (``(bridge hook name, fn)``) with the value that hook point sees."""
    bridge = model.bridge
    targets = [(*hooked_module(bridge, name), fn) for name, fn in hooks]
    hf = model.hf_model
    handles, undo = [], []
    configs = _configs(hf)
    before = [c._attn_implementation for c in configs]
    try:
        undo = _unwrap_all(hf)
        for c in configs:
            c._attn_implementation = attention
        for module, kind, fn in targets:
            if kind == "in":
                handles.append(module.register_forward_pre_hook(lambda mod, args, fn=fn: fn(args[0])))
            else:
                handles.append(module.register_forward_hook(lambda mod, args, out, fn=fn: fn(out[0] if isinstance(out, tuple) else out)))
        yield
    finally:
        for h in handles:
            h.remove()
        for c, impl in zip(configs, before):
            c._attn_implementation = impl
        for parent, name, component in reversed(undo):
            setattr(parent, name, component)
