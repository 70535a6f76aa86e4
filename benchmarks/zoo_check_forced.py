"""Teacher-forced diagnosis of a zoo model's membership checks (issue 13; docs/zoo-design.md,
change 8).

A greedy audit mixes two failures: a wrong copy of the record, and a wrong check of a right one.
This script feeds the model reference ``systematic`` traces (every record right) and reads, at
each check's item (``need #j q``), whether the model ranks the true answer (``yes``/``no``) above
the other. It also reports, per attention head of every layer, the mean attention mass that the
check's item puts on the occurrence of the same item in the record just opened (when the record
holds it): a head that does the check by look-up puts its mass there.

Usage: ``python benchmarks/zoo_check_forced.py --model DIR [--slot-prompt] [--problems 30]``.
``--slot-prompt`` names the query by slot in the prompt (``find #1 q1 ...``), for models trained
that way (changes 6-8). Prints one JSON object.
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

    from nex_interp.zoo.task import generate_problems, vocabulary
    from nex_interp.zoo.traces import reference_trace

    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    ids = {w: i for i, w in enumerate(vocabulary())}
    ranked = {"yes": [], "no": []}
    mass: list[list[list[float]]] = []  # per check whose record holds the item: layer x head
    for p in generate_problems(n_problems, seed, prefix="forced"):
        prompt = p.prompt().split()
        tokens = prompt + list(reference_trace(p, "systematic", random.Random(3)).tokens)
        with torch.no_grad():
            out = model(torch.tensor([[ids[w] for w in tokens]]), output_attentions=True)
        logp = out.logits[0].log_softmax(-1)
        record_start = None
        for i in range(len(prompt), len(tokens) - 1):
            if tokens[i] == "open":
                record_start = i + 2
            if tokens[i + 1] not in ("yes", "no") or tokens[i - 2] != "need":
                continue
            truth = tokens[i + 1]
            other = "no" if truth == "yes" else "yes"
            ranked[truth].append(float(logp[i, ids[truth]] > logp[i, ids[other]]))
            hits = [j for j in range(record_start, i) if tokens[j] == tokens[i] and not tokens[j - 1].startswith("#")]
            if hits:
                mass.append([[float(a[0, h, i, hits].sum()) for h in range(a.shape[1])] for a in out.attentions])
    layers = len(mass[0]) if mass else 0
    return {
        "model": model_dir,
        "problems": n_problems,
        "checks": {k: len(v) for k, v in ranked.items()},
        "right_when_yes": statistics.fmean(ranked["yes"]),
        "right_when_no": statistics.fmean(ranked["no"]),
        "balanced_accuracy": (statistics.fmean(ranked["yes"]) + statistics.fmean(ranked["no"])) / 2,
        "attention_on_record_occurrence": {
            f"layer{L}": [round(statistics.fmean(m[L][h] for m in mass), 3) for h in range(len(mass[0][L]))]
            for L in range(layers)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a zoo model directory (Hugging Face layout)")
    ap.add_argument("--problems", type=int, default=30)
    ap.add_argument("--slot-prompt", action="store_true", help="the prompt of changes 6-8 (query named by slot)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if not (Path(args.model) / "config.json").is_file():
        sys.exit(f"error: {args.model} is not a model directory (no config.json); pass a zoo model's directory")
    if args.slot_prompt:
        from nex_interp.zoo.task import Problem

        Problem.prompt = Problem.prompt_with_slots
    print(json.dumps(diagnose(args.model, args.problems), indent=1))


if __name__ == "__main__":
    main()
