"""The box-search task: problems, prompts, vocabulary and answer checking.

A problem is a row of numbered boxes, each holding a handful of items (numbers 100..699). Every
item has a *kind*, its last digit, written ``*7`` for "an item ending in 7". The query names a
few kinds; exactly one box, the *target*, holds an item of every query kind, and every other box
(a *distractor*) holds items of between one and all-but-one of them, so a partial check can
accept a wrong box. The prompt lists the boxes in order, then the query by slot and the step
budget::

    <bos> b1 417 233 ... ; b2 ... ; ... b12 ... ; find #1 *3 #2 *7 #3 *8 #4 *1 #5 *2 budget 14 :

The answer is the target's label (``ans b9``). The target never sits in the first half of the
row (:attr:`TaskShape.first_target`), so committing to the first box that looks right is wrong
by construction and finding the answer takes a search of several boxes. How a response searches
(its *style*) and the E/X label of each of its tokens live in :mod:`.traces`.

Everything the model must do to search is local: the next box to open is the successor of the
box just opened (labels are listed in order), opening a box copies that box's record from the
prompt, and checking asks whether the record just copied onto the page holds an item of a query
kind. A kind is a property of each item token on its own, so a check needs no look-up of one
item among its copies elsewhere on the page (``docs/zoo-design.md``, change 9).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Sequence

from ..errors import ConfigError

#: special tokens (the BOS token is written into the prompt text: word-level tokenizers add none)
BOS, EOS, PAD, UNK = "<bos>", "<eos>", "<pad>", "<unk>"
#: words of the prompt and trace grammar besides box labels, step numbers and items
WORDS = (";", ":", "find", "budget", "goal", "step", "open", "need", "no",
         "drop", "hold", "take", "stop", "ans", "none")
NONE = "none"
#: item kinds: an item's kind is its last digit
N_KINDS = 10


@dataclass(frozen=True)
class TaskShape:
    """Sizes of the task (one shape for every problem; fixed before any model was trained).

    n_boxes:      boxes per problem (labels ``b1..b{n_boxes}``).
    box_items:    items per box.
    query_items:  kinds in the query; the target holds an item of each of them.
    budget:       the most boxes a response may open (revisits count); written in the prompt.
    item_lo/hi:   items are the numbers item_lo..item_hi-1 (one token each); an item's kind is
                  its last digit (:func:`kind_of`).
    first_target: the target sits at a position in first_target..n_boxes (1-based).
    """

    n_boxes: int = 12
    box_items: int = 12
    query_items: int = 5
    budget: int = 14
    item_lo: int = 100
    item_hi: int = 700
    first_target: int = 7

    def __post_init__(self) -> None:
        if not 2 <= self.query_items <= min(self.box_items, N_KINDS - 1):
            raise ConfigError(f"query_items must lie in 2..{min(self.box_items, N_KINDS - 1)} "
                              f"(at most box_items and one kind fewer than {N_KINDS}), got {self.query_items}")
        if not 1 <= self.first_target <= self.n_boxes:
            raise ConfigError(f"first_target must lie in 1..n_boxes ({self.n_boxes}), got {self.first_target}")
        if self.budget < self.n_boxes:
            raise ConfigError(f"budget ({self.budget}) must be at least n_boxes ({self.n_boxes}) so a plain search fits")
        per_kind = (self.item_hi - self.item_lo) // N_KINDS
        others = (N_KINDS - self.query_items) * per_kind
        if per_kind < self.n_boxes or others < self.n_boxes * (self.box_items - 1):
            raise ConfigError(f"item pool {self.item_lo}..{self.item_hi} is too small for {self.n_boxes} boxes of "
                              f"{self.box_items} items with {self.query_items} query kinds")
        if self.item_lo <= self.budget:
            raise ConfigError("item numbers must not overlap step numbers (item_lo > budget)")


DEFAULT_SHAPE = TaskShape()


def box_label(k: int) -> str:
    """Label of the ``k``-th box (1-based)."""
    return f"b{k}"


def slot_label(j: int) -> str:
    """Label of the ``j``-th query kind (1-based): ``find #1 *3 #2 *7 ...`` in the prompt,
    ``goal #1 *3 ...`` and ``need #2 *7 417`` in a worked solution, so each copy of a kind
    follows its slot label."""
    return f"#{j}"


def kind_of(item: int) -> int:
    """An item's kind: its last digit."""
    return item % N_KINDS


def check_answer(problem: "Problem", k: int, kind: int) -> str:
    """What a check of ``kind`` against box ``k`` writes (change 11 of ``docs/zoo-design.md``): the
    box's item of that kind, found in the record just opened and copied, or ``no`` when the box
    holds none. A box holds at most one item of each query kind."""
    found = [x for x in problem.boxes[k - 1] if kind_of(x) == kind]
    return str(found[0]) if found else "no"


def kind_label(kind: int) -> str:
    """Token of a kind: ``*7`` stands for "an item ending in 7"."""
    return f"*{kind}"


