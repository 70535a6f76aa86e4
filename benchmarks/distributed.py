"""Capture on Ray against one process, on a zoo model: the overhead of Ray with 1 worker, and 1 vs 2 workers.

``python benchmarks/distributed.py [--model zoo:thinking] [--responses 512] [--cpus 2] [--shard-size 64]``

Responses are zoo problems with worked solutions (the ``systematic`` reference search, about 370
tokens; ``--solutions`` repeats it, within the zoo's 768 positions only 1 fits). Three runs, in
this order, each from a cold start of what it needs:

* one process: ``load_model`` then :func:`nex_interp.capture.engine.write_cache`, torch threads = ``--cpus``;
* Ray, 1 worker with ``--cpus`` CPUs (torch threads = its CPUs): a local cluster of ``--cpus`` CPUs started
  (``ray.init``), then :func:`nex_interp.capture.distributed.capture_sharded`;
* Ray, 2 workers with ``--cpus / 2`` CPUs each.

Per run it prints the stages (cluster start, capture: worker start + model load + passes + writing), the
response-token throughput of the capture stage and of the whole run, the summed time the workers spent
in their shards, and the ratios: Ray 1 worker / one process (overhead), 2 workers / 1 worker (speed-up).
Every sharded result is checked against the one-process cache (same weights and GMF bits).
Needs the ``[distributed]`` extra.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def responses(n: int, solutions: int, seed: int) -> list[dict]:
    from nex_interp.zoo.task import generate_problems
    from nex_interp.zoo.traces import reference_trace

    rng = random.Random(seed)
    problems = generate_problems(n, seed)
    return [{"id": p.id, "prompt": p.prompt(), "response": " ".join(" ".join(reference_trace(p, "systematic", rng).tokens) for _ in range(solutions))}
            for p in problems]


def one_process(model_name: str, rows: list[dict], out: Path, cpus: int, config) -> dict:
    import torch

    from nex_interp.capture.engine import write_cache
    from nex_interp.models.loader import load_model

    torch.set_num_threads(cpus)
    t0 = time.perf_counter()
    model = load_model(model_name)
    t1 = time.perf_counter()
    rep = write_cache(model, rows, out, config)
    t2 = time.perf_counter()
    return {"start": t1 - t0, "capture": t2 - t1, "total": t2 - t0, "tokens": rep.n_tokens, "worker_s": t2 - t1}


def on_ray(model_name: str, rows: list[dict], out: Path, cpus: int, workers: int, shard_size: int, config) -> dict:
    import ray

    from nex_interp.capture.distributed import RayOptions, capture_sharded

    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    t1 = time.perf_counter()
    try:
        rep = capture_sharded(model_name, rows, out, config, RayOptions(workers=workers, shard_size=shard_size))
    finally:
        t2 = time.perf_counter()
        ray.shutdown()
    from nex_interp.cache.reader import open_cache

    tokens = int(open_cache(out).manifest["n_tokens"])
    return {"start": t1 - t0, "capture": t2 - t1, "total": t2 - t0, "tokens": tokens,
            "worker_s": sum(r.get("seconds", 0.0) for r in rep.rows), "cpus_per_worker": rep.cpus_per_worker}


def same_results(a: Path, b: Path) -> bool:
    from nex_interp.cache.reader import open_cache
    from nex_interp.core.learn import learn_weights
    from nex_interp.core.score import score_responses

    ca, cb = open_cache(a), open_cache(b)
    wa, wb = learn_weights(ca), learn_weights(cb)
    return (wa.index.tobytes() == wb.index.tobytes() and wa.weight.tobytes() == wb.weight.tobytes()
            and score_responses(ca, wa).tobytes() == score_responses(cb, wb).tobytes())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="zoo:thinking")
    ap.add_argument("--responses", type=int, default=512)
    ap.add_argument("--solutions", type=int, default=1, help="worked solutions per response")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local cluster and torch threads of one process")
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--row-tokens", type=int, default=8, help="the zoo's row size (docs/zoo.md)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from nex_interp.capture.engine import CaptureConfig

    config = CaptureConfig(row_tokens=args.row_tokens, progress=False)
    rows = responses(args.responses, args.solutions, args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="nex-dist-bench-"))
    try:
        runs = {"one process": one_process(args.model, rows, tmp / "one", args.cpus, config)}
        runs["ray, 1 worker"] = on_ray(args.model, rows, tmp / "w1", args.cpus, 1, args.shard_size, config)
        runs["ray, 2 workers"] = on_ray(args.model, rows, tmp / "w2", args.cpus, 2, args.shard_size, config)
        same = {k: same_results(tmp / "one", tmp / d) for k, d in (("ray, 1 worker", "w1"), ("ray, 2 workers", "w2"))}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    tokens = runs["one process"]["tokens"]
    print(f"model {args.model}, {len(rows)} responses, {tokens} response tokens, row {args.row_tokens} tokens, "
          f"{args.cpus} CPUs (os.cpu_count() {os.cpu_count()}), shards of {args.shard_size}")
    print(f"{'run':<16} {'start s':>8} {'capture s':>10} {'total s':>8} {'capture tok/s':>14} {'total tok/s':>12} {'worker s':>9}  same bits")
    for name, r in runs.items():
        print(f"{name:<16} {r['start']:>8.2f} {r['capture']:>10.2f} {r['total']:>8.2f} {r['tokens'] / r['capture']:>14.0f} "
              f"{r['tokens'] / r['total']:>12.0f} {r['worker_s']:>9.2f}  {same.get(name, '-')}")
    one, w1, w2 = runs["one process"], runs["ray, 1 worker"], runs["ray, 2 workers"]
    print(f"Ray 1 worker / one process, total time: {w1['total'] / one['total']:.2f}x "
          f"(overhead {100 * (w1['total'] / one['total'] - 1):+.0f}%); without starting the cluster: "
          f"{w1['capture'] / one['total']:.2f}x; time in the passes and writing (worker s): {w1['worker_s'] / one['worker_s']:.2f}x")
    print(f"2 workers / 1 worker, total time: {w2['total'] / w1['total']:.2f}x (speed-up {w1['total'] / w2['total']:.2f}x); "
          f"capture stage speed-up {w1['capture'] / w2['capture']:.2f}x")
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
