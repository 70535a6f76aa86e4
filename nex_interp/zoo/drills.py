"""Copy drills: the first phase of the base stage (``docs/zoo-design.md``, change 10).

A drill is a random sequence of the task's content tokens (items, box labels, slots, kinds; no
token twice) and, as the response, the same sequence again. From its second token on, every
response token is "the token that followed this one before", the look-up of an induction head,
and nothing else predicts it. Every copy in the box-search grammar is that same look-up (the
record after its box label, the goal line after its slot labels, a check's kind after its slot),
so a base that starts on drills can build its copy circuit before the task's other structure
competes for the gradient. Runs of change 9 without drills stayed on the loss plateau that comes
before a copy circuit for 7,000 steps.
"""

from __future__ import annotations

import random
from typing import Iterator

from .task import BOS, DEFAULT_SHAPE, EOS, PAD, UNK, WORDS, TaskShape, vocabulary

#: shortest and longest drill sequence (the prompt holds one copy, the response the other)
MIN_LEN, MAX_LEN = 20, 120


def content_tokens(shape: TaskShape = DEFAULT_SHAPE) -> list[str]:
    """Tokens a drill draws from: every token but the specials and the grammar words."""
    skip = {BOS, EOS, PAD, UNK, *WORDS}
    return [t for t in vocabulary(shape) if t not in skip]


def copy_drills(n: int, seed: int, shape: TaskShape = DEFAULT_SHAPE) -> Iterator[tuple[list[str], list[str]]]:
    """``n`` (prompt tokens, response tokens + EOS) pairs: ``<bos> s`` and ``s <eos>`` for a random
    sequence ``s`` of MIN_LEN..MAX_LEN distinct content tokens."""
    pool = content_tokens(shape)
    rng = random.Random(seed)
    for _ in range(n):
        seq = rng.sample(pool, rng.randint(MIN_LEN, MAX_LEN))
        yield [BOS, *seq], [*seq, EOS]


def drill_accuracy(model, n: int = 64, seed: int = 7_777, shape: TaskShape = DEFAULT_SHAPE) -> float:
    """Teacher-forced share of drill response tokens after the first (the copies an induction
    head makes) that the model ranks first, on ``n`` held-out drills."""
    import torch

    ids = {w: i for i, w in enumerate(vocabulary(shape))}
    was_training = model.training
    model.eval()
    right = total = 0
    with torch.no_grad():
        for prompt, response in copy_drills(n, seed, shape):
            seq = torch.tensor([[ids[t] for t in prompt + response[:-1]]])
            pred = model(input_ids=seq).logits[0].argmax(-1)
            start = len(prompt)  # position of the response's first token; predictions from start on
            want = seq[0, start + 1 :]
            got = pred[start : seq.shape[1] - 1]
            right += int((got == want).sum())
            total += want.numel()
    model.train(was_training)
    return right / total