def vocabulary(shape: TaskShape = DEFAULT_SHAPE) -> list[str]:
    """All tokens, specials first (ids are positions in this list)."""
    return [PAD, BOS, EOS, UNK, *WORDS,
            *(slot_label(j) for j in range(1, shape.query_items + 1)),
            *(kind_label(d) for d in range(N_KINDS)),
            *(box_label(k) for k in range(1, shape.n_boxes + 1)),
            *(str(s) for s in range(1, shape.budget + 1)),
            *(str(i) for i in range(shape.item_lo, shape.item_hi))]


@dataclass(frozen=True)
class Problem:
    """One box-search problem: the boxes' items in prompt order, the query kinds, the target's position."""

    id: str
    boxes: tuple[tuple[int, ...], ...]
    query: tuple[int, ...]  # kinds (last digits), in slot order
    target: int  # 1-based position of the box that holds an item of every query kind
    budget: int

    @property
    def answer(self) -> str:
        """The target's label."""
        return box_label(self.target)

    def box(self, label: str) -> tuple[int, ...] | None:
        """Items of the box called ``label``, or None when there is no such box."""
        m = re.fullmatch(r"b(\d+)", label)
        if not m or not 1 <= int(m.group(1)) <= len(self.boxes):
            return None
        return self.boxes[int(m.group(1)) - 1]

    def kinds(self, k: int) -> set[int]:
        """Kinds of the items of box ``k`` (1-based)."""
        return {kind_of(x) for x in self.boxes[k - 1]}

    def holds_all(self, k: int) -> bool:
        """Whether box ``k`` (1-based) holds an item of every query kind."""
        return set(self.query) <= self.kinds(k)

    def prompt(self) -> str:
        """The prompt text, BOS included, ending with ``:``; the query is named by slot
        (``find #1 *3 #2 *7 ...``), so the goal line of a worked solution copies each kind from
        the token after its slot label."""
        boxes = " ".join(f"{box_label(k)} {' '.join(map(str, items))} ;" for k, items in enumerate(self.boxes, 1))
        query = " ".join(f"{slot_label(j)} {kind_label(d)}" for j, d in enumerate(self.query, 1))
        return f"{BOS} {boxes} find {query} budget {self.budget} :"

    def to_row(self) -> dict:
        """A prompts-JSONL row: ``id``, ``prompt`` and the fields used only for evaluation."""
        return {"id": self.id, "prompt": self.prompt(), "boxes": [list(b) for b in self.boxes],
                "query": list(self.query), "target": self.target, "budget": self.budget, "answer": self.answer}

    @classmethod
    def from_row(cls, row: dict) -> "Problem":
        return cls(id=str(row["id"]), boxes=tuple(tuple(int(x) for x in b) for b in row["boxes"]),
                   query=tuple(int(x) for x in row["query"]), target=int(row["target"]), budget=int(row["budget"]))


def make_problem(rng: random.Random, pid: str, shape: TaskShape = DEFAULT_SHAPE) -> Problem:
    """Draw one problem.

    The query is ``query_items`` distinct kinds; the target's position is uniform on
    ``first_target..n_boxes``. The target holds one item of each query kind; each distractor holds
    one item of each of ``m`` query kinds, ``m`` uniform on ``1..query_items-1``, chosen uniformly.
    Every other item of a box is of a kind outside the query. No item repeats within a problem,
    and each box's items are shuffled.
    """
    q = shape.query_items
    query = rng.sample(range(N_KINDS), q)
    pools = {d: [x for x in range(shape.item_lo, shape.item_hi) if kind_of(x) == d] for d in range(N_KINDS)}
    for pool in pools.values():
        rng.shuffle(pool)
    fillers = [x for d in range(N_KINDS) if d not in query for x in pools[d]]
    rng.shuffle(fillers)
    target = rng.randint(shape.first_target, shape.n_boxes)
    boxes = []
    for k in range(1, shape.n_boxes + 1):
        shared = list(query) if k == target else rng.sample(query, rng.randint(1, q - 1))
        items = [pools[d].pop() for d in shared] + [fillers.pop() for _ in range(shape.box_items - len(shared))]
        rng.shuffle(items)
        boxes.append(tuple(items))
    return Problem(pid, tuple(boxes), tuple(query), target, shape.budget)


def generate_problems(n: int, seed: int, shape: TaskShape = DEFAULT_SHAPE, prefix: str = "s") -> list[Problem]:
    """``n`` problems; the same seed gives the same problems."""
    rng = random.Random(seed)
    return [make_problem(rng, f"{prefix}{seed}-{i:05d}", shape) for i in range(n)]


_ANS = re.compile(r"\bans\s+(\S+)")


def extract_answer(response: str | Sequence[str]) -> str | None:
    """The token after the last ``ans`` in a response (a box label or ``none``), or None if absent."""
    text = response if isinstance(response, str) else " ".join(response)
    found = _ANS.findall(text)
    return found[-1] if found else None


def is_correct(problem: Problem, response: str | Sequence[str]) -> bool:
    """Whether the response's final answer is the target's label."""
    return extract_answer(response) == problem.answer
