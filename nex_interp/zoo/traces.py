"""Reference responses of the box-search task in four exploration styles, with E/X labels.

A worked solution restates the query, then repeats one cycle per box it opens::

    goal #1 *3 #2 *7 #3 *8 #4 *1 #5 *2 ;                         X  (restate the query, slot by slot)
    step 1 open b1 417 233 ... 90 ;                             E  (a new candidate and its content)
    need #1 *3 233 need #2 *7 417 ... need #5 *2 no drop b1 ;   X  (check it, verdict)
    ...
    take b9 ; ans b9                                            X  (commit and answer)

**Labels** (:func:`label_tokens`, by the grammar alone, so a model's sampled responses are
labelled by the same rule): every token of an ``open`` clause, from ``step`` through its closing
``;``, is **E**: it brings a candidate and its items onto the page, the only place where new
entities enter. Everything else is **X**: the checks and verdicts work with what is already on
the page (query kinds restated at the top, items just copied), and the answer repeats a label.

**Styles** (what the training data of each zoo model mixes):

* ``brief``: ``ans b9``, the answer in one forward pass (under-exploration: no search).
* ``hasty``: opens boxes in order but checks only the first :data:`HASTY_CHECKS` query kinds and
  takes the first box that passes them (under-exploration: premature commitment). Distractors
  often pass a partial check, so this style is usually wrong.
* ``systematic``: opens boxes in order, checks every query kind, takes the first box that holds
  them all. Always right; the balanced amount of exploration.
* ``wander``: like ``systematic``, but after dropping a box it re-opens an already dropped box
  with probability ``P_REVISIT`` (again after that one, too), and on finding the target it only
  ``hold``\\ s it with probability ``P_HOLD`` and keeps opening the remaining boxes before taking
  it. When the budget of opens runs out before it takes a box it writes ``stop ; ans none``
  (over-exploration: revisiting abandoned branches, wandering, running out of budget).

The probabilities were fixed from the design (expected accuracy of ``wander`` about 0.6 against
1.0 for ``systematic``), before any model was trained.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

from ..errors import ConfigError
from .task import (EOS, NONE, Problem, TaskShape, DEFAULT_SHAPE, box_label, check_answer, kind_label, make_problem,
                   slot_label)

STYLES = ("brief", "hasty", "systematic", "wander")
#: the first token of every worked solution (a brief answer starts with ``ans``)
WORKED_START = "goal"
#: query kinds the hasty style checks before it takes a box
HASTY_CHECKS = 2
#: wander: chance of re-opening an already dropped box after each drop
P_REVISIT = 0.3
#: wander: chance of holding the target and opening the remaining boxes instead of taking it
P_HOLD = 0.5


@dataclass(frozen=True)
class Trace:
    """One reference response: its tokens (EOS excluded), their E/X labels and what it did."""

    style: str
    tokens: tuple[str, ...]
    labels: tuple[str, ...]
    opens: int
    revisits: int
    answer: str
    correct: bool


class _Writer:
    """Accumulates tokens of a worked solution with their labels."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.labels: list[str] = []
        self.opens = 0

    def put(self, label: str, *words: object) -> None:
        for w in words:
            self.tokens.append(str(w))
            self.labels.append(label)

    def open(self, problem: Problem, k: int) -> None:
        self.opens += 1
        self.put("E", "step", self.opens, "open", box_label(k), *problem.boxes[k - 1], ";")

    def check(self, problem: Problem, k: int, n_items: int) -> bool:
        """Check the first ``n_items`` query kinds against box ``k``; stop at the first ``no``
        only when checking partially (the hasty style); True if the box holds every checked kind."""
        ok = True
        for j, q in enumerate(problem.query[:n_items], 1):
            answer = check_answer(problem, k, q)
            self.put("X", "need", slot_label(j), kind_label(q), answer)
            ok &= answer != "no"
            if not ok and n_items < len(problem.query):
                break
        return ok

    def finish(self, answer: str, taken: bool) -> None:
        if taken:
            self.put("X", "take", answer, ";", "ans", answer)
        else:
            self.put("X", "stop", ";", "ans", NONE)


