"""The candidate set: N sampled responses per problem, with what each selection method reads.

A :class:`CandidateSet` is plain numpy: problem grouping, correctness (used only to evaluate),
extracted answers (for voting), response lengths, per-token output statistics (for the output-side
baselines) and precomputed per-response scores (NEX GMF). Build one with
:func:`load_responses` from a responses JSONL, then attach token statistics and NEX scores from a
cache (:mod:`nex_interp.selection.pipeline`), or construct it directly in a notebook or test.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ConfigError, NexError
from ..jsonl import read_jsonl
from .answers import REFERENCE_FIELDS, extract_answer, normalize_answer


class ResponsesError(NexError):
    """A responses JSONL file is missing, malformed or lacks a needed field."""


@dataclass(frozen=True)
class CandidateSet:
    """Responses grouped by problem.

    ids:          response ids, length n.
    problem_ids:  problem of each response (str), length n.
    correct:      float [n]: 1.0 correct, 0.0 wrong, NaN unknown; None when no response is graded.
    answers:      extracted, normalised final answer of each response (None: no answer found).
    n_tokens:     float [n] response length in tokens (NaN unknown).
    token_stats:  name -> per-response list of per-token arrays (None where missing); names in
                  :mod:`nex_interp.selection.token_inputs`.
    scores:       name -> float [n] per-response scores computed elsewhere (e.g. ``nex_gmf``).
    meta:         facts the methods need (e.g. ``vocab_size``), and where the data came from.
    """

    ids: list[str]
    problem_ids: list[str]
    correct: np.ndarray | None = None
    answers: list[str | None] | None = None
    n_tokens: np.ndarray | None = None
    token_stats: dict[str, list[np.ndarray | None]] = field(default_factory=dict)
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(self.problem_ids) != n:
            raise ValueError(f"{len(self.problem_ids)} problem ids for {n} responses")
        for name, arr in (("correct", self.correct), ("n_tokens", self.n_tokens)):
            if arr is not None and len(arr) != n:
                raise ValueError(f"{name} has {len(arr)} values for {n} responses")
        if self.answers is not None and len(self.answers) != n:
            raise ValueError(f"answers has {len(self.answers)} values for {n} responses")
        for name, vals in list(self.token_stats.items()) + list(self.scores.items()):
            if len(vals) != n:
                raise ValueError(f"{name} has {len(vals)} values for {n} responses")

    def __len__(self) -> int:
        return len(self.ids)

    def problems(self) -> list[tuple[str, np.ndarray]]:
        """(problem id, response indices) in order of first appearance."""
        order: dict[str, list[int]] = {}
        for i, p in enumerate(self.problem_ids):
            order.setdefault(p, []).append(i)
        return [(p, np.asarray(ix, dtype=np.int64)) for p, ix in order.items()]

    def with_scores(self, **scores: np.ndarray) -> "CandidateSet":
        """A copy with more per-response scores attached."""
        merged = dict(self.scores)
        merged.update({k: np.asarray(v, dtype=np.float64) for k, v in scores.items()})
        return dataclasses.replace(self, scores=merged)

    def with_token_stats(self, stats: dict[str, list[np.ndarray | None]], n_tokens: np.ndarray | None, **meta) -> "CandidateSet":
        """A copy with per-token statistics (and lengths) attached."""
        merged = dict(self.token_stats)
        merged.update(stats)
        return dataclasses.replace(
            self, token_stats=merged, n_tokens=self.n_tokens if n_tokens is None else n_tokens, meta={**self.meta, **meta}
        )

    def subset(self, idx: np.ndarray) -> "CandidateSet":
        """The responses at ``idx`` (in that order)."""
        idx = np.asarray(idx, dtype=np.int64)
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return CandidateSet(
            ids=pick(self.ids),
            problem_ids=pick(self.problem_ids),
            correct=None if self.correct is None else self.correct[idx],
            answers=None if self.answers is None else pick(self.answers),
            n_tokens=None if self.n_tokens is None else self.n_tokens[idx],
            token_stats={k: pick(v) for k, v in self.token_stats.items()},
            scores={k: v[idx] for k, v in self.scores.items()},
            meta=dict(self.meta),
        )


def read_responses(path: str | Path) -> list[dict]:
    """The rows of a responses JSONL file (:func:`nex_interp.jsonl.read_jsonl`); a missing or
    malformed file, or one without any row, is a one-line :class:`ResponsesError`."""
    path = Path(path)
    rows = read_jsonl(path, "responses file", error=ResponsesError, missing_hint="pass the JSONL written by 'nex generate'")
    if not rows:
        raise ResponsesError(f"{path} holds no responses")
    return rows


def _as_correct(value: object, path: Path, rid: str) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return float(value)
    raise ResponsesError(f"{path}: response {rid!r} has correct={value!r}: use true/false (or 1/0)")


def candidates_from_rows(
    rows: list[dict],
    source: str = "<rows>",
    text_field: str = "response",
    answer_field: str | None = None,
    reference_field: str | None = None,
    extractor: Callable[[str], object] | None = None,
    checker: Callable[[dict], object] | None = None,
) -> CandidateSet:
    """A candidate set from response rows (``id``, ``problem_id``, ``response``, optional ``correct``).

    Answers: ``row[answer_field]`` when given, else ``extractor(row[text_field])`` (default
    :func:`~nex_interp.selection.answers.extract_answer`). Correctness, in order: ``checker(row)``
    when given; the row's ``correct`` field; the extracted answer compared to the reference field
    (``reference_field`` or the first of ``reference_answer, reference, gold, target, answer``
    present). Without any of these, correctness is unknown (selection runs, accuracy is not reported).
    """
    path = Path(source)
    extractor = extractor or extract_answer
    ids, pids, answers, correct = [], [], [], []
    seen: set[str] = set()
    for k, row in enumerate(rows):
        rid = row.get("id", k)
        rid = str(rid)
        if rid in seen:
            raise ResponsesError(f"{path}: response id {rid!r} appears twice: ids must be unique")
        seen.add(rid)
        if "problem_id" not in row:
            raise ResponsesError(f"{path}: response {rid!r} has no 'problem_id': best-of-N groups responses by problem")
        text = row.get(text_field)
        if answer_field is not None:
            ans = normalize_answer(row.get(answer_field))
        else:
            ans = normalize_answer(extractor(text)) if isinstance(text, str) else None
        if checker is not None:
            c = _as_correct(checker(row), path, rid)
        elif "correct" in row:
            c = _as_correct(row["correct"], path, rid)
        else:
            ref_field = reference_field or next((f for f in REFERENCE_FIELDS if f in row and f != answer_field), None)
            has_answer_source = answer_field is not None or isinstance(text, str)
            if ref_field is None or row.get(ref_field) is None or not has_answer_source:
                c = float("nan")
            else:
                c = float(ans is not None and ans == normalize_answer(row[ref_field]))
        ids.append(rid)
        pids.append(str(row["problem_id"]))
        answers.append(ans)
        correct.append(c)
    corr = np.asarray(correct, dtype=np.float64)
    return CandidateSet(
        ids=ids,
        problem_ids=pids,
        correct=None if np.isnan(corr).all() else corr,
        answers=answers,
        meta={"responses": str(source)},
    )


def load_responses(path: str | Path, **kwargs) -> CandidateSet:
    """:func:`candidates_from_rows` on a responses JSONL file."""
    if kwargs.get("reference_field") is not None and not isinstance(kwargs["reference_field"], str):
        raise ConfigError("reference_field must be a field name")
    return candidates_from_rows(read_responses(path), source=str(path), **kwargs)
