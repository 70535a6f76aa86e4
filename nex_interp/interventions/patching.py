"""Activation patching: the recipient's selected neurons take the donor's activations on the same tokens.

Inside :func:`patch_from_donor`, each forward pass of the donor records the selected neurons'
activations (``blocks.{L}.mlp.out.hook_in``, the input of the down/out projection), and the next
forward pass of the recipient replaces its own values of those neurons with the recorded ones.
The two models must therefore run in lockstep on the same tokens: donor first, then recipient.
That holds for a teacher-forced pass (:func:`run_patched`) and for KV-cached generation, where
each decoding step feeds the same new tokens to both models (``lockstep`` in
:func:`nex_interp.interventions.generation.greedy_generate`).

A recipient pass that finds no fresh donor activations, or donor activations of another shape,
raises ``RuntimeError`` (a programming error: the donor did not run on the same tokens first).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from jaxtyping import Float, Int

from nex_interp.models.hooks import installed_hooks, neuron_hook_name

from .neuron_sets import NeuronSet
from .transplant import check_same_architecture

if TYPE_CHECKING:
    from torch import Tensor

    from nex_interp.models.loader import LoadedModel
else:  # jaxtyping needs a name at import time; torch is loaded by the functions that use it
    Tensor = Any


@dataclass
class PatchSession:
    """State of an active patch: the donor activations waiting for the recipient, per layer."""

    pending: dict[int, Any] = field(default_factory=dict)
    donor_passes: int = 0
    recipient_passes: int = 0


@contextlib.contextmanager
def patch_from_donor(donor: "LoadedModel", recipient: "LoadedModel", neurons: NeuronSet) -> Iterator[PatchSession]:
    """Within the block, every recipient pass uses the donor's activations for ``neurons``.

    ``donor`` and ``recipient`` are loaded models of the same architecture. Run the
    donor on the tokens first, then the recipient on the same tokens (same batch and positions).
    Hooks are removed on exit, also after an exception.
    """
    check_same_architecture(donor, recipient)
    neurons.check_fits(recipient.n_layers, recipient.d_mlp, "recipient")
    session = PatchSession()
    groups = neurons.by_layer()
    last_layer = max(groups) if groups else None
    index_cache: dict[tuple[int, Any], Any] = {}

    def units_on(layer: int, device: Any) -> Any:
        import torch

        key = (layer, device)
        if key not in index_cache:
            index_cache[key] = torch.as_tensor(groups[layer], dtype=torch.long, device=device)
        return index_cache[key]

    def record(layer: int):
        def fn(x, hook):
            session.pending[layer] = x.index_select(-1, units_on(layer, x.device)).detach().clone()
            if layer == last_layer:
                session.donor_passes += 1
            return None
        return fn

    def replace(layer: int):
        def fn(x, hook):
            src = session.pending.pop(layer, None)
            if src is None:
                raise RuntimeError(f"patching layer {layer}: the donor has not run on these tokens first")
            if tuple(src.shape[:-1]) != tuple(x.shape[:-1]):
                raise RuntimeError(f"patching layer {layer}: donor activations {tuple(src.shape)} do not match recipient {tuple(x.shape)}")
            out = x.clone()
            out.index_copy_(-1, units_on(layer, x.device), src.to(device=x.device, dtype=x.dtype))
            if layer == last_layer:
                session.recipient_passes += 1
            return out
        return fn

    donor_hooks = [(neuron_hook_name(L), record(L)) for L in groups]
    recipient_hooks = [(neuron_hook_name(L), replace(L)) for L in groups]
    with installed_hooks(donor, donor_hooks), installed_hooks(recipient, recipient_hooks):
        try:
            yield session
        finally:
            session.pending.clear()


def run_patched(
    donor: "LoadedModel",
    recipient: "LoadedModel",
    neurons: NeuronSet,
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"] | None = None,
) -> Float[Tensor, "batch pos vocab"]:
    """Teacher-forced: the recipient's logits on ``tokens`` with ``neurons`` patched from the donor."""
    import torch

    with torch.no_grad(), patch_from_donor(donor, recipient, neurons):
        donor.hf_model(input_ids=tokens, attention_mask=attention_mask, use_cache=False)
        return recipient.hf_model(input_ids=tokens, attention_mask=attention_mask, use_cache=False).logits
