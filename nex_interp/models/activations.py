"""Forward passes that read neuron activations of a loaded model (no presentation here).

:func:`top_activations` runs token sequences through a model's TransformerLens bridge with hooks
on the neuron activation ``blocks.{L}.mlp.out.hook_in`` of the layers involved and keeps, for
each neuron, its largest values with where they occurred. The report's
:func:`nex_interp.report.neurons.top_activating_tokens` turns them into a table with token text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import ConfigError
from .hooks import installed_hooks, neuron_hook_name

if TYPE_CHECKING:  # pragma: no cover
    from .loader import LoadedModel


@dataclass(frozen=True)
class Activation:
    """One neuron activation: its value, the sequence (index into the input) and the token position."""

    value: float
    sequence: int
    position: int


def check_neurons(model: "LoadedModel", neurons: Sequence[tuple[int, int]]) -> None:
    """ConfigError when a ``(layer, unit)`` lies outside the model."""
    bad = [(L, U) for L, U in neurons if not (0 <= L < model.n_layers and 0 <= U < model.d_mlp)]
    if bad:
        raise ConfigError(f"neurons {bad[:3]} are outside the model's {model.n_layers} layers x {model.d_mlp} units")


def top_activations(
    model: "LoadedModel",
    sequences: Sequence[Sequence[int]],
    neurons: Sequence[tuple[int, int]],
    top: int = 5,
    progress: bool = False,
) -> dict[tuple[int, int], list[Activation]]:
    """For each ``(layer, unit)``, its ``top`` largest activations over ``sequences`` (token ids).

    Each sequence runs once through the model's bridge. Within a neuron, activations are ordered
    by value (largest first), then sequence, then position.
    """
    import torch
    from tqdm.auto import tqdm

    if top < 1:
        raise ConfigError(f"top must be >= 1, got {top}")
    check_neurons(model, neurons)
    layers = sorted({int(L) for L, _ in neurons})
    per_neuron: dict[tuple[int, int], list[Activation]] = {(int(L), int(U)): [] for L, U in neurons}
    seen: dict[int, np.ndarray] = {}

    def grab(layer: int):
        def hook(x, hook=None):
            seen[layer] = x[0].float().cpu().numpy()
            return None

        return hook

    hooks = [(neuron_hook_name(L), grab(L)) for L in layers]
    with installed_hooks(model, hooks):
        for s, ids in enumerate(tqdm(sequences, desc="neuron activations", unit="seq", disable=not progress)):
            tokens = torch.tensor([list(ids)], dtype=torch.long, device=model.device)
            seen.clear()
            with torch.inference_mode():
                model.bridge(tokens)
            for (L, U), found in per_neuron.items():
                values = seen[L][:, U]
                for pos in np.argsort(-values, kind="stable")[:top]:
                    found.append(Activation(float(values[pos]), s, int(pos)))
    for found in per_neuron.values():
        found.sort(key=lambda a: (-a.value, a.sequence, a.position))
        del found[top:]
    return per_neuron
