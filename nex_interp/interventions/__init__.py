"""Neuron interventions guided by NEX weights: transplant, activation patching, ablation.

The paper's causal evidence as a reusable tool. Choose neuron sets from NEX weights
(:mod:`interventions.neuron_sets`), then, inside context managers that always clean up:

* :func:`interventions.transplant.transplant`: the recipient's neurons take the donor's weights;
* :func:`interventions.patching.patch_from_donor`: the recipient's neurons take the donor's
  activations on the same tokens (teacher-forced or during generation);
* :func:`interventions.ablation.ablate`: neurons fixed to zero or to a reference mean.

``nex transfer --config interventions/experiments/zoo.toml -o OUT`` runs a whole experiment
(:mod:`interventions.experiment`). Importing this package does not import torch.
"""

from .neuron_sets import NeuronSet, by_threshold, load_set, random_matched, save_set, top_effective, top_redundant

__all__ = [
    "NeuronSet",
    "by_threshold",
    "load_set",
    "random_matched",
    "save_set",
    "top_effective",
    "top_redundant",
]
