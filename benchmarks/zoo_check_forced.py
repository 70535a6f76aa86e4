"""Teacher-forced diagnosis of a zoo model's checks (issue 13; docs/zoo-design.md, changes 8-11).

A greedy audit mixes two failures: a wrong copy of the record, and a wrong check of a right one.
This script feeds the model reference ``systematic`` traces (every record right) and reads, at
each check's kind (``need #j *d``), whether the model ranks the true answer first among all
tokens: the record's item of that kind when it holds one (change 11's checks), else ``no``. It
also reports, per attention head of every layer, the mean attention mass that the check's kind
puts on the items of that kind in the record just opened (when the record holds one): a head that
does the check by looking at the record puts its mass there.

Usage: ``python benchmarks/zoo_check_forced.py --model DIR [--problems 30]``. Prints one JSON
object. (Change 8 ran an earlier version on the item checks of changes 5-8, at commit 07fff89.)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def diagnose(model_dir: str, n_problems: int = 30, seed: int = 777) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from nex_interp.zoo.task import generate_problems, kind_label, kind_of, vocabulary
    from nex_interp.zoo.traces import reference_trace

    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    ids = {w: i for i, w in enumerate(vocabulary())}
    ranked = {"present": [], "absent": []}
    mass: list[list[list[float]]] = []  # per check whose record holds the kind: layer x head
    for p in generate_problems(n_problems, seed, prefix="forced"):
        prompt = p.prompt().split()
        tokens = prompt + list(reference_trace(p, "systematic", random.Random(3)).tokens)
        with torch.no_grad():
            out = model(torch.tensor([[ids[w] for w in tokens]]), output_attentions=True)
        logp = out.logits[0].log_softmax(-1)
        record = range(0)
        for i in range(len(prompt), len(tokens) - 1):
            if tokens[i] == "open":
                record = range(i + 2, tokens.index(";", i))
            if tokens[i - 2] != "need" or not tokens[i].startswith("*"):
                continue
            truth = tokens[i + 1]
            ranked["absent" if truth == "no" else "present"].append(float(int(logp[i].argmax()) == ids[truth]))
            hits = [j for j in record if kind_label(kind_of(int(tokens[j]))) == tokens[i]]
            if hits:
                mass.append([[float(a[0, h, i, hits].sum()) for h in range(a.shape[1])] for a in out.attentions])
    layers = len(mass[0]) if mass else 0
    return {
        "model": model_dir,
        "problems": n_problems,
        "checks": {k: len(v) for k, v in ranked.items()},
        "right_when_present": statistics.fmean(ranked["present"]),
        "right_when_absent": statistics.fmean(ranked["absent"]),
        "balanced_accuracy": (statistics.fmean(ranked["present"]) + statistics.fmean(ranked["absent"])) / 2,
        "attention_on_record_items_of_kind": {
            f"layer{L}": [round(statistics.fmean(m[L][h] for m in mass), 3) for h in range(len(mass[0][L]))]
            for L in range(layers)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a zoo model directory (Hugging Face layout)")
    ap.add_argument("--problems", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if not (Path(args.model) / "config.json").is_file():
        sys.exit(f"error: {args.model} is not a model directory (no config.json); pass a zoo model's directory")
    print(json.dumps(diagnose(args.model, args.problems), indent=1))


if __name__ == "__main__":
    main()
