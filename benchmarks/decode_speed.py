"""Sampling speed of the zoo's models: ``transformers``' ``generate`` against
:func:`nex_interp.decoding.decode`, in one run, on the same rows.

Both draw each row's tokens with :class:`nex_interp.generation.RowSampler` from the same seeds, so
they write the same responses up to float rounding (the script prints how many rows agree). It
prints wall seconds and new tokens per second of each, and their ratio.

Usage: ``python benchmarks/decode_speed.py [--model thinking] [--problems 48] [--samples 4]
[--max-new-tokens 580] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="thinking", help="zoo model")
    ap.add_argument("--problems", type=int, default=48)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: the demo's")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=0.8)
    args = ap.parse_args()

    import torch
    from transformers import LogitsProcessorList

    from nex_interp.decoding import decode
    from nex_interp.generation import RowSampler
    from nex_interp.models.loader import load_model
    from nex_interp.zoo.plan import MAX_NEW_TOKENS
    from nex_interp.zoo.task import generate_problems

    torch.set_num_threads(args.threads)
    n_new = args.max_new_tokens or MAX_NEW_TOKENS
    model = load_model(f"zoo:{args.model}", boot_bridge=False)
    hf, tok = model.hf_model, model.tokenizer
    prompts = [tok(p.prompt(), add_special_tokens=False)["input_ids"] for p in generate_problems(args.problems, 4242, prefix="bench")]
    eos, pad = {tok.eos_token_id}, tok.pad_token_id
    seeds = list(range(len(prompts) * args.samples))

    t0 = time.perf_counter()
    fast = decode(hf, prompts, args.samples, n_new, eos, RowSampler(seeds, args.temperature, 1.0).draw, pad)
    t_fast = time.perf_counter() - t0

    width = max(len(p) for p in prompts)
    rows = [p for p in prompts for _ in range(args.samples)]
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in rows])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in rows])
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n_new, do_sample=False, pad_token_id=pad,
                          eos_token_id=sorted(eos), logits_processor=LogitsProcessorList([RowSampler(seeds, args.temperature, 1.0)]))
    t_hf = time.perf_counter() - t0

    def cut(seq):
        return seq[: seq.index(next(iter(eos))) + 1] if next(iter(eos)) in seq else seq

    slow = [cut(r) for r in out[:, width:].tolist()]
    same = sum(a == b for a, b in zip(fast, slow))
    n_tokens = sum(len(s) for s in fast)
    print(f"model zoo:{args.model}, {len(rows)} rows ({args.problems} problems x {args.samples}), up to {n_new} new tokens, "
          f"{args.threads} threads; {n_tokens} new tokens written")
    print(f"transformers generate: {t_hf:8.1f} s  {n_tokens / t_hf:8.0f} tokens/s")
    print(f"nex_interp decode:     {t_fast:8.1f} s  {n_tokens / t_fast:8.0f} tokens/s")
    print(f"speed-up: {t_hf / t_fast:.2f}x; rows written alike: {same}/{len(rows)}")


if __name__ == "__main__":
    main()
