"""Greedy, batched evaluation of one model on a task's problems (accuracy of generated answers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from .generation import greedy_generate
from .tasks import EvalProblem, Task

if TYPE_CHECKING:  # pragma: no cover
    from nex_interp.models.loader import LoadedModel


@dataclass(frozen=True)
class Evaluation:
    """Per-problem correctness (0/1, in problem order) and the decoded responses."""

    correct: np.ndarray
    responses: list[str]

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.correct)) if len(self.correct) else float("nan")


def encode_prompts(model: "LoadedModel", prompts: Sequence[str]) -> tuple[Any, Any]:
    """Left-padded ``(input_ids, attention_mask)`` for ``prompts``, on the model's device."""
    tokenizer = model.tokenizer
    tokenizer.padding_side = "left"
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True)
    return enc["input_ids"].to(model.device), enc["attention_mask"].to(model.device)


def special_ids(model: "LoadedModel") -> tuple[int | None, int]:
    """``(eos, pad)`` token ids of the model's tokenizer (pad falls back to eos, then 0)."""
    tokenizer = model.tokenizer
    eos = tokenizer.eos_token_id
    return eos, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or 0)


def decode_new(model: "LoadedModel", new_tokens: Any) -> list[str]:
    """Decode generated tokens, cut at the first EOS, special tokens dropped."""
    eos_token_id, _ = special_ids(model)
    out = []
    for row in new_tokens.tolist():
        if eos_token_id is not None and eos_token_id in row:
            row = row[: row.index(eos_token_id)]
        out.append(model.tokenizer.decode(row, skip_special_tokens=True))
    return out


def evaluate(
    model: "LoadedModel",
    task: Task,
    problems: Sequence[EvalProblem],
    batch_size: int,
    max_new_tokens: int,
    lockstep: Sequence["LoadedModel"] = (),
    progress: Any = None,
) -> Evaluation:
    """Generate greedily for every problem (``batch_size`` at a time) and check each answer.

    ``lockstep`` models see the same tokens at each step (activation patching from a donor).
    ``progress`` is an optional tqdm bar advanced by the number of problems done.
    """
    eos, pad = special_ids(model)
    correct = np.zeros(len(problems), dtype=np.int8)
    responses: list[str] = []
    for start in range(0, len(problems), batch_size):
        batch = problems[start : start + batch_size]
        ids, mask = encode_prompts(model, [p.prompt for p in batch])
        new = greedy_generate(model, ids, mask, max_new_tokens, eos, pad, lockstep=lockstep)
        texts = decode_new(model, new)
        for i, (p, text) in enumerate(zip(batch, texts)):
            correct[start + i] = int(task.is_correct(p, text))
        responses.extend(texts)
        if progress is not None:
            progress.update(len(batch))
    return Evaluation(correct, responses)


def full_sequences(
    model: "LoadedModel", problems: Sequence[EvalProblem], responses: Sequence[str], batch_size: int
) -> Iterator[tuple[Any, Any]]:
    """Yield left-padded ``(input_ids, attention_mask)`` batches of prompt + response texts."""
    texts = [f"{p.prompt} {r}".rstrip() for p, r in zip(problems, responses)]
    for start in range(0, len(texts), batch_size):
        yield encode_prompts(model, texts[start : start + batch_size])
