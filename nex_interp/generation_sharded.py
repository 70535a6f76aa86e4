"""``nex generate --ray``: generation sharded by prompts over Ray workers.

The driver normalises the prompts (each gets its ``problem_id`` from the whole file, as one process
gives it) and cuts them into shards of ``shard_size`` prompts
(:func:`nex_interp.cache.sharded.shard_specs` names: first and last prompt index). Each worker, a Ray
actor that loads the model once, generates a shard with the one-process code
(:func:`nex_interp.generation.generate_to_file`) into ``.NAME.jsonl.partial`` and renames it to
``NAME.jsonl`` when complete, under ``OUTPUT.shards/``; it returns only the shard's row (range,
count, sha256). When every shard is there, the driver writes their rows, in prompt order, to the
output (temporary file, then rename) and removes ``OUTPUT.shards/``.

Same responses as one process: a problem's samples are drawn together with the RNG seeded from
``(seed, problem_id)`` (:mod:`nex_interp.generation`), whatever else its worker generates, so the
output is the one-process output line for line (on devices whose kernels give the same numbers;
tested on CPU). Faults: a worker killed mid-shard is restarted by Ray and the retried shard resumes
after its last finished problem; a finished shard is never rewritten; a rerun of an interrupted
driver skips finished shards. Ray is imported only here (the ``[distributed]`` extra).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, NexError
from .generation import GenerationConfig, _done_problems, normalise_prompts

#: default prompts per shard
DEFAULT_PROMPT_SHARD_SIZE = 16
SETTINGS_NAME = "settings.json"


@dataclass
class ShardedGenerationReport:
    """What a sharded generation did."""

    output: Path
    n_problems: int
    n_shards: int
    n_shards_done_before: int = 0
    n_responses: int = 0
    seconds: float = 0.0
    workers: int = 1
    already_complete: bool = False

    def summary(self) -> str:
        if self.already_complete:
            return f"{self.output} already holds the responses of all {self.n_problems} problems"
        again = f" ({self.n_shards_done_before} already done)" if self.n_shards_done_before else ""
        return (f"generated {self.n_responses} responses for {self.n_problems} problems into {self.output}: "
                f"{self.n_shards} shards{again}, {self.workers} Ray workers, {self.seconds:.1f} s")


def shards_dir(out: str | os.PathLike) -> Path:
    """Where the shards of output ``out`` are written while a sharded generation runs."""
    out = Path(out)
    return out.with_name(out.name + ".shards")


def _shard_file(root: Path, name: str) -> Path:
    return root / f"{Path(name).name}.jsonl"


class GenerateWorker:
    """One Ray worker: loads the model once (plain HF decoding), then generates shards."""

    def __init__(self, model: str, device: str, dtype: str, threads: int, die_once: tuple[str, int] | None = None) -> None:
        import torch

        from .models.loader import load_model

        torch.set_num_threads(max(1, threads))
        self.model = load_model(model, device=device, dtype=dtype, boot_bridge=False)
        self.die_once = die_once

    def generate(self, root: str, name: str, first: int, stop: int, rows: list[dict], config: GenerationConfig) -> dict:
        """Generate the normalised prompt rows ``rows`` (prompts ``[first, stop)``) as shard ``name``."""
        from .generation import generate_to_file
        from .provenance import sidecar_path

        final = _shard_file(Path(root), name)
        t0 = time.perf_counter()
        if not final.exists():
            partial = final.with_name(f".{final.name}.partial")
            self._maybe_die()
            generate_to_file(self.model, rows, partial, config, progress=False)  # resumes a retried shard
            os.replace(partial, final)
            sidecar_path(partial).unlink(missing_ok=True)
        return {"name": name, "first": first, "stop": stop, "sha256": _sha(final), "seconds": round(time.perf_counter() - t0, 3)}


    def _maybe_die(self) -> None:
        """Fault injection for the tests: the first worker to reach this (marker file absent) exits hard
        once ``n`` problems of its shard are written, as a killed process would."""
        if self.die_once is None:
            return
        marker, n = self.die_once
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        from . import generation

        original, count = generation.generate_problem, [0]

        def generate_then_die(*a, **k):
            if count[0] >= n:  # the n problems before this one are written and synced
                os._exit(1)
            count[0] += 1
            return original(*a, **k)

        generation.generate_problem = generate_then_die


def _sha(path: Path) -> str:
    from .hashing import sha256_file

    return sha256_file(path)


def _settings(model: str, device: str, dtype: str, config: GenerationConfig, shard_size: int, rows: list[dict]) -> dict:
    digest = hashlib.sha256("\n".join(json.dumps(r, sort_keys=True) for r in rows).encode()).hexdigest()
    return {"model": model, "device": device, "dtype": dtype, "generation": config.to_dict(), "shard_size": shard_size,
            "prompts_sha256": digest}


def _join_shards(root: Path, specs: list, out: Path) -> None:
    """The shards' rows, in prompt order, written to ``out`` (temporary file, then rename)."""
    from .atomic import atomic_path

    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            for s in specs:
                with open(_shard_file(root, s.name), "rb") as src:
                    shutil.copyfileobj(src, f)


