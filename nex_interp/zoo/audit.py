"""Step-by-step consistency of a box-search response with its problem (for any response: a
reference trace, or a model's sample).

:func:`audit_response` walks the trace grammar of :mod:`.traces` and counts, per kind of step,
how many steps were written and how many agree with the problem:

* an ``open`` clause (``step N open bK items ;``) agrees when its step number is the previous one plus 1, its label names a
  box, and the items it lists are exactly that box's items, in prompt order;
* a ``need #j *d ITEM|no`` check agrees when ``*d`` is the ``j``-th query kind and its answer is
  the item of that kind in the box open at that point, or ``no`` when the box holds none;
* a ``drop``/``hold``/``take`` verdict agrees when it names the open box (or, for ``take``, a
  box held before) and is true of it (``drop``: the box lacks a query kind; ``hold``/``take``:
  it holds them all).

It also counts revisits (opening a box already opened), the items listed in ``open`` clauses
that name a box and how many of them equal the box's item at the same position (a finer
reading of the copy than the all-or-nothing ``opens_ok``), and tokens it could not parse. The
counts feed the learnability probe and, later, the zoo's diagnostics (cycle kinds).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from .task import Problem, check_answer, kind_label


@dataclass
class Audit:
    """Counts of steps written and steps that agree with the problem (see the module docstring)."""

    opens: int = 0
    opens_ok: int = 0
    checks: int = 0
    checks_ok: int = 0
    verdicts: int = 0
    verdicts_ok: int = 0
    revisits: int = 0
    items_listed: int = 0
    items_ok: int = 0
    unparsed: int = 0
    answer: str | None = None
    correct: bool = False

    @property
    def steps(self) -> int:
        return self.opens + self.checks + self.verdicts

    @property
    def consistent_share(self) -> float:
        """Share of steps (opens, checks, verdicts) that agree with the problem; NaN with none."""
        ok = self.opens_ok + self.checks_ok + self.verdicts_ok
        return ok / self.steps if self.steps else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "steps": self.steps, "consistent_share": self.consistent_share}


def _int(tok: str) -> int | None:
    return int(tok) if tok.isdigit() else None


def audit_response(problem: Problem, tokens: Sequence[str]) -> Audit:
    """Audit ``tokens`` (a response, EOS and padding removed) against ``problem``."""
    a = Audit()
    toks = list(tokens)
    i, expected_step, current = 0, 1, None
    opened: set[str] = set()
    held: set[str] = set()
    while i < len(toks):
        t = toks[i]
        if t == "goal":
            j = toks.index(";", i) if ";" in toks[i:] else len(toks)
            i = j + 1
        elif t == "step":
            j = toks.index(";", i) if ";" in toks[i:] else len(toks)
            clause = toks[i + 1 : j]
            a.opens += 1
            ok = len(clause) >= 3 and clause[1] == "open"
            if ok:
                step, label = _int(clause[0]), clause[2]
                items = problem.box(label)
                listed = [_int(x) for x in clause[3:]]
                if items is not None:
                    a.items_listed += len(listed)
                    a.items_ok += sum(x == y for x, y in zip(listed, items))
                ok = step == expected_step and items is not None and tuple(listed) == items
                if label in opened:
                    a.revisits += 1
                opened.add(label)
                current = label if items is not None else None
            else:
                current = None
            a.opens_ok += ok
            expected_step += 1
            i = j + 1
        elif t == "need" and i + 3 < len(toks):
            slot, q, verdict = toks[i + 1], toks[i + 2], toks[i + 3]
            a.checks += 1
            box = problem.box(current) if current else None
            j = _int(slot[1:]) if slot[:1] == "#" else None
            right_kind = j is not None and 1 <= j <= len(problem.query) and kind_label(problem.query[j - 1]) == q
            if right_kind and box is not None:
                a.checks_ok += verdict == check_answer(problem, int(current[1:]), problem.query[j - 1])
            i += 4
        elif t in ("drop", "hold", "take") and i + 1 < len(toks):
            label = toks[i + 1]
            a.verdicts += 1
            named = label == current or (t == "take" and label in held)
            if named and problem.box(label) is not None:
                full = problem.holds_all(int(label[1:]))
                a.verdicts_ok += full if t in ("hold", "take") else not full
            if t == "hold":
                held.add(label)
            i += 2
        elif t == "ans" and i + 1 < len(toks):
            a.answer = toks[i + 1]
            i += 2
        elif t in (";", "stop"):
            i += 1
        else:
            a.unparsed += 1
            i += 1
    a.correct = a.answer == problem.answer
    return a
