"""Models: loading (hub name, local directory, GGUF, SmolLM2, zoo), hooks, forward passes, pico fixtures.

The model-side layer: every function here and in :mod:`nex_interp.interventions` takes a
:class:`~nex_interp.models.loader.LoadedModel`. :mod:`.hooks` is the one home of the neuron hook
name, the hook installer and the KV-cache repair; :mod:`.activations` holds forward passes that
read neuron activations. Importing this package does not import torch; the functions do. The
loader itself loads on first use, so that the prompt helpers (which the nex parser needs) stay
cheap to import.
"""

from .hooks import NEURON_HOOK, installed_hooks, neuron_hook_name

_FROM_LOADER = ("LoadedModel", "load_model")


def __getattr__(name: str):
    if name in _FROM_LOADER:
        from . import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LoadedModel", "load_model", "NEURON_HOOK", "installed_hooks", "neuron_hook_name"]
