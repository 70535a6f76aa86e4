"""Capture cost against a plain forward pass: end to end (whole processes), and in steady state.

Default mode, end to end. ``python benchmarks/capture.py`` writes a JSONL of ``--responses`` (12)
prompt/response pairs whose responses are 200-1000 tokens long for the model's tokenizer (texts
generated deterministically from ``--seed``; they need not be model samples), then times, as whole
processes and in interleaved repeats (``--reps``, alternating which runs first):

* ``nex capture --model M --responses R.jsonl -o OUT`` at its defaults (start-up, loading,
  tokenizing, the pass, per-token statistics, writing and fsyncing the cache);
* a plain Hugging Face forward pass over the same prompt + response texts, one at a time
  (``AutoModelForCausalLM.from_pretrained`` with its default attention, full logits), in a process
  of its own (this file with ``--plain-worker``).

It prints the wall time of each (median and min over the repeats), the ratio of the medians, and
the ratio of the processes' CPU times (less disturbed by other jobs on shared cores). A warm-up
pair on one response first fills the page cache. ``--responses-file F`` times an existing JSONL.

``--steady`` (and ``--qwen3-4b-config``): the earlier in-process measurement on one batch of
sequences: the capture pass (hooks sparsifying every layer on the device + per-token statistics)
against a plain forward pass, both after a warm-up, fastest of ``--reps`` interleaved runs (process
CPU time on a CPU, synchronised wall time on CUDA); the end-to-end ``write_cache``; peak memory
of each pass above the loaded model (CUDA: ``max_memory_allocated``; CPU: resident set size
sampled every millisecond); bytes of the written cache against the dense ``run_with_cache``.
``--qwen3-4b-config``: a randomly initialised model with Qwen3-4B's exact configuration (no weights
needed) in bf16 with 8k-token responses, for a GPU (``--device cuda``); ``--qwen3-layers 1
--response-tokens 64`` smoke-tests it on a CPU.

(Over 400 lines because the two modes share the model set-up and reporting; they are one tool.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

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


# ---------------------------------------------------------------------- end to end (processes)

SENTENCES = (
    "Let us think step by step about the {a} boxes.",
    "Each box holds {b} apples, so together they hold {a} * {b} = {c} apples.",
    "Wait, let me check that again: {a} times {b} is {c}, yes.",
    "Then {d} apples are eaten, which leaves {c} - {d} = {e}.",
    "Hmm, but the question asks for the apples per day over {b} days.",
    "Alternatively we could split the {e} apples into groups of {b} first.",
    "So the answer so far is {e}, but I should verify the second step.",
    "Another approach: count the boxes again, there are {a} of them.",
    "That means the farmer needs {c} kilograms of hay in total.",
    "Let me reconsider the case where {d} of the sheep run away.",
)


def synthetic_rows(tokenizer, n: int, seed: int, lo: int = 200, hi: int = 1000) -> list[dict]:
    """``n`` prompt/response pairs whose responses are about ``lo``..``hi`` tokens long (evenly
    spread, shuffled), from a seeded random walk over arithmetic-reasoning sentences."""
    rng = random.Random(seed)
    targets = [lo + (hi - lo) * i // max(n - 1, 1) for i in range(n)]
    rng.shuffle(targets)
    rows = []
    for i, target in enumerate(targets):
        parts, n_tok = [], 0
        while n_tok < target + 8:
            a, b, d = rng.randint(2, 60), rng.randint(2, 12), rng.randint(1, 40)
            parts.append(rng.choice(SENTENCES).format(a=a, b=b, c=a * b, d=d, e=a * b - d))
            n_tok += 14
            if n_tok >= target + 8:
                n_tok = len(tokenizer(" ".join(parts), add_special_tokens=False)["input_ids"])
        ids = tokenizer(" ".join(parts), add_special_tokens=False)["input_ids"][:target]
        prompt = f"A farmer has {rng.randint(5, 90)} sheep and buys {rng.randint(2, 20)} more. Each eats {rng.randint(2, 9)} kg of hay a day. How much hay for {rng.randint(2, 30)} days? Think step by step."
        rows.append({"id": f"r{i:02d}", "prompt": prompt, "response": tokenizer.decode(ids)})
    return rows


def plain_worker(args) -> int:
    """The baseline process: a plain HF forward over each prompt + response, one at a time."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=getattr(torch, args.dtype)).to(args.device).eval()
    n = 0
    with open(args.responses_file) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for row in rows:
        if row.get("chat_template"):
            text = tok.apply_chat_template([{"role": "user", "content": row["prompt"]}], tokenize=False, add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tok(row["prompt"])["input_ids"]
        ids = ids + tok(row["response"], add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = model(torch.tensor([ids], device=args.device)).logits
        n += logits.shape[1]
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    print(f"plain forward over {len(rows)} sequences, {n} tokens")
    return 0


def _timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one process; fails loudly on a non-zero exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"benchmark: {' '.join(cmd[:4])} ... failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def end_to_end_processes(args) -> int:
    from transformers import AutoTokenizer

    from nex_interp.models.loader import resolve_spec

    resolved = resolve_spec(args.model)
    if resolved.path is None:
        sys.exit(f"benchmark: model {args.model!r} is not a local directory: give smollm2, zoo:NAME, a .gguf or a directory")
    work = Path(tempfile.mkdtemp(prefix="nex_capture_e2e_"))
    tok = AutoTokenizer.from_pretrained(resolved.path)
    if args.responses_file:
        src = Path(args.responses_file)
        rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    else:
        rows = synthetic_rows(tok, args.responses, args.seed)
        src = work / "responses.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lengths = [len(tok(r["response"], add_special_tokens=False)["input_ids"]) for r in rows]
    warm = work / "warmup.jsonl"
    warm.write_text(json.dumps(rows[0]) + "\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    dev = ["--device", args.device, "--dtype", args.dtype]

    def nex_cmd(responses: Path, k: str) -> list[str]:
        return [sys.executable, "-m", "nex_interp", "capture", "--model", args.model, "--responses", str(responses), "-o", str(work / f"cache_{k}"), *dev]

    def plain_cmd(responses: Path) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), "--plain-worker", "--model-dir", str(resolved.path), "--responses-file", str(responses), *dev]

    load0 = os.getloadavg()
    _timed(plain_cmd(warm), env)
    _timed(nex_cmd(warm, "warm"), env)
    times: dict[str, list[tuple[float, float]]] = {"nex capture": [], "plain forward": []}
    for rep in range(args.reps):
        order = ["plain forward", "nex capture"] if rep % 2 == 0 else ["nex capture", "plain forward"]
        for name in order:
            cmd = plain_cmd(src) if name == "plain forward" else nex_cmd(src, str(rep))
            times[name].append(_timed(cmd, env))
            print(f"  rep {rep + 1} {name:13s} {times[name][-1][0]:7.2f} s wall {times[name][-1][1]:7.2f} s CPU", flush=True)
        shutil.rmtree(work / f"cache_{rep}", ignore_errors=True)
    load1 = os.getloadavg()
    med = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    mins = {k: min(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    res = {
        "mode": "end to end (processes)", "model": args.model, "device": args.device, "dtype": args.dtype,
        "responses": len(rows), "response_tokens": lengths, "reps": args.reps,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "loadavg_before": load0, "loadavg_after": load1,
        "wall_s": {k: [w for w, _ in v] for k, v in times.items()}, "cpu_s": {k: [c for _, c in v] for k, v in times.items()},
        "ratio_wall_median": med["nex capture"] / med["plain forward"], "ratio_wall_min": mins["nex capture"] / mins["plain forward"],
        "ratio_cpu_median": cpu["nex capture"] / cpu["plain forward"],
    }
    print(f"{args.model} on {args.device} ({args.dtype}, OMP_NUM_THREADS={res['omp_num_threads']}): {len(rows)} responses of "
          f"{min(lengths)}-{max(lengths)} tokens ({sum(lengths)} in all), {args.reps} interleaved repeats; load {load0[0]:.1f} -> {load1[0]:.1f}")
    for k in ("plain forward", "nex capture"):
        print(f"  {k:13s} wall median {med[k]:7.2f} s  min {mins[k]:7.2f} s   CPU median {cpu[k]:7.2f} s")
    print(f"  nex capture / plain forward: {res['ratio_wall_median']:.2f}x wall (medians), {res['ratio_wall_min']:.2f}x (mins), "
          f"{res['ratio_cpu_median']:.2f}x CPU time")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2", help="model spec (default smollm2)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--reps", type=int, default=3, help="repeats (interleaved)")
    ap.add_argument("--json", help="also write the numbers to this file")
    e2e = ap.add_argument_group("end to end (default mode)")
    e2e.add_argument("--responses", type=int, default=12, help="synthetic responses, 200-1000 tokens (default 12)")
    e2e.add_argument("--seed", type=int, default=0, help="seed of the synthetic texts (default 0)")
    e2e.add_argument("--responses-file", help="time this responses JSONL instead of synthetic texts")
    e2e.add_argument("--plain-worker", action="store_true", help=argparse.SUPPRESS)
    e2e.add_argument("--model-dir", help=argparse.SUPPRESS)
    st = ap.add_argument_group("steady state (--steady, --qwen3-4b-config)")
    st.add_argument("--steady", action="store_true", help="in-process steady-state pass, peak memory, cache size")
    st.add_argument("--batch", type=int, default=1, help="sequences per forward pass (default 1)")
    st.add_argument("--prompt-tokens", type=int, default=64)
    st.add_argument("--response-tokens", type=int, default=960)
    st.add_argument("--rule", default=None, help="activation rule (default: the capture default)")
    st.add_argument("--qwen3-4b-config", action="store_true", help="random Qwen3-4B-config model, bf16, 8k-token responses (GPU)")
    st.add_argument("--qwen3-layers", type=int, default=36, help="with --qwen3-4b-config: fewer layers, for a CPU smoke test")
    args = ap.parse_args(argv)
    if args.plain_worker:
        return plain_worker(args)
    if not (args.steady or args.qwen3_4b_config):
        return end_to_end_processes(args)
    return steady_state(args)


def steady_state(args) -> int:
    import torch

    from nex_interp.capture.engine import CaptureConfig, _input_batch, capture_batch, write_cache, prepare_items
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
        from nex_interp.capture.engine import calibrate_rule

        rule = calibrate_rule(model, items, rule, tuple(range(model.n_layers)), config)
    layers = tuple(range(model.n_layers))

    from nex_interp.models.hf_pass import hf_pass

    def plain():
        # the HF model as HF runs it (the bridge's components unwrapped, SDPA attention), full logits
        with torch.inference_mode(), hf_pass(model, []):
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
        write_cache(model, rows, out, config, resume=False)
        return out

    fns = {"plain": plain, "capture": capture, "end_to_end": end_to_end}
    if not args.qwen3_4b_config and model.identity.get("path"):
        # context: the same weights as a plain HF model that no TransformerBridge wraps
        from transformers import AutoModelForCausalLM

        bare = AutoModelForCausalLM.from_pretrained(model.identity["path"], dtype=next(model.hf_model.parameters()).dtype).to(args.device).eval()

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
    print(f"  write_cache e2e  {t_e2e:8.3f} s  {res['tokens_per_s_end_to_end']:9.0f} tok/s   -> {res['ratio_end_to_end']:.2f}x time")
    print(f"  cache {cache_bytes * mb:.2f} MiB on disk (rows+base {sparse_bytes * mb:.2f} MiB, {res['entries_per_row']:.0f} entries/row) "
          f"vs dense run_with_cache {dense_bytes * mb:.1f} MiB -> {res['ratio_dense_to_cache']:.0f}x smaller")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
