"""Models: loading (hub name, local directory, GGUF, SmolLM2, zoo) and tiny pico fixtures.

Importing this package does not import torch; the functions do.
"""

from .loader import LoadedModel, load_model, neuron_hook_name

__all__ = ["LoadedModel", "load_model", "neuron_hook_name"]
