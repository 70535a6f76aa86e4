"""The zoo's synthetic reasoning task: *path search* with explicit explore and exploit spans.

A problem is a small graph: from a start node, a few branches leave, each a chain of nodes; the
goal node ends one of them. The edges are listed in a shuffled order, so the path cannot be read
off the prompt: answering requires following edges hop by hop, which a brief answer must do in a
single forward pass and a worked solution does one hop per token. The prompt is::

    <bos> edges 3 7 , 12 9 , 7 2 , 3 12 , 9 5 from 3 to 5 :

Two answer styles exist:

* **instruct** (brief): ``ans 3 12 9 5``;
* **thinking** (worked solution), a depth-first search: pick an untried branch, follow it to its
  end, and backtrack when it dead-ends, until the goal is reached::

      try 7 2 dead back try 12 9 5 goal ans 3 12 9 5

Every token of a response gets a ground-truth phase label (:func:`label_tokens`): **E**
(explore) for proposing a branch (``try`` and the branch's first node) and for abandoning it
(``back``); **X** (exploit) for following the chosen branch (the nodes after the first), verifying
its end (``dead``, ``goal``) and answering. These labels stand in for the human E/X annotations of
the NEX paper; they are defined by the grammar alone, so a model's own sampled responses are
labelled the same way as the generator's solutions.

Difficulty levels set the number of branches and their lengths (:data:`LEVELS`). Node names are
distinct random numbers in ``1..MAX_NODE``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Iterator, Sequence

from ..errors import ConfigError

#: level -> (number of branches, shortest branch, longest branch), lengths in nodes after the start
LEVELS: dict[int, tuple[int, int, int]] = {1: (2, 3, 4), 2: (3, 3, 4), 3: (4, 3, 4)}
#: node names are drawn from 1..MAX_NODE
MAX_NODE = 29
#: special tokens (the BOS token is written into the prompt text: word-level tokenizers add none)
BOS, EOS, PAD, UNK = "<bos>", "<eos>", "<pad>", "<unk>"
#: words of the task grammar besides node names
WORDS = ("edges", ",", "from", "to", ":", "try", "dead", "back", "goal", "ans")
#: tokens that mark exploration (proposing a branch, abandoning it)
EXPLORE_WORDS = frozenset({"try", "back"})
STYLES = ("instruct", "thinking")


@dataclass(frozen=True)
class Problem:
    """One path-search problem: its branches (chains from ``start``), the goal and the answer path."""

    id: str
    start: int
    goal: int
    branches: tuple[tuple[int, ...], ...]
    edge_order: tuple[int, ...]
    level: int

    @property
    def edges(self) -> list[tuple[int, int]]:
        """All edges (parent, child), in the shuffled order the prompt lists them."""
        chain_edges = [(([self.start] + list(b))[k], b[k]) for b in self.branches for k in range(len(b))]
        return [chain_edges[i] for i in self.edge_order]

    @property
    def answer(self) -> tuple[int, ...]:
        """The path from start to goal."""
        branch = next(b for b in self.branches if b[-1] == self.goal)
        return (self.start, *branch)

    def prompt(self) -> str:
        """The prompt text, BOS included, ending with ``:``."""
        edges = " , ".join(f"{a} {b}" for a, b in self.edges)
        return f"{BOS} edges {edges} from {self.start} to {self.goal} :"

    def to_row(self) -> dict:
        """A prompts-JSONL row: ``id``, ``prompt`` and the fields used only for evaluation."""
        return {
            "id": self.id, "prompt": self.prompt(), "start": self.start, "goal": self.goal,
            "branches": [list(b) for b in self.branches], "edge_order": list(self.edge_order),
            "level": self.level, "answer": list(self.answer),
        }

    @classmethod
    def from_row(cls, row: dict) -> "Problem":
        return cls(
            id=str(row["id"]), start=int(row["start"]), goal=int(row["goal"]),
            branches=tuple(tuple(int(x) for x in b) for b in row["branches"]),
            edge_order=tuple(int(i) for i in row["edge_order"]), level=int(row["level"]),
        )


def vocabulary() -> list[str]:
    """All tokens, specials first (ids are positions in this list)."""
    return [PAD, BOS, EOS, UNK, *WORDS, *(str(i) for i in range(1, MAX_NODE + 1))]


def make_problem(rng: random.Random, level: int, pid: str) -> Problem:
    """Draw one problem of ``level``."""
    if level not in LEVELS:
        raise ConfigError(f"difficulty level {level} is unknown; valid levels: {sorted(LEVELS)}")
    n_branches, lo, hi = LEVELS[level]
    lengths = [rng.randint(lo, hi) for _ in range(n_branches)]
    names = rng.sample(range(1, MAX_NODE + 1), 1 + sum(lengths))
    start, rest = names[0], names[1:]
    branches, k = [], 0
    for n in lengths:
        branches.append(tuple(rest[k : k + n]))
        k += n
    goal = branches[rng.randrange(n_branches)][-1]
    order = list(range(sum(lengths)))
    rng.shuffle(order)
    return Problem(pid, start, goal, tuple(branches), tuple(order), level)


def generate_problems(n: int, seed: int, levels: Sequence[int] = (1, 2, 3), prefix: str = "p") -> list[Problem]:
    """``n`` problems, levels cycling through ``levels``; the same seed gives the same problems."""
    rng = random.Random(seed)
    return [make_problem(rng, levels[i % len(levels)], f"{prefix}{seed}-{i:05d}") for i in range(n)]


def instruct_answer(problem: Problem) -> list[str]:
    """The brief answer's tokens (EOS excluded)."""
    return ["ans", *map(str, problem.answer)]


