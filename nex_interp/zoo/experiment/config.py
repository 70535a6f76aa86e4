"""The experiment's settings (:class:`DemoConfig`) and what it keeps per variant (:class:`VariantResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config_dict import DictConfig
from ...errors import ConfigError


@dataclass(frozen=True)
class DemoConfig(DictConfig):
    """Settings of one demo run (all of them are written to ``OUT/demo_config.json``).

    n_variants:         SLERP variants between instruct (lambda 0) and thinking (lambda 1), endpoints included.
    n_problems:         unlabeled problems every variant answers (levels cycle through ``levels``).
    samples:            sampled responses per problem.
    temperature/top_p:  sampling settings; max_new_tokens caps a response.
    row_tokens:         NEX row size for the zoo's short chains of thought (see ``docs``/README).
    rule:               the capture's activation rule.
    attention:          the capture pass's attention ("eager", as the demo's published figures were
                        captured; `nex capture` defaults to "sdpa", which moves activations by ~1e-6,
                        and that alone moves this zoo's 2-token-row results: docs/zoo.md).
    high_entropy_quantile: a row is high-entropy when its mean next-token entropy exceeds this
                        quantile of all rows of all merge variants (one threshold for the family).
    boundary_tolerance: tokens within which an HMM phase boundary matches a generator boundary.
    mixtures:           also run the data-mixture family.
    selection_grid:     numbers of problems for the sample-efficiency curve (with ``se_seeds`` seeds).
    """

    seed: int = 0
    n_variants: int = 11
    n_problems: int = 48
    samples: int = 4
    levels: tuple[int, ...] = (1, 2, 3)
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 160
    row_tokens: int = 2
    rule: str = "abs:0.5"
    batch_size: int = 64
    attention: str = "eager"
    high_entropy_quantile: float = 0.8
    boundary_tolerance: int = 2
    mixtures: bool = True
    selection_grid: tuple[int, ...] = (4, 8, 16, 32, 48)
    se_seeds: int = 10

    def __post_init__(self) -> None:
        if self.n_variants < 2:
            raise ConfigError(f"n_variants must be at least 2 (the two endpoints), got {self.n_variants}")
        if self.n_problems < 2 or self.samples < 1:
            raise ConfigError("n_problems must be >= 2 and samples >= 1")

    @classmethod
    def quick(cls, seed: int = 0) -> "DemoConfig":
        """The reduced mode used by the test suite: the same pipeline on fewer problems and variants."""
        return cls(seed=seed, n_variants=4, n_problems=10, samples=4, mixtures=False, selection_grid=(3, 6, 10), se_seeds=3)

    def lambdas(self) -> list[float]:
        return [round(i / (self.n_variants - 1), 6) for i in range(self.n_variants)]

    def capture_config(self):
        """The :class:`~nex_interp.capture.engine.CaptureConfig` the experiment captures with."""
        from ...capture.engine import CaptureConfig

        return CaptureConfig(row_tokens=self.row_tokens, rule=self.rule, batch_size=self.batch_size, attention=self.attention,
                             progress=False)


@dataclass
class VariantResult:
    """Everything the demo keeps about one variant (``OUT/variants/<name>/result.json``)."""

    name: str
    family: str
    lam: float
    accuracy: float
    nex_score: float
    mean_e_segments: float
    thinking_share: float
    mean_tokens: float
    n_responses: int
    n_segmented: int
    seconds: float
    gmf: list[float] = field(default_factory=list)
    e_segments: list[int] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
