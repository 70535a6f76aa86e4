"""Weight transplant: give the recipient model the donor's weights for a set of MLP neurons.

A neuron ``(L, u)`` owns its *input rows* (row ``u`` of the gate and up projections of a gated MLP;
column ``u`` of GPT-2's ``c_fc`` Conv1D, and entry ``u`` of every per-neuron bias) and its
*output column* (column ``u`` of the down/out projection). :func:`transplant` copies exactly those
from donor to recipient and restores the recipient's own values, bit for bit, when the block
exits (also on an exception). With every neuron of every layer transplanted, each MLP of the
recipient computes the donor's MLP function.

The copy is made on the Hugging Face modules that the model's TransformerLens bridge wraps
(``bridge.blocks[L].mlp.gate/in/out.original_component``); the bridge runs those same modules, so
its forward pass (and the HF model's ``generate``) sees the change. Bridges in compatibility
mode keep folded copies of the weights and are refused. Every function takes
:class:`~nex_interp.models.loader.LoadedModel` objects.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from nex_interp.errors import ConfigError

from .neuron_sets import NeuronSet

if TYPE_CHECKING:  # pragma: no cover
    from nex_interp.models.loader import LoadedModel


@dataclass(frozen=True)
class NeuronParam:
    """One parameter tensor of an MLP and the axis along which it is indexed by neuron."""

    role: str  # "gate.weight", "in.bias", "out.weight", ...
    param: Any  # torch.nn.Parameter
    axis: int


def _linear_kind(module: Any) -> str:
    import torch
    from transformers.pytorch_utils import Conv1D

    if isinstance(module, torch.nn.Linear):
        return "linear"
    if isinstance(module, Conv1D):
        return "conv1d"
    raise ConfigError(f"unsupported MLP projection {type(module).__name__}: transplant handles torch Linear and HF Conv1D (GPT-2)")


def _hf_module(component: Any) -> Any:
    inner = getattr(component, "original_component", None)
    return component if inner is None else inner


def mlp_projections(model: "LoadedModel", layer: int) -> dict[str, Any]:
    """The HF modules of layer ``layer``'s MLP: ``{"gate"?: ..., "in": ..., "out": ...}``."""
    mlp = model.bridge.blocks[layer].mlp
    out: dict[str, Any] = {}
    for name in ("gate", "in", "out"):
        comp = getattr(mlp, name, None)
        if comp is not None:
            out[name] = _hf_module(comp)
    if "in" not in out or "out" not in out:
        raise ConfigError(f"layer {layer}'s MLP ({type(mlp).__name__}) lacks in/out projections: this architecture is not supported")
    return out


def neuron_params(model: "LoadedModel", layer: int) -> list[NeuronParam]:
    """Every parameter of layer ``layer``'s MLP that holds per-neuron values, with its neuron axis.

    Linear weights are ``[out_features, in_features]``; Conv1D weights are ``[in, out]``. Input
    projections are indexed on their output side, the down/out projection on its input side; its
    bias is shared by all neurons and is not included.
    """
    params = []
    for name, mod in mlp_projections(model, layer).items():
        kind = _linear_kind(mod)
        if name == "out":
            params.append(NeuronParam("out.weight", mod.weight, 1 if kind == "linear" else 0))
        else:
            params.append(NeuronParam(f"{name}.weight", mod.weight, 0 if kind == "linear" else 1))
            if getattr(mod, "bias", None) is not None:
                params.append(NeuronParam(f"{name}.bias", mod.bias, 0))
    return params


def check_same_architecture(donor: "LoadedModel", recipient: "LoadedModel") -> None:
    """Raise ConfigError unless donor and recipient have the same layers and MLP parameter shapes."""
    if donor is recipient or donor.hf_model is recipient.hf_model:
        raise ConfigError("donor and recipient are the same model object: load them separately")
    nd, nr = len(donor.bridge.blocks), len(recipient.bridge.blocks)
    if nd != nr:
        raise ConfigError(f"architectures differ: donor has {nd} layers, recipient {nr}")
    for L in range(nd):
        pd, pr = neuron_params(donor, L), neuron_params(recipient, L)
        sd = [(p.role, tuple(p.param.shape)) for p in pd]
        sr = [(p.role, tuple(p.param.shape)) for p in pr]
        if sd != sr:
            raise ConfigError(f"architectures differ in layer {L}'s MLP: donor {sd}, recipient {sr}")


def _check_not_compat(model: "LoadedModel", who: str) -> None:
    if getattr(model.bridge, "compatibility_mode", False):
        raise ConfigError(f"the {who} bridge is in compatibility mode (folded weights): boot it without enable_compatibility_mode() to transplant")


@contextlib.contextmanager
def transplant(donor: "LoadedModel", recipient: "LoadedModel", neurons: NeuronSet) -> Iterator["LoadedModel"]:
    """Within the block, the recipient's ``neurons`` carry the donor's input rows and output columns.

    ``donor`` and ``recipient`` are loaded models of the same architecture. Yields the
    recipient. On exit the recipient's original values are written back exactly.
    """
    import torch

    _check_not_compat(recipient, "recipient")
    _check_not_compat(donor, "donor")
    check_same_architecture(donor, recipient)
    neurons.check_fits(recipient.n_layers, recipient.d_mlp, "recipient")
    saved: list[tuple[Any, int, Any, Any]] = []
    try:
        with torch.no_grad():
            for layer, units in neurons.by_layer().items():
                for pd, pr in zip(neuron_params(donor, layer), neuron_params(recipient, layer)):
                    dst = pr.param
                    idx = torch.as_tensor(units, dtype=torch.long, device=dst.device)
                    old = dst.index_select(pr.axis, idx).clone()
                    saved.append((dst, pr.axis, idx, old))
                    src = pd.param.index_select(pd.axis, idx.to(pd.param.device)).to(device=dst.device, dtype=dst.dtype)
                    dst.index_copy_(pr.axis, idx, src)
        yield recipient
    finally:
        with torch.no_grad():
            for dst, axis, idx, old in reversed(saved):
                dst.index_copy_(axis, idx, old)
