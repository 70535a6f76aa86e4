"""Capture cost against a plain forward pass, peak memory, and cache size against dense caching.

One run prints, for the same batch of ``prompt + response`` token sequences:

* time per token of the capture pass (hooks sparsifying every layer on the device + per-token
  output statistics) as a multiple of a plain forward pass (``hf_model(ids)`` with full logits),
  both timed in steady state (a warm-up run first, start-up excluded; the fastest of ``--reps``
  interleaved runs, in process CPU time on a CPU);
  also the end-to-end ``capture_cache`` (tokenizing, the pass, writing and fsyncing the cache);
* peak memory of each pass above the loaded model (CUDA: ``max_memory_allocated``; CPU: resident
  set size sampled every millisecond by a thread);
* bytes of the written cache against the dense ``run_with_cache`` of the same activations.

Default: SmolLM2-135M-Instruct on CPU (``OMP_NUM_THREADS=2 python benchmarks/capture.py``).
``--qwen3-4b-config``: a randomly initialised model with Qwen3-4B's exact configuration (no weights
needed) in bf16 with 8k-token responses, for a GPU (``--device cuda``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

TEXT = (
    "Let us think step by step. The farmer starts with 17 sheep and buys 5 more, so he has 17 + 5 = 22 sheep. "
    "Then 4 of them run away, which leaves 22 - 4 = 18. Wait, let me check that again: 22 minus 4 is 18, yes. "
    "Each sheep eats 3 kilograms of hay per day, so the flock needs 18 * 3 = 54 kilograms per day. "
    "Over a week that is 54 * 7 = 378 kilograms. Hmm, but the question asks for two weeks, so we double it: 756. "
    "Alternatively we could compute 18 * 3 * 14 directly, which gives 756 as well. So the answer is 756 kilograms. "
)

QWEN3_4B = dict(  # Qwen/Qwen3-4B config.json
    hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
    head_dim=128, vocab_size=151936, max_position_embeddings=40960, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
    tie_word_embeddings=True, hidden_act="silu", attention_bias=False, bos_token_id=151643, eos_token_id=151645,
)


class PeakRSS:
    """Peak resident set size (bytes) while the ``with`` block runs, sampled every millisecond."""

    def __enter__(self):
        self.peak = self._rss()
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)


def _clock(device: str):
    """CUDA: wall time after synchronising. CPU: process CPU time, which other processes sharing
    the cores disturb far less than wall time (run with a fixed OMP_NUM_THREADS)."""
    import torch

    if device.startswith("cuda"):
        def now():
            torch.cuda.synchronize()
            return time.perf_counter()
        return now
    return time.process_time


def measure_all(fns: dict, device: str, reps: int) -> dict:
    """{name: (min seconds, peak bytes above the start)}: one warm-up call each, then ``reps``
    rounds calling the functions in turn (interleaved, so drifting machine load hits all alike)."""
    import gc

    import torch

    clock = _clock(device)
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    peaks = {k: 0 for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            gc.collect()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                t = clock()
                fn()
                times[name].append(clock() - t)
                peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated() - base)
            else:
                with PeakRSS() as p:
                    base = p.peak
                    t = clock()
                    fn()
                    times[name].append(clock() - t)
                peaks[name] = max(peaks[name], p.peak - base)
    return {k: (min(times[k]), peaks[k]) for k in fns}


def qwen3_4b_model(device: str, n_layers: int = 36):
    """A LoadedModel with Qwen3-4B's configuration and random bf16 weights (nothing downloaded)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

    from nex_interp.models.loader import LoadedModel, repair_bridge_kv_cache
    from nex_interp.models.pico import make_pico_tokenizer
    from transformer_lens.model_bridge import TransformerBridge

    config = Qwen3Config(**{**QWEN3_4B, "num_hidden_layers": n_layers})
    tmp = Path(tempfile.mkdtemp(prefix="qwen3_4b_config_"))
    config.save_pretrained(tmp)
    make_pico_tokenizer().save_pretrained(tmp)  # ids are fed directly; any tokenizer will do
    tok = AutoTokenizer.from_pretrained(tmp)
    torch.manual_seed(0)
    with torch.device(device):
        hf = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation="eager")
    hf.eval()
    bridge = TransformerBridge.boot_transformers(str(tmp), hf_model=hf, tokenizer=tok, device=device, dtype=torch.bfloat16)
    repair_bridge_kv_cache(hf)
    ident = {"spec": "qwen3-4b-config (random init)", "arch": "qwen3", "n_layers": n_layers, "d_mlp": 9728, "n_ctx": 40960, "vocab_size": 151936}
    return LoadedModel(bridge=bridge, hf_model=hf, tokenizer=tok, identity=ident, n_layers=n_layers, d_mlp=9728, n_ctx=40960, device=device, dtype="bfloat16")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2", help="model spec (default smollm2)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch", type=int, default=1, help="sequences per forward pass (default 1)")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--response-tokens", type=int, default=960)
    ap.add_argument("--rule", default=None, help="activation rule (default: the capture default)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--qwen3-4b-config", action="store_true", help="random Qwen3-4B-config model, bf16, 8k-token responses (GPU)")
    ap.add_argument("--qwen3-layers", type=int, default=36, help="with --qwen3-4b-config: fewer layers, for a CPU smoke test")
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args(argv)

    import torch

    from nex_interp.capture.capture import CaptureConfig, _input_batch, capture_batch, capture_cache, prepare_items
    from nex_interp.capture.rules import DEFAULT_RULE, parse_rule
    from nex_interp.models.loader import load_model, neuron_hook_name

    if args.qwen3_4b_config:
        if args.response_tokens == 960:
            args.response_tokens = 8192 - args.prompt_tokens
        model = qwen3_4b_model(args.device, args.qwen3_layers)
    else:
        model = load_model(args.model, device=args.device, dtype=args.dtype)
    rule_text = args.rule or DEFAULT_RULE
    tok = model.tokenizer
    words = TEXT.split()
    need = args.prompt_tokens + args.response_tokens
    text_ids = tok(" ".join(words * (1 + 2 * need // len(words))), add_special_tokens=False)["input_ids"]
    rows = []
    for b in range(args.batch):
        seq = text_ids[b * 7 :]  # different sequences in the batch
        rows.append({"id": f"b{b}", "prompt": tok.decode(seq[: args.prompt_tokens]),
                     "response": tok.decode(seq[args.prompt_tokens : need])})
    config = CaptureConfig(rule=rule_text, batch_size=args.batch, progress=False)
    items, _ = prepare_items(model, rows, config)
    n_tokens = sum(it.length for it in items)
    ids = _input_batch(model, items)
    rule = parse_rule(rule_text)
    if rule.needs_calibration:
        from nex_interp.capture.capture import calibrate_rule

        rule = calibrate_rule(model, items, rule, tuple(range(model.n_layers)), config)
    layers = tuple(range(model.n_layers))

    def plain():
        with torch.inference_mode():
            out = model.hf_model(input_ids=ids, use_cache=False)
            return out.logits.shape

    def capture():
        return capture_batch(model, items, rule, layers, config)

    _ = model.bridge  # booted before timing
    tmp = Path(tempfile.mkdtemp(prefix="nex_capture_bench_"))

    def end_to_end(k=[0]):
        # tokenized rows in, cache files out (writing and fsync included)
        k[0] += 1
        out = tmp / f"cache{k[0]}"
        capture_cache(model, rows, out, config, resume=False)
        return out

    fns = {"plain": plain, "capture": capture, "end_to_end": end_to_end}
    if not args.qwen3_4b_config and model.identity.get("path"):
        # context: the same weights as a plain HF model that no TransformerBridge wraps
        from transformers import AutoModelForCausalLM

        bare = AutoModelForCausalLM.from_pretrained(model.identity["path"], dtype=next(model.hf_model.parameters()).dtype,
                                                    attn_implementation="eager").to(args.device).eval()

        def unwrapped():
            with torch.inference_mode():
                return bare(input_ids=ids, use_cache=False).logits.shape

        fns["unwrapped"] = unwrapped
    got = measure_all(fns, args.device, args.reps)
    (t_plain, m_plain), (t_cap, m_cap), (t_e2e, _) = got["plain"], got["capture"], got["end_to_end"]
    t_unwrapped = got["unwrapped"][0] if "unwrapped" in got else None
    cache_dir = end_to_end()
    cache_bytes = sum(p.stat().st_size for p in cache_dir.rglob("*") if p.is_file())
    sparse_bytes = sum(p.stat().st_size for sub in ("rows", "base") for p in (cache_dir / sub).iterdir())
    entries = json.loads((cache_dir / "manifest.json").read_text())
    n_rows, n_entries = entries["n_rows"], entries["n_entries"]

    # dense run_with_cache of the same activations
    elem = torch.finfo(next(model.hf_model.parameters()).dtype).bits // 8
    dense_bytes = model.n_layers * n_tokens * model.d_mlp * elem
    if not args.qwen3_4b_config:
        with torch.inference_mode():
            _, cache = model.bridge.run_with_cache(ids, names_filter=[neuron_hook_name(L) for L in layers])
        dense_bytes = sum(v.numel() * v.element_size() for v in cache.values())
        del cache

    res = {
        "model": model.identity.get("spec"), "device": args.device, "dtype": model.dtype, "rule": rule.spec,
        "batch": args.batch, "tokens_per_sequence": items[0].length, "response_tokens": sum(it.n_response for it in items),
        "threads": torch.get_num_threads(), "clock": "wall (cuda sync)" if args.device.startswith("cuda") else "process CPU time",
        "plain_s": t_plain, "capture_s": t_cap, "end_to_end_s": t_e2e,
        "ratio_capture": t_cap / t_plain, "unwrapped_hf_s": t_unwrapped, "ratio_end_to_end": t_e2e / t_plain,
        "tokens_per_s_plain": n_tokens / t_plain, "tokens_per_s_capture": n_tokens / t_cap, "tokens_per_s_end_to_end": n_tokens / t_e2e,
        "peak_plain_bytes": m_plain, "peak_capture_bytes": m_cap, "ratio_peak": m_cap / max(m_plain, 1),
        "cache_bytes": cache_bytes, "sparse_bytes": sparse_bytes, "dense_run_with_cache_bytes": dense_bytes,
        "ratio_dense_to_cache": dense_bytes / cache_bytes, "entries_per_row": n_entries / max(n_rows, 1),
    }
    mb = 1 / 2**20
    print(f"{res['model']} on {args.device} ({res['dtype']}, {res['threads']} threads, {res['clock']}, min of {args.reps}), batch {args.batch} x {items[0].length} tokens, rule {rule.spec}")
    print(f"  plain forward      {t_plain:8.3f} s  {res['tokens_per_s_plain']:9.0f} tok/s  peak +{m_plain * mb:8.1f} MiB")
    print(f"  capture pass       {t_cap:8.3f} s  {res['tokens_per_s_capture']:9.0f} tok/s  peak +{m_cap * mb:8.1f} MiB"
          f"   -> {res['ratio_capture']:.2f}x time, {res['ratio_peak']:.2f}x peak memory")
    if t_unwrapped:
        print(f"  (same weights, no bridge: {t_unwrapped:.3f} s, {n_tokens / t_unwrapped:.0f} tok/s; capture pass = {t_cap / t_unwrapped:.2f}x that)")
    print(f"  capture_cache e2e  {t_e2e:8.3f} s  {res['tokens_per_s_end_to_end']:9.0f} tok/s   -> {res['ratio_end_to_end']:.2f}x time")
    print(f"  cache {cache_bytes * mb:.2f} MiB on disk (rows+base {sparse_bytes * mb:.2f} MiB, {res['entries_per_row']:.0f} entries/row) "
          f"vs dense run_with_cache {dense_bytes * mb:.1f} MiB -> {res['ratio_dense_to_cache']:.0f}x smaller")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
