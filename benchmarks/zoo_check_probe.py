"""Learnability probe for the box-search zoo's membership checks (issue 13; docs/zoo-design.md,
change log items 5-8).

The shipped zoo of change 5 copied box records but not the checks (``need #j q yes|no``: 2-27%
right). This probe trains the base stage under a few pre-stated variants and prints, every
``--every`` steps, the greedy step audit of the full task: goal items right, items copied right,
whole ``open`` clauses right, checks right, verdicts right and accuracy; at the end it fine-tunes
``over_mid`` (the merge family's ``thinking`` end) and ``balanced`` from the base and audits them.
It runs on a GPU when one is there (the variants in parallel processes), so a probe of several
thousand steps per variant fits in minutes; the shipped zoo itself is trained on CPU.

Variants (``--variant``, several allowed; every one but ``window`` and ``window01`` has full
attention in every layer, as the shipped zoo of change 5):

* ``slots``:    prompt names the query by slot (``find #1 q1 ...``), base ``--steps`` steps;
* ``noslots``:  the prompt of change 5 (``find q1 q2 ...``), as a control;
* ``lr1.5``:    ``slots`` at half the peak learning rate;
* ``deep``:     ``slots`` with 8 layers of 512 MLP neurons (4,096 neurons, as the 4 x 1,024 shape);
* ``short``:    ``slots`` with a base of ``--short-steps`` steps;
* ``window``:   ``lr1.5`` with local attention (the last 36 tokens) in layers 0 and 2 (change 7);
* ``window01``: ``lr1.5`` with local attention in layers 0 and 1 (change 8).

The slot prompt is patched in here: the shipped task keeps change 5's prompt until a zoo trained
with it ships. Probe 2 of the change log (a running-count check) ran with the patch kept beside
its results (``benchmarks/results/zoo_check_probe_2/count_grammar.diff``).

Usage: ``python benchmarks/zoo_check_probe.py --variant slots noslots --steps 6000 --out DIR``.
Each variant writes ``DIR/<variant>.jsonl`` (one line per checkpoint) as it goes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = ("slots", "noslots", "lr1.5", "deep", "short", "window", "window01")


def _audit_batch(model, problems, device, max_new_tokens):
    import torch

    from nex_interp.zoo.audit import audit_response
    from nex_interp.zoo.tokenizer import make_tokenizer

    tok = make_tokenizer()
    enc = tok([p.prompt() for p in problems], return_tensors="pt", padding=True).to(device)
    model.eval()
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    model.train()
    audits, goal_ok, goal_n, opens, lengths = [], 0, 0, [], []
    for p, row in zip(problems, out[:, enc["input_ids"].shape[1]:].cpu()):
        words = tok.decode(row, skip_special_tokens=True).split()
        a = audit_response(p, words)
        audits.append(a)
        lengths.append(len(words))
        if words[:1] == ["goal"]:
            listed = words[2:2 * len(p.query) + 1:2]
            goal_n += len(p.query)
            goal_ok += sum(str(q) == x for q, x in zip(p.query, listed))
        opens.append(a.opens)

    def share(ok, total):
        t = sum(getattr(a, total) for a in audits)
        return round(sum(getattr(a, ok) for a in audits) / t, 4) if t else None

    return {"accuracy": sum(a.correct for a in audits) / len(audits), "goal_ok": round(goal_ok / goal_n, 4) if goal_n else None,
            "item_ok": share("items_ok", "items_listed"), "open_ok": share("opens_ok", "opens"),
            "check_ok": share("checks_ok", "checks"), "verdict_ok": share("verdicts_ok", "verdicts"),
            "mean_opens": statistics.fmean(opens), "median_tokens": statistics.median(lengths)}


def _train(stage, cfg, model, device, log, every, problems, max_new_tokens, name):
    import torch

    from nex_interp.zoo.train import batches, lr_at

    opt = torch.optim.AdamW(model.parameters(), lr=stage.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    ce = torch.nn.CrossEntropyLoss(ignore_index=-100, reduction="sum")
    ema, t0 = None, time.perf_counter()
    for step, (x, mask, y) in enumerate(batches(stage, cfg)):
        x, mask, y = x.to(device), mask.to(device), y.to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, stage, cfg.warmup_steps)
        logits = model(input_ids=x, attention_mask=mask).logits[:, :-1]
        target = y[:, 1:]
        total = ce(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        opt.zero_grad(set_to_none=True)
        (total / cfg.loss_tokens).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 20 == 0:
            per = total.item() / max(1, int((target != -100).sum()))
            ema = per if ema is None else 0.8 * ema + 0.2 * per
        if every and (step + 1) % every == 0 or step + 1 == stage.steps:
            rec = {"model": name, "step": step + 1, "loss": round(ema, 4), "seconds": round(time.perf_counter() - t0, 1),
                   **_audit_batch(model, problems, device, max_new_tokens)}
            log(rec)
    return model


def run_variant(variant: str, steps: int, short_steps: int, every: int, n_eval: int, out: str, device: str,
                ft_steps: int = 150) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from nex_interp.zoo import task
    from nex_interp.zoo.plan import MAX_NEW_TOKENS, MODELS, ModelShape
    from nex_interp.zoo.train import BASE, CURRICULUM, Stage, default_config, hf_config

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if variant != "noslots":  # the query named by slot in the prompt (change 6)
        task.Problem.prompt = task.Problem.prompt_with_slots
    cfg = default_config()
    shape = {"deep": ModelShape(n_layers=8, d_mlp=512, local_layers=()),
             "window": ModelShape(local_layers=(0, 2), sliding_window=36),
             "window01": ModelShape(local_layers=(0, 1), sliding_window=36)}.get(variant, ModelShape(local_layers=()))
    cfg = dataclasses.replace(cfg, shape=shape)
    n = short_steps if variant == "short" else steps
    lr = 1.5e-3 if variant in ("lr1.5", "window", "window01") else 3e-3
    base = Stage(BASE, None, tuple(MODELS["base"].items()), n, lr, 1, CURRICULUM)
    path = Path(out) / f"{variant}.jsonl"
    problems = task.generate_problems(n_eval, 10_000, prefix="eval")

    def log(rec):
        rec = {"variant": variant, **rec}
        with path.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_config(hf_config(shape), dtype=torch.float32).to(device)
    model.train()
    _train(base, cfg, model, device, log, every, problems, MAX_NEW_TOKENS, "base")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for i, name in enumerate(("over_mid", "balanced")):
        model.load_state_dict(state)
        torch.manual_seed(10 + i)
        stage = Stage(name, BASE, tuple(MODELS[name].items()), ft_steps, 1e-3, 10 + i)
        _train(stage, cfg, model, device, log, 0, problems, MAX_NEW_TOKENS, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", nargs="+", choices=VARIANTS, default=["slots"])
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--short-steps", type=int, default=4000)
    ap.add_argument("--ft-steps", type=int, default=150, help="steps of each fine-tune (as the shipped zoo's)")
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--eval", type=int, default=40, help="full-task problems in each greedy audit")
    ap.add_argument("--out", default="zoo_check_probe")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=run_variant, args=(v, args.steps, args.short_steps, args.every, args.eval, args.out, device, args.ft_steps))
             for v in args.variant]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


if __name__ == "__main__":
    main()
