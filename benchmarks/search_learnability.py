"""Learnability probe of the box-search task: does a small Qwen3 learn the search's local rules
within a fixed CPU time?

Trains one model from random init for ``--minutes`` of this process's CPU time (the machine is
shared, so wall time says little; ``--wall-cap`` stops it regardless) on a mix of ``systematic``
worked solutions and ``brief`` answers (loss on response tokens only), evaluating greedily on
held-out problems at a few points. For each evaluation it prints, from one run:

* free greedy decoding (the model picks its style): exact-answer accuracy, share of worked
  solutions, and the step audit of :mod:`nex_interp.zoo.audit` (share of ``open``
  clauses that copy the right box, of checks that are true, of verdicts that are true, and of
  all steps that agree with the problem);
* forced worked solutions (the response is started with ``goal``): the same figures;
* forced brief answers (the response is started with ``ans``): accuracy.

The loss is the summed cross-entropy of response tokens over a fixed token count per batch
(``--norm-tokens``), not a per-batch mean: batches are bucketed by length, so a mean would give
the few tokens of an all-brief batch a hundred times the weight of a worked solution's.

Writes ``OUT/probe.json`` (config, training curve, evaluations, provenance). Weights are not
kept. A measurement, not a test: run it alone, e.g.
``OMP_NUM_THREADS=1 python benchmarks/search_learnability.py --minutes 22 -o out/probe``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time
from pathlib import Path

from nex_interp.atomic import write_text
from nex_interp.provenance import record
from nex_interp.zoo.audit import audit_response
from nex_interp.zoo.task import EOS, PAD, TaskShape, generate_problems, vocabulary
from nex_interp.zoo.traces import training_examples
from nex_interp.zoo.train import padded_batch


def hf_config(args):
    from transformers import Qwen3Config

    vocab = vocabulary()
    return Qwen3Config(
        vocab_size=len(vocab), hidden_size=args.d_model, intermediate_size=args.d_mlp,
        num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=2,
        head_dim=args.d_model // 4, max_position_embeddings=768, tie_word_embeddings=True,
        pad_token_id=vocab.index(PAD), bos_token_id=vocab.index("<bos>"), eos_token_id=vocab.index(EOS),
    )


def shape(args) -> TaskShape:
    """The task shape to train and evaluate on (token ids always come from the full vocabulary:
    a smaller shape's tokens are a subset of it)."""
    return TaskShape(**{k: v for k, v in (("n_boxes", args.n_boxes), ("box_items", args.box_items),
                                          ("query_items", args.query_items), ("budget", args.budget),
                                          ("first_target", args.first_target)) if v is not None})


def batches(args):
    ids = {w: i for i, w in enumerate(vocabulary())}
    mix = {"systematic": 1 - args.brief_share, "brief": args.brief_share}
    examples = training_examples(10**9, args.seed, mix, shape(args))
    rng = random.Random(args.seed)
    while True:
        pool = sorted((next(examples) for _ in range(8 * args.batch)), key=lambda e: len(e[0]) + len(e[1]))
        chunks = [pool[i * args.batch : (i + 1) * args.batch] for i in range(8)]
        rng.shuffle(chunks)
        for batch in chunks:
            x, mask, y = padded_batch(batch, ids, ids[PAD])
            yield x, mask, y, int(mask.sum())


def evaluate(model, problems, max_new: int) -> dict:
    import torch

    from nex_interp.zoo.tokenizer import make_tokenizer

    tok = make_tokenizer()
    out = {}
    for mode, suffix in (("free", ""), ("worked", " goal"), ("brief", " ans")):
        enc = tok([p.prompt() + suffix for p in problems], return_tensors="pt", padding=True)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=2 if mode == "brief" else max_new, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        audits, worked, texts = [], 0, []
        for p, row in zip(problems, gen[:, enc["input_ids"].shape[1] :]):
            words = (suffix.split() + tok.decode(row, skip_special_tokens=True).split())
            worked += bool(words) and words[0] == "goal"
            audits.append(audit_response(p, words))
            texts.append(" ".join(words))
        n = len(problems)

        def share(ok: str, total: str) -> float:
            t = sum(getattr(a, total) for a in audits)
            return sum(getattr(a, ok) for a in audits) / t if t else float("nan")

        out[mode] = {
            "accuracy": sum(a.correct for a in audits) / n, "worked_share": worked / n,
            "opens_per_response": statistics.fmean(a.opens for a in audits),
            "open_ok": share("opens_ok", "opens"), "check_ok": share("checks_ok", "checks"),
            "verdict_ok": share("verdicts_ok", "verdicts"), "item_ok": share("items_ok", "items_listed"),
            "median_tokens": statistics.median(len(t.split()) for t in texts),
            "steps_consistent": (sum(a.opens_ok + a.checks_ok + a.verdicts_ok for a in audits)
                                 / max(1, sum(a.steps for a in audits))),
            "answered_none": sum(a.answer == "none" for a in audits) / n,
            "responses": texts[:10],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=22.0, help="training budget in CPU minutes of this process")
    ap.add_argument("--wall-cap", type=float, default=60.0, help="stop training after this many wall minutes anyway")
    ap.add_argument("--evals", type=float, nargs="+", default=[0.5, 1.0], help="fractions of --minutes at which to evaluate")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--d-mlp", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--brief-share", type=float, default=0.2)
    ap.add_argument("--eval-problems", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    for name in ("n-boxes", "box-items", "query-items", "budget", "first-target"):
        ap.add_argument(f"--{name}", type=int, default=None, help="task shape (default: the design's TaskShape)")
    ap.add_argument("--norm-tokens", type=float, default=300.0, help="loss = summed token loss / (batch * this)")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(hf_config(args), dtype=torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    problems = generate_problems(args.eval_problems, seed=10_000, shape=shape(args), prefix="eval")
    budget = args.minutes * 60
    marks = sorted(args.evals)
    curve, evals = [], []
    t0 = time.perf_counter()
    train_time, tokens, ema = 0.0, 0, None
    for step, (x, mask, y, n_tok) in enumerate(batches(args)):
        frac = train_time / budget
        lr = args.lr * min(1.0, (step + 1) / 100) * max(0.1, 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        for g in opt.param_groups:
            g["lr"] = lr
        ts = time.process_time()
        model.train()
        # loss summed over response tokens / a fixed count: a mean per batch would weight the
        # tokens of short (brief) batches far above those of long ones under length bucketing
        n_lab = int((y[:, 1:] != -100).sum())
        loss = model(input_ids=x, attention_mask=mask, labels=y).loss * n_lab / (args.batch * args.norm_tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        train_time += time.process_time() - ts
        tokens += n_tok
        tok_loss = loss.item() * args.batch * args.norm_tokens / max(1, n_lab)  # mean per token, for the log
        ema = tok_loss if ema is None else 0.95 * ema + 0.05 * tok_loss
        if step % 25 == 0:
            curve.append({"step": step, "train_cpu_s": round(train_time, 1), "tokens": tokens, "loss": round(ema, 4)})
            print(f"step {step} wall {time.perf_counter() - t0:.0f}s cpu {train_time:.0f}s tokens {tokens} loss {ema:.3f} ({tokens / max(train_time, 1e-9):.0f} tok/s)", flush=True)
        wall_out = time.perf_counter() - t0 > args.wall_cap * 60
        if marks and (train_time >= marks[0] * budget or wall_out):
            if wall_out:
                marks = marks[-1:]
            marks.pop(0)
            model.eval()
            te = time.perf_counter()
            res = evaluate(model, problems, max_new=480)
            res.update(step=step, train_cpu_s=round(train_time, 1), wall_s=round(time.perf_counter() - t0, 1), tokens=tokens, loss=round(ema, 4),
                       eval_s=round(time.perf_counter() - te, 1))
            evals.append(res)
            print(json.dumps({m: {k: v for k, v in r.items() if k != "responses"} if isinstance(r, dict) else r
                              for m, r in res.items()}), flush=True)
            if not marks:
                break
    result = {"config": vars(args) | {"out": str(args.out)}, "n_params": n_params, "curve": curve,
              "evals": evals, "wall_s": round(time.perf_counter() - t0, 1),
              "torch_threads": torch.get_num_threads(),
              "provenance": record("benchmarks/search_learnability.py", config=vars(args) | {"out": str(args.out)})}
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "probe.json", json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
