"""The box-search task: problems, prompts, vocabulary and answer checking.

A problem is a row of numbered boxes, each holding a handful of items (numbers), and a query of
a few items. Exactly one box, the *target*, holds every query item; every other box (a
*distractor*) holds between one and all-but-one of them, so a partial check can accept a wrong
box. The prompt lists the boxes in order, then the query and the step budget::

    <bos> b1 417 233 ... ; b2 ... ; ... b12 ... ; find 233 517 88 641 302 budget 14 :

The answer is the target's label (``ans b9``). The target never sits in the first half of the
row (:attr:`TaskShape.first_target`), so committing to the first box that looks right is wrong
by construction and finding the answer takes a search of several boxes. How a response searches
(its *style*) and the E/X label of each of its tokens live in :mod:`.traces`.

Everything the model must do to search is local: the next box to open is the successor of the
box just opened (labels are listed in order), opening a box copies that box's record from the
prompt, and checking compares the query items with the record just copied onto the page.
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
WORDS = (";", ":", "find", "budget", "goal", "step", "open", "need", "yes", "no",
         "drop", "hold", "take", "stop", "ans", "none")
NONE = "none"


@dataclass(frozen=True)
class TaskShape:
    """Sizes of the task (one shape for every problem; fixed before any model was trained).

    n_boxes:      boxes per problem (labels ``b1..b{n_boxes}``).
    box_items:    items per box.
    query_items:  items in the query; the target holds all of them.
    budget:       the most boxes a response may open (revisits count); written in the prompt.
    item_lo/hi:   items are the numbers item_lo..item_hi-1 (one token each).
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
        if not 2 <= self.query_items <= self.box_items:
            raise ConfigError(f"query_items must lie in 2..box_items ({self.box_items}), got {self.query_items}")
        if not 1 <= self.first_target <= self.n_boxes:
            raise ConfigError(f"first_target must lie in 1..n_boxes ({self.n_boxes}), got {self.first_target}")
        if self.budget < self.n_boxes:
            raise ConfigError(f"budget ({self.budget}) must be at least n_boxes ({self.n_boxes}) so a plain search fits")
        pool = self.item_hi - self.item_lo
        if pool < self.query_items + self.n_boxes * self.box_items:
            raise ConfigError(f"item pool {self.item_lo}..{self.item_hi} is too small for {self.n_boxes} boxes of {self.box_items} items")
        if self.item_lo <= self.budget:
            raise ConfigError("item numbers must not overlap step numbers (item_lo > budget)")


DEFAULT_SHAPE = TaskShape()


def box_label(k: int) -> str:
    """Label of the ``k``-th box (1-based)."""
    return f"b{k}"


def slot_label(j: int) -> str:
    """Label of the ``j``-th query item (1-based) in a worked solution: ``goal #1 q1 #2 q2 ...``
    and ``need #2 q2 yes``, so each check's item follows its slot label, as in the goal line."""
    return f"#{j}"


def vocabulary(shape: TaskShape = DEFAULT_SHAPE) -> list[str]:
    """All tokens, specials first (ids are positions in this list)."""
    return [PAD, BOS, EOS, UNK, *WORDS,
            *(slot_label(j) for j in range(1, shape.query_items + 1)),
            *(box_label(k) for k in range(1, shape.n_boxes + 1)),
            *(str(s) for s in range(1, shape.budget + 1)),
            *(str(i) for i in range(shape.item_lo, shape.item_hi))]


@dataclass(frozen=True)
class Problem:
    """One box-search problem: the boxes' items in prompt order, the query, the target's position."""

    id: str
    boxes: tuple[tuple[int, ...], ...]
    query: tuple[int, ...]
    target: int  # 1-based position of the box that holds every query item
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

    def holds_all(self, k: int) -> bool:
        """Whether box ``k`` (1-based) holds every query item."""
        return set(self.query) <= set(self.boxes[k - 1])

    def prompt(self) -> str:
        """The prompt text, BOS included, ending with ``:``."""
        return self._prompt(" ".join(map(str, self.query)))

    def prompt_with_slots(self) -> str:
        """The prompt with the query named by slot, ``find #1 q1 #2 q2 ...`` (docs/zoo-design.md,
        changes 6-8): the experiments' prompt, not the shipped task's. Benchmarks use it by setting
        ``Problem.prompt = Problem.prompt_with_slots``."""
        return self._prompt(" ".join(f"{slot_label(j)} {q}" for j, q in enumerate(self.query, 1)))

    def _prompt(self, query: str) -> str:
        boxes = " ".join(f"{box_label(k)} {' '.join(map(str, items))} ;" for k, items in enumerate(self.boxes, 1))
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

    The target's position is uniform on ``first_target..n_boxes``. Each distractor holds ``m``
    query items, ``m`` uniform on ``1..query_items-1``, chosen uniformly; every other item of
    every box is drawn once from the item pool (so apart from query items no item repeats), and
    each box's items are shuffled.
    """
    q = shape.query_items
    pool = rng.sample(range(shape.item_lo, shape.item_hi), q + shape.n_boxes * shape.box_items)
    query, fillers = pool[:q], iter(pool[q:])
    target = rng.randint(shape.first_target, shape.n_boxes)
    boxes = []
    for k in range(1, shape.n_boxes + 1):
        shared = list(query) if k == target else rng.sample(query, rng.randint(1, q - 1))
        items = shared + [next(fillers) for _ in range(shape.box_items - len(shared))]
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
