"""Models: loading (hub name, local directory, GGUF, SmolLM2, zoo) and tiny pico fixtures.

Importing this package does not import torch; the functions do. The loader itself loads on first use,
so that the prompt helpers (which the nex parser needs) stay cheap to import.
"""

_FROM_LOADER = ("LoadedModel", "load_model", "neuron_hook_name")


def __getattr__(name: str):
    if name in _FROM_LOADER:
        from . import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LoadedModel", "load_model", "neuron_hook_name"]
