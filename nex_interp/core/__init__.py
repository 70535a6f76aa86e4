"""The NEX core: novelty -> explore/exploit phases -> reuse credit -> signed neuron weights -> GMF.

Exactly ``NEX-ALGORITHM.md``; needs only numpy (scikit-learn and hmmlearn are imported lazily, for the
rare series the fast phase decoder hands them, and by the ``library`` phase backend).
"""

from .cycles import CycleDiagnostics
from .diagnostics import ResponseDiagnostics, diagnose_response
from .learn import learn_weights
from .params import EPS, NexParams
from .phases import segment_phases, segment_phases_batch
from .score import log_gap, nex_score, score_responses

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
