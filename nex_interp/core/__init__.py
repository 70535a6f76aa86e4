"""The NEX core: novelty -> explore/exploit phases -> reuse credit -> signed neuron weights -> GMF.

Exactly ``NEX-ALGORITHM.md``; needs only numpy (scikit-learn and hmmlearn are imported lazily, for the
rare series the fast phase decoder hands them, and by the ``library`` phase backend).
"""

from .learn import learn_weights
from .params import EPS, NexParams
from .phases import segment_phases, segment_phases_batch
from .score import log_gap, nex_score, score_responses

_LAZY = {"CycleDiagnostics": "cycles", "ResponseDiagnostics": "diagnostics", "diagnose_response": "diagnostics"}


def __getattr__(name: str):
    # the per-response diagnostics (and the numpy path they use) load on first use: `nex run` with the
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
