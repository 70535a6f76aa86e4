"""Is the zoo's membership check learnable on its own? (issue 13; docs/zoo-design.md, change 8)

Trains a fresh zoo-shaped model (4 layers, hidden 128, MLP 1024; local attention in layers 0 and
1 by default, as in change 8) on the check alone: each sequence is 8 cycles of
``open bK x1 .. x12 ; need #1 q1 A1 ... need #5 q5 A5`` with random items, and each checked item
is drawn from the record just opened (answer ``yes``) or from an earlier cycle's record (``no``),
half and half, so the check must tell the latest record from the earlier ones, as in the task.
The loss is on the answers only. Every ``--every`` steps it prints the accuracy of the answers on
held-out sequences (the argmax of ``yes``/``no``) split by the true answer.

Criteria fixed before the first run: a balanced accuracy of at least 0.9 within the steps means
the check is learnable in isolation (then what blocks it in the zoo is the rest of the task);
at most 0.65 means it is not learnt in this shape at this budget even alone.

Usage: ``python benchmarks/zoo_check_isolated.py [--steps 1000] [--full-attention] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CYCLES, ITEMS, CHECKS = 8, 12, 5


def sequence(rng: random.Random, pool: list[int], labels: list[str]) -> tuple[list[str], list[int]]:
    """Tokens of one sequence and the positions whose next token is an answer."""
    tokens, answers, earlier = ["<bos>"], [], []
    for c in range(CYCLES):
        record = rng.sample(pool, ITEMS)
        tokens += ["open", labels[c % len(labels)], *map(str, record), ";"]
        for j in range(1, CHECKS + 1):
            inside = not earlier or rng.random() < 0.5
            q = rng.choice(record) if inside else rng.choice([x for x in earlier if x not in record] or record)
            inside = q in record
            tokens += ["need", f"#{j}", str(q)]
            answers.append(len(tokens) - 1)
            tokens.append("yes" if inside else "no")
        earlier += record
    return tokens, answers


def run(steps: int, every: int, full_attention: bool, batch: int = 16, lr: float = 1.5e-3, seed: int = 0) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM

    from nex_interp.zoo.plan import ModelShape
    from nex_interp.zoo.task import DEFAULT_SHAPE, box_label, vocabulary
    from nex_interp.zoo.train import hf_config

    torch.manual_seed(seed)
    ids = {w: i for i, w in enumerate(vocabulary())}
    pool = list(range(DEFAULT_SHAPE.item_lo, DEFAULT_SHAPE.item_hi))
    labels = [box_label(k) for k in range(1, DEFAULT_SHAPE.n_boxes + 1)]
    shape = ModelShape(local_layers=() if full_attention else (0, 1))
    model = AutoModelForCausalLM.from_config(hf_config(shape), dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    yes, no = ids["yes"], ids["no"]

    def tensors(rng, n):
        seqs = [sequence(rng, pool, labels) for _ in range(n)]
        x = torch.tensor([[ids[t] for t in s] for s, _ in seqs])
        return x, [a for _, a in seqs]

    held_x, held_pos = tensors(random.Random(10_000 + seed), 32)
    rng, log, t0 = random.Random(seed), [], time.perf_counter()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 100)
        x, pos = tensors(rng, batch)
        logits = model(input_ids=x).logits
        rows = torch.tensor([b for b, p in enumerate(pos) for _ in p])
        cols = torch.tensor([i for p in pos for i in p])
        loss = torch.nn.functional.cross_entropy(logits[rows, cols], x[rows, cols + 1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % every == 0 or step + 1 == steps:
            with torch.no_grad():
                hl = model(input_ids=held_x).logits
            right = {"yes": [], "no": []}
            for b, p in enumerate(held_pos):
                for i in p:
                    truth = int(held_x[b, i + 1])
                    guess = yes if hl[b, i, yes] > hl[b, i, no] else no
                    right["yes" if truth == yes else "no"].append(guess == truth)
            rec = {"step": step + 1, "loss": round(loss.item(), 4), "seconds": round(time.perf_counter() - t0, 1),
                   "right_when_yes": round(sum(right["yes"]) / len(right["yes"]), 3),
                   "right_when_no": round(sum(right["no"]) / len(right["no"]), 3)}
            rec["balanced"] = round((rec["right_when_yes"] + rec["right_when_no"]) / 2, 3)
            print(json.dumps(rec), flush=True)
            log.append(rec)
    return log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--full-attention", action="store_true", help="no local layers (the shipped zoo's shape)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the checkpoints here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    log = run(args.steps, args.every, args.full_attention)
    if args.json:
        out = {"command": " ".join(sys.argv), "full_attention": args.full_attention, "checkpoints": log}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.json).with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
