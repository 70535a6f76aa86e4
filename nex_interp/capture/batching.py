"""How capture groups responses into forward passes.

Each sequence (prompt + response) is right-padded to its own width, its length rounded up to a
multiple of :data:`PAD_MULTIPLE`, and a batch only holds sequences of the same width, so a
sequence computes the same numbers whatever its batch. Within a window of
``WINDOW_BATCHES * batch_size`` consecutive responses, batches are formed in order of width; the
caller writes responses in input order. The batch size defaults by device
(:func:`default_batch_size`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .engine import _Item

#: each sequence is padded to its length rounded up to a multiple of this; batches hold one width only
PAD_MULTIPLE = 16
#: responses per batching window, per unit of batch size
WINDOW_BATCHES = 8


def default_batch_size(device: str) -> int:
    """Responses per forward pass when none is given: 1 on a CPU (a CPU is saturated by one
    sequence, and batching cannot beat a plain one-at-a-time pass there), 4 on other devices."""
    return 1 if str(device).startswith("cpu") else 4


def padded_width(length: int) -> int:
    """The width a sequence of ``length`` tokens is padded to, whatever its batch."""
    return -(-length // PAD_MULTIPLE) * PAD_MULTIPLE


def plan_batches(items: list["_Item"], batch_size: int) -> list[list[list[int]]]:
    """Windows of batches: indices into ``items``. Each window covers ``WINDOW_BATCHES * batch_size``
    consecutive items (one item when ``batch_size`` is 1); within it, batches of at most
    ``batch_size`` items of the same :func:`padded_width`, by width, then input order."""
    window = 1 if batch_size == 1 else WINDOW_BATCHES * batch_size
    plan = []
    for w0 in range(0, len(items), window):
        idx = sorted(range(w0, min(w0 + window, len(items))), key=lambda i: (padded_width(items[i].length), i))
        batches: list[list[int]] = []
        for i in idx:
            b = batches[-1] if batches else None
            if b and len(b) < batch_size and padded_width(items[b[0]].length) == padded_width(items[i].length):
                b.append(i)
            else:
                batches.append([i])
        plan.append(batches)
    return plan
