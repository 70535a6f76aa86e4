"""Peak memory of ``nex merge`` against the checkpoint size: it streams tensor by tensor.

Writes two random safetensors checkpoints (``--tensors`` tensors of ``--mb`` MiB each, float32,
with a tiny Qwen3 config.json so they pass the architecture check), merges them with SLERP in a
fresh process and prints that process's peak anonymous RSS (``RssAnon``, polled every 2 ms; the memory-mapped
input files are page cache, not the process's own memory) above its start-up value, next to the checkpoint
size and the largest tensor. Streaming means the increase stays near a few tensors, not the model.

    python benchmarks/merge_memory.py --tensors 24 --mb 16
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import sys, threading, time, torch
torch.set_num_threads(1)
from nex_interp.merge import merge_models

def anon_kb():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

peak, done = [0], [False]
def poll():
    while not done[0]:
        peak[0] = max(peak[0], anon_kb())
        time.sleep(0.002)

base = anon_kb()
th = threading.Thread(target=poll); th.start()
t0 = time.perf_counter()
merge_models(sys.argv[1], sys.argv[2], "slerp", 0.5, sys.argv[3])
dt = time.perf_counter() - t0
done[0] = True; th.join()
print(base, peak[0], dt)
"""


def make_checkpoint(path: Path, tensors: int, mb: int, seed: int) -> None:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    n = mb * 2**20 // 4
    state = {f"model.layers.{i}.mlp.up_proj.weight": torch.randn(n // 1024, 1024, generator=g) for i in range(tensors)}
    path.mkdir(parents=True)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps({"model_type": "qwen3", "hidden_size": 1024, "num_hidden_layers": tensors}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tensors", type=int, default=24)
    ap.add_argument("--mb", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_checkpoint(tmp / "a", args.tensors, args.mb, 0)
        make_checkpoint(tmp / "b", args.tensors, args.mb, 1)
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, str(tmp / "a"), str(tmp / "b"), str(tmp / "m")], capture_output=True, text=True, check=True)
        base_kb, peak_kb, dt = out.stdout.split()
        size = args.tensors * args.mb
        extra = (int(peak_kb) - int(base_kb)) / 1024
        print(f"checkpoint: {args.tensors} tensors x {args.mb} MiB = {size} MiB per input")
        print(f"merge peak anonymous RSS above start-up: {extra:.0f} MiB = {extra / args.mb:.1f} tensors = {extra / size:.2f} x one checkpoint")
        print(f"merge time: {float(dt):.1f} s ({2 * size / float(dt):.0f} MiB/s read); wall with start-up {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
