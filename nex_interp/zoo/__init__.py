"""The embedded zoo: tiny reasoning models trained on a synthetic path-search task.

The task (:mod:`nex_interp.zoo.task`, described in ``docs/zoo.md``): find the path from a start node
to a goal in a small graph whose edges are listed in shuffled order. A brief answer gives the path
at once (``ans 3 12 9 5``); a worked solution searches depth first, proposing a branch, following
it and backtracking at dead ends (``try 7 2 dead back try 12 9 5 goal ans 3 12 9 5``), and every
token carries a ground-truth explore/exploit label from the grammar.

The weights ship inside the package under ``nex_interp/zoo/weights/<name>/`` as Hugging Face
directories (Qwen3 config, safetensors, word-level tokenizer), listed with their sha256 hashes and
the full training config in ``weights/zoo.json``; ``nex zoo train`` reproduces them on CPU.

Models: ``base`` (50/50 brief answers and worked solutions), ``instruct`` (brief answers),
``thinking`` (worked solutions), and ``mix25``/``mix50``/``mix75`` (fine-tunes of ``base`` on
25/50/75% worked solutions; with ``instruct`` and ``thinking`` they form the data-mixture family).
Load one with ``load_model("zoo:thinking")`` or find its directory with :func:`zoo_model_dir`.
Set ``NEX_ZOO_DIR`` to use a zoo trained elsewhere (``nex zoo train -o DIR``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ..errors import ModelError

#: shipped models, in training order
ZOO_MODELS: tuple[str, ...] = ("base", "instruct", "thinking", "mix25", "mix50", "mix75")
#: the data-mixture family (Figure 3 of the NEX paper): name -> share of worked solutions
MIXTURE_FAMILY: dict[str, float] = {"instruct": 0.0, "mix25": 0.25, "mix50": 0.5, "mix75": 0.75, "thinking": 1.0}
#: where the shipped weights live
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: environment variable naming another zoo directory (one written by ``nex zoo train -o DIR``)
ZOO_DIR_ENV = "NEX_ZOO_DIR"


def zoo_dir() -> Path:
    """The zoo in use: ``$NEX_ZOO_DIR`` when set, else the weights shipped in the package."""
    return Path(os.environ[ZOO_DIR_ENV]) if os.environ.get(ZOO_DIR_ENV) else WEIGHTS_DIR


@functools.lru_cache(maxsize=None)
def _verified(directory: Path, name: str) -> bool:
    from .train import verify_zoo

    return name not in verify_zoo(directory)


def zoo_model_dir(name: str, verify: bool = True) -> Path:
    """The Hugging Face directory of zoo model ``name`` (its weights' sha256 checked once)."""
    if name not in ZOO_MODELS:
        raise ModelError(f"zoo model {name!r} is unknown; zoo models: {', '.join(ZOO_MODELS)}")
    root = zoo_dir()
    path = root / name
    if not (path / "model.safetensors").exists() or not (root / "zoo.json").exists():
        raise ModelError(f"zoo model {name!r} has no weights under {path}; run 'nex zoo train' to build the zoo")
    if verify and not _verified(root, name):
        raise ModelError(f"zoo model {name!r} weights under {path} do not match the sha256 in zoo.json; reinstall the package or run 'nex zoo train'")
    return path
