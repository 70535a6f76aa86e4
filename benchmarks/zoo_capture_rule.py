"""Choose the zoo demo's capture rule from the novelty precondition, before any NEX run.

Feeds reference worked solutions (the base model's training mixture, brief answers left out) to a
zoo model, captures them with each candidate rule at the demo's row size, and prints, per rule, the
precondition figure ``late_novelty_share`` (median over responses of the share of a response's
distinct captured neurons first seen in its last 20% of rows) and how many neurons a response
touches. No NEX weight, score or phase is computed.

The rule was fixed by this procedure (``docs/zoo.md``): the design's candidate ``topk:8`` if it
meets the precondition (>= 0.05), else the capture default ``topk:2``.

``python benchmarks/zoo_capture_rule.py --model ZOO_DIR/base -o out/capture_rule``
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

from nex_interp.atomic import write_text
from nex_interp.provenance import record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="zoo:balanced", help="model directory or zoo:NAME (default zoo:balanced)")
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--responses", type=int, default=48)
    ap.add_argument("--rules", nargs="+", default=["topk:8", "topk:2", "abs:0.5"])
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()

    from nex_interp.capture.engine import CaptureConfig, write_cache
    from nex_interp.cache.reader import open_cache
    from nex_interp.models.loader import load_model
    from nex_interp.zoo.experiment.config import DemoConfig
    from nex_interp.zoo.experiment.preconditions import late_novelty
    from nex_interp.zoo.plan import MODELS
    from nex_interp.zoo.task import generate_problems
    from nex_interp.zoo.traces import reference_trace

    demo = DemoConfig()
    rng = random.Random(args.seed)
    mix = {s: v for s, v in MODELS["base"].items() if s != "brief"}
    styles, weights = list(mix), list(mix.values())
    rows = []
    for p in generate_problems(args.responses, seed=args.seed, prefix="rule"):
        t = reference_trace(p, rng.choices(styles, weights)[0], rng)
        rows.append({"id": p.id, "prompt": p.prompt(), "response": " ".join(t.tokens), "style": t.style})
    model = load_model(args.model)
    result = {"model": args.model, "row_tokens": demo.row_tokens, "n_responses": len(rows), "rules": {}}
    for rule in args.rules:
        path = args.out / f"cache_{rule.replace(':', '_')}"
        write_cache(model, rows, path, CaptureConfig(row_tokens=demo.row_tokens, rule=rule, progress=False), resume=True)
        cache = open_cache(path)
        nov = [v for i in range(cache.n_responses) if (v := late_novelty(cache, i)) is not None]
        distinct = [len(set(cache.keys[cache.row_ptr[a] : cache.row_ptr[b]].tolist()))
                    for a, b in (cache.response_rows(i) for i in range(cache.n_responses))]
        result["rules"][rule] = {"late_novelty_share": statistics.median(nov), "median_distinct_neurons": statistics.median(distinct),
                                 "median_rows": statistics.median(b - a for a, b in (cache.response_rows(i) for i in range(cache.n_responses)))}
        print(rule, json.dumps(result["rules"][rule]), flush=True)
    chosen = "topk:8" if result["rules"].get("topk:8", {}).get("late_novelty_share", 0) >= 0.05 else "topk:2"
    result["chosen"] = chosen
    result["provenance"] = record("benchmarks/zoo_capture_rule.py", config=vars(args) | {"out": str(args.out)}, model=args.model)
    write_text(args.out / "capture_rule.json", json.dumps(result, indent=2) + "\n")
    print("chosen:", chosen)


if __name__ == "__main__":
    main()