def generate_sharded(model: str, prompts: list[dict], out: str | os.PathLike, config: GenerationConfig, options,
                     device: str | None = None, dtype: str = "float32", progress: bool = True,
                     _die_once: tuple[str, int] | None = None) -> ShardedGenerationReport:
    """Generate ``config.samples`` responses to every prompt with ``model`` (a spec for
    :func:`~nex_interp.models.loader.load_model`) on Ray workers into the JSONL ``out``.

    ``options``: a :class:`nex_interp.capture.distributed.RayOptions` (address, workers, GPUs per
    worker, ``shard_size`` in prompts). The output is what :func:`~nex_interp.generation.generate_to_file`
    writes in one process with the same ``config``. A rerun resumes; an output that already holds
    every problem is left as it is. ``_die_once`` is for the tests only: ``(marker file, n)`` makes one
    worker exit after writing n problems of its shard.
    """
    from tqdm.auto import tqdm

    from .atomic import write_text
    from .capture.distributed import init_ray, require_ray
    from .cache.sharded import shard_specs
    from .provenance import record, write_sidecar

    if options.workers < 1:
        raise ConfigError(f"--workers {options.workers}: give 1 or more workers")
    out = Path(out)
    rows = normalise_prompts(prompts)
    if not rows:
        raise ConfigError("there are no prompts to generate for: give a prompts file with at least one row")
    root = shards_dir(out)
    if out.exists() and not root.exists():
        if out.is_dir():
            raise ConfigError(f"output {out} is a directory: give a file name for -o")
        done = _done_problems(out, config.samples)
        if done >= {r["problem_id"] for r in rows}:
            return ShardedGenerationReport(out, len(rows), 0, already_complete=True)
        raise ConfigError(f"output {out} holds part of a generation made without --ray: finish it without --ray, "
                          "or choose a new output file")
    ray = require_ray()
    t0 = time.perf_counter()
    init_ray(ray, options)
    resources = ray.cluster_resources()
    gpus = options.gpus_per_worker
    if gpus is None:
        gpus = 1 if resources.get("GPU", 0) >= 1 else 0
    dev = device or ("cuda" if gpus else "cpu")
    settings = _settings(model, dev, dtype, config, options.shard_size, rows)
    if root.exists():
        try:
            old = json.loads((root / SETTINGS_NAME).read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if old != settings:
            raise ConfigError(f"{root} holds shards of a generation with other settings (model, sampling options, shard size "
                              f"or prompts): rerun with the same ones to resume, or remove {root}")
    root.mkdir(parents=True, exist_ok=True)
    write_text(root / SETTINGS_NAME, json.dumps(settings, indent=2, sort_keys=True) + "\n")
    specs = shard_specs(len(rows), options.shard_size)
    todo = [s for s in specs if not _shard_file(root, s.name).exists()]
    report = ShardedGenerationReport(out, len(rows), len(specs), n_shards_done_before=len(specs) - len(todo),
                                     workers=min(options.workers, max(len(todo), 1)))
    cpus = max(1, int(resources.get("CPU", 1)) // options.workers)
    if todo:
        from .capture.distributed import MAX_RETRIES

        actor = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES)(GenerateWorker)
        workers = [actor.remote(model, dev, dtype, cpus, _die_once) for _ in range(report.workers)]
        queue, pending = list(todo), {}
        bar = tqdm(total=len(specs), initial=report.n_shards_done_before, unit="shard", desc="generate (ray)", disable=not progress)

        def submit(w) -> None:
            s = queue.pop(0)
            pending[w.generate.remote(str(root), s.name, s.first, s.stop, rows[s.first:s.stop], config)] = w

        try:
            for w in workers:
                if queue:
                    submit(w)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                w = pending.pop(ready[0])
                try:
                    ray.get(ready[0])
                except ray.exceptions.RayError as e:
                    text = str(e).strip().splitlines()
                    raise NexError(f"a Ray worker failed {MAX_RETRIES + 1} times on one shard ({text[-1] if text else type(e).__name__}); "
                                   "rerun the same command to resume") from None
                bar.update(1)
                if queue:
                    submit(w)
        finally:
            bar.close()
            for w in workers:
                ray.kill(w)
    _join_shards(root, specs, out)
    report.n_responses = len(rows) * config.samples
    report.seconds = time.perf_counter() - t0
    write_sidecar(out, record("generate --ray", config={**config.to_dict(), "shard_size": options.shard_size},
                              model={"model": model, "device": dev, "dtype": dtype}, inputs={"n_prompts": len(rows)},
                              workers=options.workers, cpus_per_worker=cpus, gpus_per_worker=gpus, n_shards=len(specs)))
    shutil.rmtree(root)
    return report


__all__ = ["generate_sharded", "GenerateWorker", "ShardedGenerationReport", "shards_dir", "DEFAULT_PROMPT_SHARD_SIZE"]
