"""Ablation: fix a set of neurons of one model to zero, or to their mean over reference inputs.

The ablated value is the neuron activation ``blocks.{L}.mlp.out.hook_in`` (the input of the
down/out projection), on every token of every forward pass inside :func:`ablate`, including
KV-cached generation steps. Mean ablation uses :func:`mean_activations` over a reference set of
token sequences (padding positions excluded).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal

from jaxtyping import Float, Int

from nex_interp.errors import ConfigError
from nex_interp.models.hooks import installed_hooks, neuron_hook_name

from .neuron_sets import NeuronSet

if TYPE_CHECKING:
    from torch import Tensor

    from nex_interp.models.loader import LoadedModel
else:
    Tensor = Any

AblationMode = Literal["zero", "mean"]
ABLATION_MODES = ("zero", "mean")


def mean_activations(
    model: "LoadedModel",
    batches: Iterable[tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]],
    neurons: NeuronSet,
) -> dict[int, Float[Tensor, " k"]]:
    """Mean activation of each neuron of ``neurons`` over the real (mask 1) tokens of ``batches``.

    ``batches`` yields ``(input_ids, attention_mask)`` pairs. Returns ``{layer: [units of that
    layer]}`` float32 tensors ordered like ``neurons.by_layer()[layer]``.
    """
    import torch

    groups = neurons.by_layer()
    sums = {L: torch.zeros(len(u), dtype=torch.float64) for L, u in groups.items()}
    count = [0]
    current_mask: list[Any] = [None]

    def accumulate(layer: int):
        idx = torch.as_tensor(groups[layer], dtype=torch.long)

        def fn(x, hook):
            m = current_mask[0].to(x.device).to(torch.float64)
            vals = x.index_select(-1, idx.to(x.device)).to(torch.float64)
            sums[layer] += (vals * m[..., None]).sum(dim=(0, 1)).cpu()
            return None
        return fn

    hooks = [(neuron_hook_name(L), accumulate(L)) for L in groups]
    with torch.no_grad(), installed_hooks(model, hooks):
        for input_ids, attention_mask in batches:
            current_mask[0] = attention_mask
            count[0] += int(attention_mask.sum())
            model.hf_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    if count[0] == 0:
        raise ConfigError("mean ablation needs reference inputs with at least one token")
    return {L: (s / count[0]).to(torch.float32) for L, s in sums.items()}


@contextlib.contextmanager
def ablate(
    model: "LoadedModel", neurons: NeuronSet, mode: AblationMode = "zero", means: dict[int, Any] | None = None
) -> Iterator["LoadedModel"]:
    """Within the block, ``neurons`` of ``model`` output zero, or ``means[layer]``.

    ``mode="mean"`` needs ``means`` from :func:`mean_activations` over the same set. Yields the
    model; hooks are removed on exit, also after an exception.
    """
    import torch

    if mode not in ABLATION_MODES:
        raise ConfigError(f"ablation mode {mode!r} is unknown: use 'zero' or 'mean'")
    neurons.check_fits(model.n_layers, model.d_mlp, "model")
    groups = neurons.by_layer()
    if mode == "mean":
        if means is None:
            raise ConfigError("mean ablation needs the reference means (nex_interp.interventions.ablation.mean_activations)")
        for L, u in groups.items():
            if L not in means or tuple(means[L].shape) != (len(u),):
                raise ConfigError(f"reference means do not cover layer {L}'s {len(u)} neurons: recompute them for this set")

    def fix(layer: int):
        idx = torch.as_tensor(groups[layer], dtype=torch.long)

        def fn(x, hook):
            out = x.clone()
            i = idx.to(x.device)
            if mode == "zero":
                out.index_fill_(-1, i, 0.0)
            else:
                value = means[layer].to(device=x.device, dtype=x.dtype)  # type: ignore[index]
                out.index_copy_(-1, i, value.expand(*x.shape[:-1], len(i)).contiguous())
            return out
        return fn

    with installed_hooks(model, [(neuron_hook_name(L), fix(L)) for L in groups]):
        yield model
