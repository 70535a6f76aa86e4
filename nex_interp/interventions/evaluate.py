"""Greedy, batched evaluation of one model on a task's problems (accuracy of generated answers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .generation import greedy_generate
from .tasks import EvalProblem, Task


@dataclass(frozen=True)
class Evaluation:
    """Per-problem correctness (0/1, in problem order) and the decoded responses."""

    correct: np.ndarray
    responses: list[str]

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.correct)) if len(self.correct) else float("nan")


def encode_prompts(tokenizer: Any, prompts: Sequence[str], device: str = "cpu") -> tuple[Any, Any]:
    """Left-padded ``(input_ids, attention_mask)`` for ``prompts``."""
    tokenizer.padding_side = "left"
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True)
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def decode_new(tokenizer: Any, new_tokens: Any, eos_token_id: int | None) -> list[str]:
    """Decode generated tokens, cut at the first EOS, special tokens dropped."""
    out = []
    for row in new_tokens.tolist():
        if eos_token_id is not None and eos_token_id in row:
            row = row[: row.index(eos_token_id)]
        out.append(tokenizer.decode(row, skip_special_tokens=True))
    return out


def evaluate(
    hf_model: Any,
    tokenizer: Any,
    task: Task,
    problems: Sequence[EvalProblem],
    batch_size: int,
    max_new_tokens: int,
    lockstep: Sequence[Any] = (),
    progress: Any = None,
    device: str = "cpu",
) -> Evaluation:
    """Generate greedily for every problem (``batch_size`` at a time) and check each answer.

    ``lockstep`` models see the same tokens at each step (activation patching from a donor).
    ``progress`` is an optional tqdm bar advanced by the number of problems done.
    """
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or 0)
    correct = np.zeros(len(problems), dtype=np.int8)
    responses: list[str] = []
    for start in range(0, len(problems), batch_size):
        batch = problems[start : start + batch_size]
        ids, mask = encode_prompts(tokenizer, [p.prompt for p in batch], device)
        new = greedy_generate(hf_model, ids, mask, max_new_tokens, eos, pad, lockstep=lockstep)
        texts = decode_new(tokenizer, new, eos)
        for i, (p, text) in enumerate(zip(batch, texts)):
            correct[start + i] = int(task.is_correct(p, text))
        responses.extend(texts)
        if progress is not None:
            progress.update(len(batch))
    return Evaluation(correct, responses)


def full_sequences(tokenizer: Any, problems: Sequence[EvalProblem], responses: Sequence[str], batch_size: int, device: str = "cpu"):
    """Yield left-padded ``(input_ids, attention_mask)`` batches of prompt + response texts."""
    texts = [f"{p.prompt} {r}".rstrip() for p, r in zip(problems, responses)]
    for start in range(0, len(texts), batch_size):
        yield encode_prompts(tokenizer, texts[start : start + batch_size], device)