def worked_solution(problem: Problem, rng: random.Random) -> list[str]:
    """A worked solution's tokens (EOS excluded): depth-first search, branches in a random order."""
    order = list(problem.branches)
    rng.shuffle(order)
    out: list[str] = []
    for branch in order:
        out += ["try", *map(str, branch)]
        if branch[-1] == problem.goal:
            return out + ["goal", *instruct_answer(problem)]
        out += ["dead", "back"]
    raise AssertionError("unreachable: the goal ends one of the branches")


def solution(problem: Problem, style: str, rng: random.Random) -> list[str]:
    """Response tokens in ``style`` (``instruct`` or ``thinking``), EOS excluded."""
    if style == "instruct":
        return instruct_answer(problem)
    if style == "thinking":
        return worked_solution(problem, rng)
    raise ConfigError(f"answer style {style!r} is unknown; valid styles: {', '.join(STYLES)}")


def label_tokens(tokens: Sequence[str]) -> list[str]:
    """Ground-truth phase label (``E`` or ``X``) of each response token, by the task grammar.

    ``try``, the branch's first node right after it, and ``back`` are E (proposing a branch,
    abandoning it); everything else (following the branch, verifying its end, answering) is X.
    """
    labels = []
    prev = ""
    for tok in tokens:
        labels.append("E" if tok in EXPLORE_WORDS or prev == "try" else "X")
        prev = tok
    return labels


_ANS = re.compile(r"\bans((?:\s+\d+)+)")


def extract_answer(response: str) -> tuple[int, ...] | None:
    """The path after the last ``ans`` in a response, or None if there is none."""
    found = _ANS.findall(response)
    if not found:
        return None
    return tuple(int(x) for x in found[-1].split())


def is_correct(problem: Problem, response: str) -> bool:
    """Whether the response's final answer is the problem's path."""
    return extract_answer(response) == problem.answer


def training_examples(n: int, seed: int, thinking_fraction: float, levels: Sequence[int] = (1, 2, 3)) -> Iterator[tuple[list[str], list[str]]]:
    """``n`` (prompt tokens, response tokens + EOS) pairs; a ``thinking_fraction`` share are worked."""
    if not 0.0 <= thinking_fraction <= 1.0:
        raise ConfigError(f"thinking fraction {thinking_fraction} must lie in [0, 1]")
    rng = random.Random(seed)
    for i in range(n):
        problem = make_problem(rng, levels[rng.randrange(len(levels))], f"t{i}")
        style = "thinking" if rng.random() < thinking_fraction else "instruct"
        yield problem.prompt().split(), solution(problem, style, rng) + [EOS]
