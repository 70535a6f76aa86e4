"""nex-interp: NEX neuron explore-exploit scoring on TransformerLens 4.

Importing this package (and running ``nex train/score/run/table``) never imports torch or
transformers; the model-side modules import them lazily.
"""

__version__ = "0.1.0"
