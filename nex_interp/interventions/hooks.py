"""TransformerLens hook plumbing shared by patching and ablation.

The neuron activation of layer ``L`` is the input of the MLP's output projection,
``blocks.{L}.mlp.out.hook_in`` (shape ``[batch, pos, d_mlp]``): ``act(gate) * up`` for gated MLPs
(Qwen3, Llama), ``act(W_in x + b_in)`` for plain ones (GPT-2). Hooks are installed by
:func:`installed`, a context manager that removes exactly the hooks it added in ``finally``, so
an exception inside the block never leaves a hook behind.

Because :class:`transformer_lens.TransformerBridge` swaps its components into the Hugging Face
model it wraps, the hooks also fire when the HF model's own ``forward`` runs (KV-cached
generation), not only through ``bridge(...)``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

if TYPE_CHECKING:  # torch is imported lazily by callers; these are for annotations only
    import torch

#: the canonical TransformerLens 4 hook of the neuron activations of layer ``{layer}``
NEURON_HOOK = "blocks.{layer}.mlp.out.hook_in"

HookFn = Callable[["torch.Tensor", Any], "torch.Tensor | None"]


def neuron_hook_name(layer: int) -> str:
    """``blocks.{layer}.mlp.out.hook_in``: where layer ``layer``'s neuron activations are hooked."""
    return NEURON_HOOK.format(layer=int(layer))


def n_layers_of(bridge: Any) -> int:
    """Number of transformer blocks of a bridge."""
    return len(bridge.blocks)


def d_mlp_of(bridge: Any) -> int:
    """MLP width (neurons per layer) of a bridge."""
    return int(bridge.cfg.d_mlp)


@contextlib.contextmanager
def installed(bridge: Any, fwd_hooks: Sequence[tuple[str, HookFn]]) -> Iterator[Any]:
    """Add forward hooks ``(hook name, fn)`` to ``bridge`` for the duration of the block.

    Exactly the hooks added here are removed on exit, normally or by an exception (raised in the
    block or inside a hook); hooks the caller attached before are left alone.
    """
    ctx = bridge.hooks(fwd_hooks=list(fwd_hooks), reset_hooks_end=True)
    with ctx:
        yield bridge


def attached_hook_count(bridge: Any) -> int:
    """How many forward and backward hook functions are attached to ``bridge`` (leak checks)."""
    return sum(len(hp.fwd_hooks) + len(hp.bwd_hooks) for hp in bridge.hook_points())