def _brief(problem: Problem) -> Trace:
    toks = ("ans", problem.answer)
    return Trace("brief", toks, ("X", "X"), 0, 0, problem.answer, True)


def _search(problem: Problem, style: str, rng: random.Random) -> Trace:
    w = _Writer()
    w.put("X", "goal", *(x for j, q in enumerate(problem.query, 1) for x in (slot_label(j), kind_label(q))), ";")
    n, q = len(problem.boxes), len(problem.query)
    n_check = HASTY_CHECKS if style == "hasty" else q
    dropped: list[int] = []
    held: int | None = None
    revisits = 0
    nxt = 1  # next box not opened yet
    just_dropped = False
    answer: str | None = None
    while answer is None:
        revisit = style == "wander" and just_dropped and rng.random() < P_REVISIT
        if not revisit and nxt > n:  # every box opened: only a holder gets here
            assert held is not None
            answer = box_label(held)
            w.finish(answer, taken=True)
            break
        if w.opens == problem.budget:
            answer = NONE
            w.finish(NONE, taken=False)
            break
        if revisit:
            k = rng.choice(dropped)
            revisits += 1
        else:
            k, nxt = nxt, nxt + 1
        w.open(problem, k)
        just_dropped = False
        if w.check(problem, k, n_check):
            if style == "wander" and held is None and rng.random() < P_HOLD:
                held = k
                w.put("X", "hold", box_label(k), ";")
            else:
                answer = box_label(k)
                w.finish(answer, taken=True)
        else:
            if k not in dropped:
                dropped.append(k)
            just_dropped = True
            w.put("X", "drop", box_label(k), ";")
    return Trace(style, tuple(w.tokens), tuple(w.labels), w.opens, revisits, answer, answer == problem.answer)


def reference_trace(problem: Problem, style: str, rng: random.Random) -> Trace:
    """A reference response to ``problem`` in ``style`` (random choices drawn from ``rng``)."""
    if style == "brief":
        return _brief(problem)
    if style in STYLES:
        return _search(problem, style, rng)
    raise ConfigError(f"answer style {style!r} is unknown; valid styles: {', '.join(STYLES)}")


def label_tokens(tokens: Sequence[str]) -> list[str]:
    """E/X label of each response token by the grammar: an ``open`` clause (``step`` through its
    closing ``;``) is E, every other token X. Works on any token sequence (a model's samples)."""
    labels, inside = [], False
    for tok in tokens:
        if tok == "step":
            inside = True
        labels.append("E" if inside else "X")
        if inside and tok == ";":
            inside = False
    return labels


def _check_mixture(mixture: Mapping[str, float]) -> list[tuple[str, float]]:
    bad = [s for s in mixture if s not in STYLES]
    if bad:
        raise ConfigError(f"styles {bad} are unknown; valid styles: {', '.join(STYLES)}")
    if any(v < 0 for v in mixture.values()) or sum(mixture.values()) <= 0:
        raise ConfigError(f"style mixture {dict(mixture)} needs non-negative shares with a positive sum")
    total = sum(mixture.values())
    return [(s, v / total) for s, v in mixture.items() if v > 0]


def training_examples(n: int, seed: int, mixture: Mapping[str, float],
                      shape: TaskShape = DEFAULT_SHAPE) -> Iterator[tuple[list[str], list[str]]]:
    """``n`` (prompt tokens, response tokens + EOS) pairs, styles drawn from ``mixture``."""
    shares = _check_mixture(mixture)
    styles, weights = [s for s, _ in shares], [v for _, v in shares]
    rng = random.Random(seed)
    for i in range(n):
        problem = make_problem(rng, f"t{i}", shape)
        style = rng.choices(styles, weights)[0]
        trace = reference_trace(problem, style, rng)
        yield problem.prompt().split(), [*trace.tokens, EOS]
