"""The embedded zoo: tiny reasoning models trained on a synthetic box-search task.

The task (:mod:`nex_interp.zoo.task`, described in ``docs/zoo.md``): a row of numbered boxes, each
holding a dozen items (numbers whose last digit is their *kind*), and a query of five kinds;
exactly one box holds an item of every query kind. A brief answer names the box at once
(``ans b9``); a worked solution opens boxes one by one, copies each box's items onto the page (an
explore step: new content), checks the query kinds against them and drops or takes the box
(exploit steps). Every token carries a ground-truth explore/exploit label from the
grammar (:func:`nex_interp.zoo.traces.label_tokens`). Styles that explore too little (brief
answers, hasty commitment) and too much (revisiting dropped boxes, wandering past the budget) are
in the training data by construction (:mod:`nex_interp.zoo.traces`).

The weights ship inside the package under ``nex_interp/zoo/weights/<name>/`` as Hugging Face
directories (Qwen3 config, safetensors, word-level tokenizer), listed with their sha256 hashes and
the full training config in ``weights/zoo.json``; ``nex zoo train`` reproduces them on CPU.

Models (:mod:`nex_interp.zoo.plan`), all fine-tunes of one ``base`` (trained, not shipped):
``instruct`` (brief answers) and ``thinking`` (= ``over_mid``: half plain searches, half wandering
ones) are the endpoints of the SLERP merge family; ``under``, ``under_mid``, ``balanced``,
``over_mid``, ``over`` form the data-mixture family, from too little to too much exploration.
Load one with ``load_model("zoo:thinking")`` or find its directory with :func:`zoo_model_dir`.
Set ``NEX_ZOO_DIR`` to use a zoo trained elsewhere (``nex zoo train -o DIR``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ..errors import ModelError
from .plan import ALIASES, MIXTURE_FAMILY as _MIXTURE_ORDER

#: shipped models, in training order (``base`` is trained by ``nex zoo train`` but not shipped)
ZOO_MODELS: tuple[str, ...] = ("instruct", "under", "under_mid", "balanced", "over_mid", "over")
#: the data-mixture family (Figure 3 of the NEX paper): name -> position on the exploration axis
#: (0 = least exploration in its training data, 1 = most)
MIXTURE_FAMILY: dict[str, float] = {n: i / (len(_MIXTURE_ORDER) - 1) for i, n in enumerate(_MIXTURE_ORDER)}
#: where the shipped weights live
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: environment variable naming another zoo directory (one written by ``nex zoo train -o DIR``)
ZOO_DIR_ENV = "NEX_ZOO_DIR"


def zoo_dir() -> Path:
    """The zoo in use: ``$NEX_ZOO_DIR`` when set, else the weights shipped in the package."""
    return Path(os.environ[ZOO_DIR_ENV]) if os.environ.get(ZOO_DIR_ENV) else WEIGHTS_DIR


def resolve_name(name: str) -> str:
    """The zoo model a name or alias (``thinking``) stands for."""
    return ALIASES.get(name, name)


@functools.lru_cache(maxsize=None)
def _verified(directory: Path, name: str) -> bool:
    from .train import verify_zoo

    return name not in verify_zoo(directory)


def zoo_model_dir(name: str, verify: bool = True) -> Path:
    """The Hugging Face directory of zoo model ``name`` (an alias such as ``thinking`` works too;
    its weights' sha256 is checked once)."""
    real = resolve_name(name)
    root = zoo_dir()
    known = ZOO_MODELS + ("base",)  # trained, not shipped
    if real not in known:
        raise ModelError(f"zoo model {name!r} is unknown; zoo models: {', '.join(ZOO_MODELS + tuple(ALIASES))}")
    path = root / real
    if not (path / "model.safetensors").exists() or not (root / "zoo.json").exists():
        raise ModelError(f"zoo model {name!r} has no weights under {path}; run 'nex zoo train' to build the zoo")
    if verify and not _verified(root, real):
        raise ModelError(f"zoo model {name!r} weights under {path} do not match the sha256 in zoo.json; reinstall the package or run 'nex zoo train'")
    return path
