"""Benchmark: write a large synthetic cache with CacheWriter, then time open_cache on it.

    python benchmarks/cache_open.py OUT_DIR [--entries 100_000_000] [--responses 400] [--keep]

Prints the writer's throughput, the time open_cache takes (validation included; in a fresh
process, so nothing is in Python's caches) and the process's peak RSS before and after opening,
which shows the keys and mass arrays are mapped, not read. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def write(path: Path, entries: int, responses: int, seed: int) -> None:
    from nex_interp.cache.writer import CacheWriter
    from nex_interp.keys import KeyScheme

    rng = np.random.default_rng(seed)
    per_response = entries // responses
    row_entries = 400
    w = CacheWriter(path, KeyScheme.ref22(), {"model": "synthetic", "rule": "gt0", "row_tokens": 32, "n_layers": 30, "d_mlp": 1536})
    for i in range(responses):
        n = per_response + (entries - per_response * responses if i == responses - 1 else 0)
        keys = ((rng.integers(0, 30, n, dtype=np.uint32) << np.uint32(16)) | rng.integers(0, 1536, n, dtype=np.uint32)).astype(np.uint32)
        mass = rng.random(n, dtype=np.float32)
        cuts = list(range(0, n, row_entries)) + [n]
        rows = [(keys[a:b], mass[a:b], 32) for a, b in zip(cuts[:-1], cuts[1:])]
        base = np.unique(keys)
        w.add_response(rows, base, np.ones(len(base), np.float32), {"id": f"r{i}"})
    w.close()


_OPEN = """
import json, resource, sys, time
from nex_interp.cache.reader import open_cache
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
c = open_cache(sys.argv[1])
dt = time.perf_counter() - t
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"open_s": dt, "entries": c.n_entries, "rows": c.n_rows, "responses": c.n_responses,
                  "rss_before_mib": before / 1024, "rss_after_mib": after / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--entries", type=int, default=100_000_000)
    ap.add_argument("--responses", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the cache afterwards")
    args = ap.parse_args()
    cache = args.out / "bench_cache"
    if cache.exists():
        shutil.rmtree(cache)
    t = time.perf_counter()
    write(cache, args.entries, args.responses, args.seed)
    wt = time.perf_counter() - t
    size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    print(f"wrote {args.entries:,} entries in {args.responses} responses ({size / 2**20:,.0f} MiB) in {wt:.1f} s "
          f"({size / 2**20 / wt:,.0f} MiB/s, incl. random data generation, fsync and sha256)")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = json.loads(subprocess.run([sys.executable, "-c", _OPEN, str(cache)], capture_output=True, text=True, check=True, env=env).stdout)
    print(f"open_cache: {res['open_s'] * 1000:.1f} ms for {res['entries']:,} entries / {res['rows']:,} rows / "
          f"{res['responses']} responses; peak RSS {res['rss_before_mib']:.0f} -> {res['rss_after_mib']:.0f} MiB "
          f"(cache on disk {size / 2**20:,.0f} MiB)")
    if not args.keep:
        shutil.rmtree(cache)


if __name__ == "__main__":
    main()
