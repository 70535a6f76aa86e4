"""Neuron interventions guided by NEX weights: transplant, activation patching, ablation.

The paper's causal evidence as a reusable tool. Choose neuron sets from NEX weights
(:mod:`nex_interp.interventions.neuron_sets`), then, inside context managers that always clean
up, on :class:`~nex_interp.models.loader.LoadedModel` objects:

* :func:`~nex_interp.interventions.transplant.transplant`: the recipient's neurons take the
  donor's weights;
* :func:`~nex_interp.interventions.patching.patch_from_donor`: the recipient's neurons take the
  donor's activations on the same tokens (teacher-forced or during generation);
* :func:`~nex_interp.interventions.ablation.ablate`: neurons fixed to zero or to a reference mean.

:func:`~nex_interp.interventions.evaluate.evaluate` measures a model's accuracy on a task with
greedy answers. ``nex transfer --config interventions/experiments/zoo.toml -o OUT`` runs a whole
experiment (:func:`~nex_interp.interventions.experiment.run_experiment`, configured by
:mod:`nex_interp.interventions.config`). Importing this package does not import torch: the
operations load on first use.
"""

from .neuron_sets import NeuronSet, by_threshold, load_set, random_matched, save_set, top_effective, top_redundant

#: names loaded on first use (``transplant`` and ``evaluate`` are not among them: they are also the
#: names of their submodules, which the import system binds on this package)
_LAZY = {
    "ablate": "ablation",
    "mean_activations": "ablation",
    "patch_from_donor": "patching",
    "run_patched": "patching",
    "greedy_generate": "generation",
    "Evaluation": "evaluate",
    "TransferConfig": "config",
    "load_config": "config",
    "run_experiment": "experiment",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "NeuronSet",
    "by_threshold",
    "load_set",
    "random_matched",
    "save_set",
    "top_effective",
    "top_redundant",
    *_LAZY,
]
