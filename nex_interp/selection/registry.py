"""A registry of best-of-N selection methods, by name, each with its citation.

A method turns a :class:`~nex_interp.selection.candidates.CandidateSet` into one number per
response. For a ``score`` method the response with the highest number in its problem is picked;
for a ``vote`` method the numbers are vote weights: the answer with the largest total weight in
its problem wins (majority voting when every weight is 1). New methods register with
:func:`register_method` and then work everywhere: ``nex select --methods``, the demo, notebooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from ..errors import ConfigError, NexError
from .candidates import CandidateSet


class MissingInput(NexError):
    """A selection method needs an input the candidate set does not carry."""


@dataclass(frozen=True)
class SelectionOptions:
    """Settings some methods read.

    deepconf_window: sliding-window size (tokens) of DeepConf's group confidence.
    """

    deepconf_window: int = 2048


@dataclass(frozen=True)
class SelectionMethod:
    """A named selection method.

    name:        registry key (``nex select --methods NAME``).
    kind:        ``score`` (pick the highest) or ``vote`` (weighted vote over extracted answers).
    citation:    where the method comes from.
    summary:     one line: what it computes and which way it picks.
    requires:    inputs it reads: ``answers``, ``correct``, ``n_tokens``, ``score:NAME``, ``token:NAME``.
    uses_labels: True for reference points that look at correctness (``oracle``); never a real selector.
    compute:     CandidateSet, SelectionOptions -> float [n] (NaN: no value for that response).
    """

    name: str
    kind: Literal["score", "vote"]
    citation: str
    summary: str
    requires: tuple[str, ...]
    uses_labels: bool
    compute: Callable[[CandidateSet, SelectionOptions], np.ndarray]


_REGISTRY: dict[str, SelectionMethod] = {}


def register_method(
    name: str,
    *,
    kind: Literal["score", "vote"],
    citation: str,
    summary: str,
    requires: tuple[str, ...] = (),
    uses_labels: bool = False,
) -> Callable:
    """Decorator registering ``fn(cands, options) -> float[n]`` as a selection method."""
    if kind not in ("score", "vote"):
        raise ValueError(f"kind must be 'score' or 'vote', got {kind!r}")

    def deco(fn: Callable[[CandidateSet, SelectionOptions], np.ndarray]) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"selection method {name!r} is already registered")
        _REGISTRY[name] = SelectionMethod(name, kind, citation, summary, tuple(requires), uses_labels, fn)
        return fn

    return deco


def unregister_method(name: str) -> None:
    """Remove a registered method (for plug-ins and tests); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def get_method(name: str) -> SelectionMethod:
    """The method registered as ``name``; an unknown name is a one-line error listing the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown selection method {name!r}: choose from {', '.join(method_names())}") from None


def method_names() -> list[str]:
    """Registered method names, in registration order."""
    return list(_REGISTRY)


def missing_inputs(method: SelectionMethod, cands: CandidateSet) -> list[str]:
    """The inputs ``method`` needs that ``cands`` lacks (empty when it can run)."""
    missing = []
    for req in method.requires:
        kind, _, name = req.partition(":")
        if kind == "answers" and (cands.answers is None or all(a is None for a in cands.answers)):
            missing.append("extracted answers")
        elif kind == "correct" and cands.correct is None:
            missing.append("correctness labels")
        elif kind == "n_tokens" and (cands.n_tokens is None or np.isnan(cands.n_tokens).all()):
            missing.append("response lengths in tokens")
        elif kind == "score" and name not in cands.scores:
            missing.append(f"per-response score {name!r}")
        elif kind == "token" and (name not in cands.token_stats or all(a is None for a in cands.token_stats[name])):
            missing.append(f"per-token statistic {name!r}")
        elif kind == "meta" and name not in cands.meta:
            missing.append(f"{name!r}")
    return missing
