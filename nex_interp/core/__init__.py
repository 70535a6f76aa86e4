"""The NEX core: novelty -> explore/exploit phases -> reuse credit -> signed neuron weights -> GMF.

Exactly docs/algorithm.md. Two implementations (docs/core.md): the compiled kernels, and the plain path
that calls scikit-learn and hmmlearn for the phase step (imported on first use: with the kernels, only
for the rare series they cannot decide bit-safely).
"""

from .learn import learn_weights
from .params import EPS, NexParams
from .phases import segment_phases, segment_phases_batch
from .score import log_gap, nex_score, score_responses

_LAZY = {"CycleDiagnostics": "cycles", "ResponseDiagnostics": "diagnostics", "diagnose_response": "diagnostics"}


def __getattr__(name: str):
    # the per-response diagnostics (and the plain path they read) load on first use: `nex run` with the
    # compiled kernels needs none of them
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EPS",
    "CycleDiagnostics",
    "NexParams",
    "ResponseDiagnostics",
    "diagnose_response",
    "learn_weights",
    "log_gap",
    "nex_score",
    "score_responses",
    "segment_phases",
    "segment_phases_batch",
]
