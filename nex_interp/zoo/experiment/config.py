"""The experiment's settings (:class:`DemoConfig`) and what it keeps per variant (:class:`VariantResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config_dict import DictConfig
from ...errors import ConfigError
from ..plan import MAX_NEW_TOKENS


@dataclass(frozen=True)
class DemoConfig(DictConfig):
    """Settings of one demo run (all of them are written to ``OUT/demo_config.json``).

    n_variants:         SLERP variants between instruct (lambda 0) and thinking (lambda 1), endpoints included.
    n_problems:         unlabeled box-search problems every variant answers.
    samples:            sampled responses per problem.
    temperature/top_p:  sampling settings; max_new_tokens caps a response (the longest searches the
                        zoo was trained on run 576 tokens; the 183-token prompt + 580 fits the 768 positions).
    row_tokens:         NEX row size: 8 tokens, so a 17-token ``open`` clause (an E span) covers
                        at least two rows (docs/zoo.md).
    rule:               the capture's activation rule, chosen from the novelty precondition on the
                        base model's reference traces before any NEX run (docs/zoo.md).
    attention:          the capture pass's attention (``nex capture``'s default, "sdpa").
    batch_size:         responses per capture batch.
    generate_rows:      rows per generate call (``generate_rows // samples`` problems, each row sampled
                        from its own seeded generator: :mod:`nex_interp.generation`); a small model's
                        decoding costs per step, not per row.
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
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = MAX_NEW_TOKENS
    row_tokens: int = 8
    rule: str = "topk:8"
    batch_size: int = 64
    generate_rows: int = 192
    attention: str = "sdpa"
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
        return cls(seed=seed, n_variants=3, n_problems=6, samples=2, mixtures=False, selection_grid=(3, 6), se_seeds=3)

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
    thinking_share: float  # share of worked solutions (responses that start a search with "goal")
    mean_tokens: float
    n_responses: int
    n_segmented: int
    seconds: float
    mean_opens: float = 0.0
    step_kinds: dict = field(default_factory=dict)
    gmf: list[float] = field(default_factory=list)
    e_segments: list[int] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
