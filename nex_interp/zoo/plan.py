"""The planned box-search zoo: which models, trained on which style mixtures (design only).

Fixed from the design in ``docs/zoo-design.md`` before any model was trained; the training code
that will use it (``nex zoo train``) is a later step. Every fine-tune starts from ``base``.

* Merge family: SLERP between ``instruct`` (brief answers: under-exploration) and ``thinking``
  (half plain searches, half wandering ones: over-exploration), through a base trained mostly on
  plain searches.
* Data-mixture family: five fine-tunes along the exploration axis, from premature commitment
  (``under``) through plain search (``balanced``) to wandering (``over``). ``thinking`` is the
  family's ``over_mid`` member (one model, two names).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """Architecture planned for the zoo's models (a Hugging Face Qwen3 config)."""

    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    n_kv_heads: int = 2
    d_mlp: int = 1024
    max_positions: int = 768
    #: layers that attend over the last ``sliding_window`` tokens only (a Qwen3 sliding window).
    #: The shipped zoo windows layer 0 (docs/zoo-design.md, change 9): there a head at a check's
    #: kind sees the record just opened and nothing of the previous cycle's record
    #: (``train.cycle_fits_window``), while layers 1-3 attend over everything for the copies.
    local_layers: tuple[int, ...] = (0,)
    sliding_window: int = 36


#: new tokens a zoo response may take: the longest reference search (wander, 14 opens) is 576
#: tokens plus EOS, and the 183-token prompt + 580 fits the models' 768 positions
MAX_NEW_TOKENS = 580

#: model -> style mixture of its training data (shares of brief/hasty/systematic/wander)
MODELS: dict[str, dict[str, float]] = {
    "base": {"brief": 0.2, "hasty": 0.15, "systematic": 0.45, "wander": 0.2},
    "instruct": {"brief": 1.0},
    "under": {"hasty": 1.0},
    "under_mid": {"hasty": 0.5, "systematic": 0.5},
    "balanced": {"systematic": 1.0},
    "over_mid": {"systematic": 0.5, "wander": 0.5},
    "over": {"wander": 1.0},
}
#: the two fine-tunes the SLERP family interpolates between (lambda 0, lambda 1)
MERGE_ENDPOINTS: tuple[str, str] = ("instruct", "over_mid")
#: aliases: the paper's names for the merge endpoints
ALIASES: dict[str, str] = {"thinking": "over_mid"}
#: the data-mixture family, from least to most exploration
MIXTURE_FAMILY: tuple[str, ...] = ("under", "under_mid", "balanced", "over_mid", "over")
