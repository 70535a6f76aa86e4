#!/usr/bin/env python3
"""Speed and memory of the NEX core on the issue's 400-response cache, from one run.

Builds the cache with the project's own generator (``nex cache synth OUT --responses 400 --rows-lo 80
--rows-hi 250 --seed 7``, about 20M entries) unless ``--cache DIR`` holds one, then times, each in a
fresh process:

1. the I/O floor: a process that reads every cache array once;
2. ``nex run`` end to end (``python -m nex_interp run CACHE -o OUT`` when that command exists,
   otherwise a script doing the same through the core API on memory-mapped arrays), with the compiled
   kernels (as installed) and, for comparison, on the plain library path (``NEX_KERNEL=plain``);
3. the straightforward per-row loop (``tests/oracle_nex.py``) on the first responses, extrapolated
   to the whole cache by entry count.

Wall and CPU (user + sys) times include interpreter start-up and imports; each process is run
``--repeat`` times, interleaved with the others, and the least disturbed (minimum) time is kept,
since the machine is shared. Peak RSS is each child's own maxrss (``os.wait4``; with
``NEX_WORKERS=2`` the largest of the two processes). Prints the ratios of ``nex run`` and of the
core API to the floor (wall and CPU) and peak RSS against the cache's size on disk; ``--json FILE``
also writes them.

    .venv/bin/python benchmarks/core_speed.py [--cache DIR] [--seed N] [--oracle-responses N] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARRAYS = ["rows/sample_row_ptr.int64", "rows/row_ptr.int64", "rows/token_row_ptr.int64", "rows/keys.uint32",
          "rows/w_sum.float16", "base/row_ptr.int64", "base/keys.uint32", "base/w_sum.float16"]

FLOOR = """
import sys, numpy as np
total = 0
for name in {arrays!r}:
    a = np.fromfile(sys.argv[1] + '/' + name, dtype=np.uint8)
    total += a.size
print(total)
"""

API_RUN = """
import json, sys, time
import numpy as np
t0 = time.perf_counter()
from nex_interp.cache.arrays import CacheArrays
from nex_interp.core import NexParams, learn_weights, nex_score, score_responses
d = sys.argv[1]
mm = lambda n, t: np.memmap(d + '/' + n, dtype=t, mode='r')
c = CacheArrays(mm('rows/sample_row_ptr.int64', np.int64), mm('rows/row_ptr.int64', np.int64),
                mm('rows/token_row_ptr.int64', np.int64), mm('rows/keys.uint32', np.uint32),
                mm('rows/w_sum.float16', np.float16), mm('base/row_ptr.int64', np.int64),
                mm('base/keys.uint32', np.uint32), mm('base/w_sum.float16', np.float16))
t1 = time.perf_counter()
w = learn_weights(c, NexParams())
t2 = time.perf_counter()
g = score_responses(c, w)
t3 = time.perf_counter()
np.savez(sys.argv[2] + '/weights.npz', index=w.index, weight=w.weight)
np.savetxt(sys.argv[2] + '/scores.csv', g, delimiter=',')
print(json.dumps({{'import_open_s': t1 - t0, 'learn_s': t2 - t1, 'score_s': t3 - t2, 'n_weights': len(w),
                  'nex_score': nex_score(g), 'kernel': w.meta.get('kernel', 'plain')}}))
"""

ORACLE = """
import json, sys, time
sys.path.insert(0, {tests!r})
import numpy as np
from synth_cache import read_reference_layout
import oracle_nex
c = read_reference_layout(sys.argv[1], mmap=True)
k = int(sys.argv[2])
oracle_nex.library_labels(np.array([0.0, 1.0, 2.0, 5.0]), 0.95)  # import the libraries before timing
t0 = time.perf_counter()
w = oracle_nex.learn(c, responses=range(k))
t1 = time.perf_counter()
# score the same responses (GMF over their base vectors) with the per-row loop
sub = type(c)(c.sample_row_ptr[:k + 1], c.row_ptr, c.token_row_ptr, c.keys, c.mass, c.base_ptr[:k + 1],
              c.base_keys, c.base_mass, c.scheme)
oracle_nex.gmf(sub, w)
t2 = time.perf_counter()
print(json.dumps({{'learn_s': t1 - t0, 'score_s': t2 - t1, 'entries': int(c.row_ptr[c.sample_row_ptr[k]]),
                  'base_entries': int(c.base_ptr[k])}}))
"""


def run_child(argv: list[str], env: dict | None = None) -> tuple[float, float, str, float]:
    """(wall seconds, peak RSS MiB, stdout, CPU seconds) of one fresh child process."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read() if proc.stderr else ""
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"child {argv[:3]} failed with status {proc.returncode}:\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0, text, usage.ru_utime + usage.ru_stime


