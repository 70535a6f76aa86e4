"""Cache density (entries per 32-token row) of activation rules, measured on real chains of thought.

Generates a few chain-of-thought answers with the model (chat template, greedy), runs one
teacher-forced forward pass per response and applies every candidate rule to the same activations.
Prints a Markdown table (the one in docs/capture.md). On SmolLM2, CPU, about 3-5 minutes:

    OMP_NUM_THREADS=2 python benchmarks/densities.py --model smollm2
"""

from __future__ import annotations

import argparse
import json
import sys
import time

PROMPTS = [
    "A farmer has 17 sheep. All but 9 run away. How many sheep are left? Think step by step.",
    "Tom buys 3 books at 12 dollars each and 2 pens at 1.50 dollars each. How much does he spend? Explain your reasoning.",
    "What is the sum of all even numbers from 2 to 20? Show your work.",
    "A train travels 60 km in 45 minutes. What is its average speed in km per hour? Reason step by step.",
    "If 5 machines make 5 widgets in 5 minutes, how long do 100 machines take to make 100 widgets? Think carefully.",
    "Sara is twice as old as her brother. In 6 years she will be 1.5 times as old. How old is she now? Solve step by step.",
    "How many prime numbers are there between 10 and 40? List them and explain.",
    "A rectangle has perimeter 30 cm and length 9 cm. What is its area? Show each step.",
]

RULES = ["abs:1", "abs:2", "abs:4", "topk:2", "topk:4", "topk:8", "topk:16", "quantile:0.99", "quantile:0.995", "quantile:0.999"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--n-prompts", type=int, default=len(PROMPTS))
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from nex_interp.capture.engine import _Item, _input_batch, sparse_rows
    from nex_interp.models.hooks import installed_hooks
    from nex_interp.capture.rules import QuantileCalibrator, parse_rule
    from nex_interp.generation import generate_responses
    from nex_interp.models.loader import load_model
    from nex_interp.models.prompts import encode_prompt, encode_response

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_model(args.model, boot_bridge=False)  # plain HF decoding; the bridge boots for the capture pass
    t0 = time.time()
    rows = generate_responses(
        model, [{"id": i, "prompt": p} for i, p in enumerate(PROMPTS[: args.n_prompts])], samples=1,
        max_new_tokens=args.max_new_tokens, temperature=0, chat_template=True,
    )
    print(f"generated {sum(r['n_response_tokens'] for r in rows)} tokens in {time.time() - t0:.0f}s", file=sys.stderr)
    items = [
        _Item(str(i), {}, encode_prompt(model.tokenizer, r["prompt"], True), encode_response(model.tokenizer, r["response"]))
        for i, r in enumerate(rows)
    ]
    acts: dict[int, list] = {L: [] for L in range(model.n_layers)}
    for it in items:
        def grab(L, it=it):
            def fn(x, hook=None):
                acts[L].append(x[0, it.n_prompt : it.length].clone())
            return fn
        with installed_hooks(model, [(model.hook_name(L), grab(L)) for L in range(model.n_layers)]), torch.inference_mode():
            model.hf_model(input_ids=_input_batch(model, [it]), use_cache=False, logits_to_keep=1)
    n_tokens = sum(it.n_response for it in items)
    allv = torch.cat([torch.cat(acts[L]).flatten() for L in range(model.n_layers)])
    results = {"model": model.identity["spec"], "n_responses": len(items), "n_tokens": n_tokens, "rules": {},
               "share_positive": float((allv > 0).float().mean()), "share_gt1": float((allv > 1).float().mean())}
    for text in RULES:
        rule = parse_rule(text)
        if rule.kind == "quantile":
            cal = QuantileCalibrator(model.n_layers, rule.sign, "cpu")
            for L in range(model.n_layers):
                for a in acts[L]:
                    cal.add(L, a)
            rule = rule.with_thresholds(cal.thresholds(rule.value))
        per_row, per_tok = [], []
        for i in range(len(items)):
            n_rows = -(-items[i].n_response // 32)
            counts = np.zeros(n_rows, np.int64)
            tok_active = 0
            for L in range(model.n_layers):
                row, unit, mass, _, _ = sparse_rows(acts[L][i], rule, L, 32, 2048)
                counts += np.bincount(row, minlength=n_rows)
                tok_active += int(rule.select(acts[L][i], L)[0].sum())
            full = [c for j, c in enumerate(counts) if (j + 1) * 32 <= items[i].n_response]  # whole rows only
            per_row.extend(full)
            per_tok.append(tok_active / max(items[i].n_response, 1))
        results["rules"][text] = {
            "entries_per_row_mean": float(np.mean(per_row)), "entries_per_row_median": float(np.median(per_row)),
            "active_per_token": float(np.mean(per_tok)), "n_rows": len(per_row),
            "thresholds_range": [min(rule.thresholds), max(rule.thresholds)] if rule.thresholds else None,
        }
    n_neurons = model.n_layers * model.d_mlp
    print(f"\n{model.identity['spec']}: {len(items)} responses, {n_tokens} response tokens, {model.n_layers} x {model.d_mlp} neurons; "
          f"{results['share_positive']:.1%} of activations > 0, {results['share_gt1']:.2%} > 1\n")
    print("| rule | entries / 32-token row (mean) | median | active units / token | share of neurons per row |")
    print("|---|---|---|---|---|")
    for text, r in results["rules"].items():
        print(f"| `{text}` | {r['entries_per_row_mean']:.0f} | {r['entries_per_row_median']:.0f} | {r['active_per_token']:.0f} | "
              f"{r['entries_per_row_mean'] / n_neurons:.2%} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
