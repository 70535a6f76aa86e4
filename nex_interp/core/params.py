"""Parameters of NEX weight learning (``rho``, ``min_run``, ``max_responses``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ConfigError

#: the small constant of the NEX formulas (``EPS`` in docs/algorithm.md)
EPS = 1e-6


@dataclass(frozen=True)
class NexParams:
    """Settings of the explore/exploit segmentation and credit.

    rho:           stickiness of the 2-state HMM, the probability of staying in a phase (0 < rho < 1).
    min_run:       phase runs shorter than this are merged into their neighbour (>= 1).
    max_responses: learn on at most this many responses (the first ones); None = all.
    """

    rho: float = 0.95
    min_run: int = 2
    max_responses: int | None = None

    def __post_init__(self) -> None:
        if not (0.0 < float(self.rho) < 1.0):
            raise ConfigError(f"rho must lie strictly between 0 and 1, got {self.rho}: pass e.g. --rho 0.95")
        if int(self.min_run) != self.min_run or self.min_run < 1:
            raise ConfigError(f"min_run must be a positive integer, got {self.min_run}: pass e.g. --min-run 2")
        if self.max_responses is not None and (int(self.max_responses) != self.max_responses or self.max_responses < 1):
            raise ConfigError(f"max_responses must be a positive integer or None, got {self.max_responses}")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "NexParams":
        known = {k: d[k] for k in ("rho", "min_run", "max_responses") if k in d}
        return NexParams(**known)


#: the three uniforms k-means++ draws from a fresh ``RandomState(0)`` (first centre, two trials) in the
#: phase step, as constants: importing numpy.random costs more than ``nex run`` spends on the phase step
#: (tests/test_core_phases.py checks them against RandomState(0))
SEED_DRAWS = (0.5488135039273248, 0.7151893663724195, 0.6027633760716439)