def drop_page_cache() -> None:
    """Empty the kernel's page cache so the next process reads the cache from disk (``--cold``; needs root)."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
    except OSError as e:
        raise SystemExit(f"--cold needs write access to /proc/sys/vm/drop_caches ({e.strerror}): run as root or drop --cold")


def cli_has_run() -> bool:
    r = subprocess.run([sys.executable, "-m", "nex_interp", "run", "--help"], capture_output=True, text=True, cwd=REPO)
    return r.returncode == 0


def warm_bytecode(env: dict) -> None:
    """Write the package's .pyc files once (a normal install has them; PYTHONDONTWRITEBYTECODE would make
    every timed process compile the sources again)."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "nex_interp")], env=env, check=False,
                   stdout=subprocess.DEVNULL)


def best(samples: list[tuple[float, float, str, float]]) -> tuple[float, float, float]:
    """(wall, CPU, peak RSS) of the repeats: the least disturbed (minimum) wall and CPU, the largest RSS."""
    return min(s[0] for s in samples), min(s[3] for s in samples), max(s[1] for s in samples)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, help="use (or build, if missing) the cache here instead of a temp dir")
    p.add_argument("--responses", type=int, default=400, help="synthetic cache: responses (default 400)")
    p.add_argument("--rows-lo", type=int, default=80, help="synthetic cache: fewest rows per response (default 80)")
    p.add_argument("--rows-hi", type=int, default=250, help="synthetic cache: most rows per response (default 250)")
    p.add_argument("--seed", type=int, default=7, help="synthetic cache: seed (default 7)")
    p.add_argument("--oracle-responses", type=int, default=6, help="responses the per-row loop runs on (0: skip it)")
    p.add_argument("--repeat", type=int, default=7, help="time each process this many times, interleaved (default 7)")
    p.add_argument("--api", action="store_true", help="time only the core API script, not `nex run`")
    p.add_argument("--no-plain-path", action="store_true",
                   help="skip timing `nex run` on the plain library path (NEX_KERNEL=plain; slow) for comparison")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--cold", action="store_true",
                   help="drop the page cache before every timed process, so each one reads the cache from disk")
    a = p.parse_args()

    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    tmp = tempfile.TemporaryDirectory(prefix="nex_core_speed_")
    cache = a.cache or Path(tmp.name) / "cache"
    if not (cache / "rows" / "keys.uint32").exists():
        print(f"building the cache in {cache} ...", flush=True)
        built = subprocess.run([sys.executable, "-m", "nex_interp", "cache", "synth", str(cache), "--responses",
                                str(a.responses), "--rows-lo", str(a.rows_lo), "--rows-hi", str(a.rows_hi), "--seed",
                                str(a.seed)], env=env, cwd=REPO)
        if built.returncode != 0:
            raise SystemExit(f"building the synthetic cache in {cache} failed (see the message above)")
    disk = sum((cache / n).stat().st_size for n in ARRAYS)
    mib = disk / 2**20
    py = sys.executable
    warm_bytecode(env)
    use_cli = not a.api and cli_has_run()
    how = ("python -m nex_interp run CACHE -o OUT" if use_cli else
           "core API script (--api)" if a.api else "core API script (no `nex run` command in this checkout)")

    # warm (or, with --cold, empty) the page cache so that every timed process sees the same state
    run_child([py, "-c", FLOOR.format(arrays=ARRAYS), str(cache)], env)
    prepare = drop_page_cache if a.cold else (lambda: None)
    floor, api, run, run_np = [], [], [], []
    np_env = dict(env, NEX_KERNEL="plain")
    detail = {}
    for r in range(max(1, a.repeat)):  # interleaved, so that a burst of load on the machine hits all three
        prepare()
        floor.append(run_child([py, "-c", FLOOR.format(arrays=ARRAYS), str(cache)], env))
        api_dir = Path(tmp.name) / f"api_out{r}"
        api_dir.mkdir(parents=True, exist_ok=True)
        prepare()
        api.append(run_child([py, "-c", API_RUN.format(), str(cache), str(api_dir)], env))
        detail = json.loads(api[-1][2].strip().splitlines()[-1])
        if use_cli:
            prepare()
            run.append(run_child([py, "-m", "nex_interp", "run", str(cache), "-o", str(Path(tmp.name) / f"run_out{r}")], env))
            if not a.no_plain_path:
                prepare()
                run_np.append(run_child([py, "-m", "nex_interp", "run", str(cache), "-o",
                                         str(Path(tmp.name) / f"run_np_out{r}")], np_env))
    if not use_cli:
        run = api
    floor_s, floor_cpu, floor_rss = best(floor)
    api_s, api_cpu, api_rss = best(api)
    run_s, run_cpu, run_rss = best(run)
    run_np_s = best(run_np)[0] if run_np else float("nan")

    k = a.oracle_responses
    loop_s = float("nan")
    if k > 0:
        _, _, text, _ = run_child([py, "-c", ORACLE.format(tests=str(REPO / "tests")), str(cache), str(k)], env)
        o = json.loads(text.strip().splitlines()[-1])
        import numpy as np

        n_base = int(np.memmap(cache / "base/row_ptr.int64", dtype=np.int64, mode="r")[-1])
        n_ent = int(np.memmap(cache / "rows/row_ptr.int64", dtype=np.int64, mode="r")[-1])
        loop_s = o["learn_s"] * n_ent / o["entries"] + o["score_s"] * n_base / o["base_entries"]
    import numpy as np

    n_entries = int(np.memmap(cache / "rows/row_ptr.int64", dtype=np.int64, mode="r")[-1])
    fig = {
        "cache_entries": n_entries,
        "cache_mib_on_disk": mib,
        "repeats": len(floor),
        "io_floor_s": floor_s,
        "io_floor_cpu_s": floor_cpu,
        "floor_peak_rss_mib": floor_rss,
        "run_measured_as": how,
        "run_s": run_s,
        "run_cpu_s": run_cpu,
        "run_peak_rss_mib": run_rss,
        "run_over_floor": run_s / floor_s,
        "run_over_floor_cpu": run_cpu / floor_cpu,
        "run_rss_over_cache_size": run_rss / mib,
        "api_s": api_s,
        "api_cpu_s": api_cpu,
        "api_peak_rss_mib": api_rss,
        "api_over_floor": api_s / floor_s,
        "api_over_floor_cpu": api_cpu / floor_cpu,
        "api_rss_over_cache_size": api_rss / mib,
        "api_detail": detail,
        "per_row_loop_extrapolated_s": loop_s,
        "per_row_loop_responses": k,
        "loop_over_run": loop_s / run_s,
        "samples": {"floor": [(s[0], s[3]) for s in floor], "api": [(s[0], s[3]) for s in api],
                    "run": [(s[0], s[3]) for s in run]},
        "nex_workers": env.get("NEX_WORKERS", "auto"),
        "kernel": detail.get("kernel"),
        "run_plain_path_s": run_np_s,
        "run_plain_path_over_floor": run_np_s / floor_s,
        "page_cache": "cold (dropped before each process)" if a.cold else "warm",
    }
    print(f"cache: {n_entries / 1e6:.1f}M entries, {mib:.0f} MiB on disk ({cache}); page cache {fig['page_cache']}; "
          f"best of {len(floor)} interleaved runs "
          "(wall and CPU = user + sys of the fresh process, start-up and imports included)")
    print(f"I/O floor (fresh process reads every array once): {floor_s:.2f} s wall, {floor_cpu:.2f} s CPU, "
          f"peak RSS {floor_rss:.0f} MiB")
    print(f"core API (learn_weights + score_responses, memmapped arrays): {api_s:.2f} s wall, {api_cpu:.2f} s CPU, "
          f"peak RSS {api_rss:.0f} MiB; in-process: learn {detail['learn_s']:.2f} s, score {detail['score_s']:.2f} s")
    print(f"nex run [{how}]: {run_s:.2f} s wall, {run_cpu:.2f} s CPU, peak RSS {run_rss:.0f} MiB "
          f"(core inner loops: {detail.get('kernel')}, NEX_WORKERS={fig['nex_workers']})")
    if run_np:
        print(f"nex run on the plain library path (NEX_KERNEL=plain, for comparison): {run_np_s:.2f} s wall = "
              f"{run_np_s / floor_s:.2f}x the floor")
    if k > 0:
        print(f"per-row loop (oracle, {k} responses, extrapolated): {loop_s:.1f} s; loop / nex run = {loop_s / run_s:.1f}, "
              f"loop / core API = {loop_s / api_s:.1f}")
    print(f"ratios to the I/O floor: nex run = {run_s / floor_s:.2f} wall, {run_cpu / floor_cpu:.2f} CPU (target <= 2); "
          f"core API = {api_s / floor_s:.2f} wall, {api_cpu / floor_cpu:.2f} CPU")
    print(f"peak RSS / cache size on disk: nex run {run_rss / mib:.2f}, core API {api_rss / mib:.2f}, "
          f"floor {floor_rss / mib:.2f} (target < 2)")
    if a.json:
        a.json.write_text(json.dumps(fig, indent=2) + "\n")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
