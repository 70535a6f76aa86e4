"""Capture on a Ray cluster: shards of responses, each written by one worker as a complete cache.

``nex capture --ray [ADDRESS] --workers N`` (``docs/distributed.md``). The driver cuts the input
responses into shards (:func:`nex_interp.cache.sharded.shard_specs`); each worker (a Ray actor that
loads the model once, with torch threads = its CPUs) captures a shard with the one-process engine
(:func:`.engine.write_cache`) into ``shards/.NAME.partial`` and renames it to ``shards/NAME`` when
complete. Workers return only the shard's manifest row; no activation passes through Ray's object
store. The driver records the rows in ``shards.json`` as shards finish.

Faults: Ray restarts a killed worker and retries its shard (``max_restarts``/``max_task_retries``); the
retry resumes the partial shard from its last committed response (the cache writer commits response
by response), so nothing is lost or written twice. A finished shard is never rewritten: a rerun of an
interrupted driver skips finished shards and resumes partial ones. Since a response's cache bytes do
not depend on which responses share its batch (``tests/test_capture.py``), the shards hold the same
per-response bytes as a one-process capture.

A quantile rule is calibrated once, on one worker, on the first responses of the whole input (as the
one-process capture calibrates it), recorded in ``shards.json`` (a rerun reuses it) and passed to every
shard, so the shards use the one-process thresholds.

Ray is imported only here, and only when a capture asks for it (the ``[distributed]`` extra).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError, NexError
from ..cache.sharded import SHARDS_NAME, ShardSpec, read_shards_manifest, shard_row, shard_specs, write_shards_manifest
from .engine import CaptureConfig
from .rules import parse_rule

#: default responses per shard: small enough to spread and retry cheaply, big enough to batch
DEFAULT_SHARD_SIZE = 64
#: how often Ray restarts a dead worker and retries its shard
MAX_RETRIES = 3


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run: ``address`` None starts a local cluster sized to the machine,
    ``"auto"`` or ``host:port``/``ray://...`` joins an existing one (the ``RAY_ADDRESS`` convention).
    ``gpus_per_worker`` None: 1 where CUDA exists, else 0. ``num_cpus`` caps a local cluster."""

    address: str | None = None
    workers: int = 1
    gpus_per_worker: float | None = None
    shard_size: int = DEFAULT_SHARD_SIZE
    num_cpus: int | None = None


@dataclass
class ShardedReport:
    """What a sharded capture did."""

    output: Path
    n_input: int
    n_shards: int
    n_shards_done_before: int = 0
    n_responses: int = 0
    seconds: float = 0.0
    workers: int = 1
    cpus_per_worker: int = 1
    rows: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        again = f" ({self.n_shards_done_before} already done)" if self.n_shards_done_before else ""
        return (f"captured {self.n_responses} responses into sharded cache {self.output}: {self.n_shards} shards{again}, "
                f"{self.workers} Ray workers x {self.cpus_per_worker} CPUs, {self.seconds:.1f} s")


def require_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'nex-interp[distributed]' (or pip install 'ray>=2.60')") from None
    return ray


def _settings(model: str, device: str | None, dtype: str | None, config: CaptureConfig, shard_size: int,
              responses: list[dict]) -> dict:
    """What must be the same for a rerun to continue a sharded capture."""
    digest = hashlib.sha256("\n".join(json.dumps(r, sort_keys=True) for r in responses).encode()).hexdigest()
    cfg = {k: v for k, v in config.to_dict().items() if k not in ("progress", "batch_size")}
    return {"model": model, "dtype": dtype, "device": device, "capture": cfg, "shard_size": shard_size,
            "responses_sha256": digest}


def _check_output(out: Path, settings: dict) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} is a file: choose a directory for the sharded cache")
    if out.is_dir() and any(out.iterdir()):
        if not (out / SHARDS_NAME).is_file():
            raise ConfigError(f"output {out} exists and is not a sharded cache: choose a new directory")
        old = read_shards_manifest(out).get("settings")
        if old != settings:
            raise ConfigError(f"sharded cache {out} was started with other settings (model, capture options, shard size or "
                              "responses): rerun with the same ones to resume, or choose a new directory")


def _finished(out: Path, spec: ShardSpec) -> bool:
    return (out / spec.name / "manifest.json").is_file()


def _partial(out: Path, spec: ShardSpec) -> Path:
    final = out / spec.name
    return final.parent / f".{final.name}.partial"


class ShardWorker:
    """One Ray worker: loads the model once, then captures shards (a Ray actor; see :func:`capture_sharded`)."""

    def __init__(self, model: str, device: str | None, dtype: str | None, threads: int,
                 die_once: tuple[str, int] | None = None) -> None:
        import torch

        from ..models.loader import load_model

        torch.set_num_threads(max(1, threads))
        kw = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        self.model = load_model(model, **kw)
        self.die_once = die_once

    def calibrate(self, responses: list[dict], config: CaptureConfig, complete: bool) -> dict | None:
        """The quantile rule of ``config`` calibrated as the one-process capture calibrates it (on the
        first ``calib_responses`` non-empty responses that fit the model), as a dict; None when
        ``responses``, a prefix of the input (``complete``: all of it), holds too few of them."""
        from .engine import calibrate_rule, prepare_items

        rule = parse_rule(config.rule, config.calib_responses)
        items, _ = prepare_items(self.model, responses, config)
        if not complete and sum(1 for it in items if it.n_response) < rule.calib_responses:
            return None
        layers = config.layers if config.layers is not None else tuple(range(self.model.n_layers))
        return calibrate_rule(self.model, items, rule, layers, config).to_dict()

    def capture(self, out: str, spec: ShardSpec, responses: list[dict], config: CaptureConfig,
                calibrated: dict | None = None) -> dict:
        """Capture ``responses`` (input ``[spec.first, spec.stop)``) as shard ``spec``; its manifest row.
        ``calibrated``: the quantile rule calibrated once for all shards (:meth:`calibrate`)."""
        from .engine import write_cache
        from .rules import ActivationRule

        out_path = Path(out)
        final = out_path / spec.name
        t0 = time.perf_counter()
        if not _finished(out_path, spec):
            partial = _partial(out_path, spec)
            partial.parent.mkdir(parents=True, exist_ok=True)
            self._maybe_die()
            rule = ActivationRule.from_dict(calibrated) if calibrated is not None else None
            write_cache(self.model, responses, partial, config, resume=True, calibrated=rule)
            os.replace(partial, final)
        return {**shard_row(out_path, spec), "seconds": round(time.perf_counter() - t0, 3)}

    def _maybe_die(self) -> None:
        """Fault injection for the tests: the first worker to reach this (marker file absent) exits hard
        after committing ``n`` responses, as a killed process would."""
        if self.die_once is None:
            return
        marker, n = self.die_once
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        from ..cache import writer as writer_mod

        original = writer_mod.CacheWriter.add_response
        count = [0]

        def add_then_die(self_, *a, **k):
            original(self_, *a, **k)
            count[0] += 1
            if count[0] >= n:
                os._exit(1)

        writer_mod.CacheWriter.add_response = add_then_die


def init_ray(ray, options: RayOptions) -> None:
    """Start (``options.address`` None) or join the Ray cluster, unless this process already did."""
    if ray.is_initialized():
        return
    address = options.address  # None: a local cluster (or $RAY_ADDRESS, Ray's own convention); "auto"; an address
    kwargs: dict = {"log_to_driver": False}
    if address is None:
        kwargs["include_dashboard"] = False
        if options.num_cpus is not None:
            kwargs["num_cpus"] = options.num_cpus
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise NexError(f"could not start or join {where} ({str(e).splitlines()[0] if str(e) else type(e).__name__}): "
                       "check the address (ray start --head prints it) or run without an address") from None


def capture_sharded(model: str, responses: list[dict], out: str | os.PathLike, config: CaptureConfig | None = None,
                    options: RayOptions = RayOptions(), device: str | None = None, dtype: str | None = None,
                    _die_once: tuple[str, int] | None = None) -> ShardedReport:
    """Capture ``responses`` with the model ``model`` (a path or name for
    :func:`~nex_interp.models.loader.load_model`) on a Ray cluster into the sharded cache ``out``.

    The result holds, response for response, the same bytes as :func:`.engine.write_cache` with the same
    ``config``; ``open_cache(out)`` reads it as one cache. Rerunning continues an interrupted capture.
    ``_die_once`` is for the tests only: ``(marker file, n)`` makes one worker exit after n responses.
    """
    from tqdm.auto import tqdm

    from ..provenance import record, write_sidecar

    config = config or CaptureConfig()
    if options.workers < 1:
        raise ConfigError(f"--workers {options.workers}: give 1 or more workers")
    rule = parse_rule(config.rule, config.calib_responses)
    if config.max_responses is not None:
        responses = responses[: config.max_responses]
    if not responses:
        raise ConfigError("there are no responses to capture: give a responses file with at least one row")
    out = Path(out)
    settings = _settings(model, device, dtype, config, options.shard_size, responses)
    _check_output(out, settings)
    specs = shard_specs(len(responses), options.shard_size)
    ray = require_ray()
    t0 = time.perf_counter()
    init_ray(ray, options)
    gpus = options.gpus_per_worker
    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // options.workers)
    out.mkdir(parents=True, exist_ok=True)
    rows = [shard_row(out, s) for s in specs if _finished(out, s)]
    report = ShardedReport(out, len(responses), len(specs), n_shards_done_before=len(rows), workers=options.workers,
                           cpus_per_worker=cpus)
    calibrated = _recorded_rule(out, rule) if rule.needs_calibration else None
    fields = {"settings": settings, **({"rule": calibrated} if calibrated else {})}
    write_shards_manifest(out, rows, len(responses), fields)
    todo = [s for s in specs if not _finished(out, s)]
    if todo:
        actor = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES)(ShardWorker)
        dev = device or ("cuda" if gpus else "cpu")
        n_workers = min(options.workers, len(todo))
        workers = [actor.remote(model, dev, dtype, cpus, _die_once) for _ in range(n_workers)]
        shard_config = CaptureConfig(**{**asdict(config), "max_responses": None, "progress": False})
        if rule.needs_calibration and calibrated is None:
            try:
                calibrated = _calibrate(ray, workers[0], responses, shard_config, rule)
            except BaseException:
                for w in workers:
                    ray.kill(w)
                raise
            fields["rule"] = calibrated
            write_shards_manifest(out, rows, len(responses), fields)
        pending = {}
        queue = list(todo)
        bar = tqdm(total=len(specs), initial=len(rows), unit="shard", desc="capture (ray)", disable=not config.progress)
        try:
            for w in workers:
                if queue:
                    s = queue.pop(0)
                    pending[w.capture.remote(str(out), s, responses[s.first:s.stop], shard_config, calibrated)] = w
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                w = pending.pop(ready[0])
                try:
                    rows.append(ray.get(ready[0]))
                except ray.exceptions.RayError as e:
                    raise NexError(f"a Ray worker failed {MAX_RETRIES + 1} times on one shard ({_first_line(e)}); "
                                   "rerun the same command to resume") from None
                write_shards_manifest(out, rows, len(responses), fields)
                bar.update(1)
                if queue:
                    s = queue.pop(0)
                    pending[w.capture.remote(str(out), s, responses[s.first:s.stop], shard_config, calibrated)] = w
        finally:
            bar.close()
            for w in workers:
                ray.kill(w)
    write_shards_manifest(out, rows, len(responses), fields)
    report.rows = sorted(rows, key=lambda r: r["first"])
    report.n_responses = sum(r["n_responses"] for r in rows)
    report.seconds = time.perf_counter() - t0
    write_sidecar(out, record("capture --ray", config={**config.to_dict(), "shard_size": options.shard_size}, model={"model": model},
                              inputs={"n_responses": len(responses)}, workers=options.workers, cpus_per_worker=cpus,
                              gpus_per_worker=gpus, n_shards=len(specs)))
    return report


def _recorded_rule(out: Path, rule) -> dict | None:
    """The quantile rule calibrated when the sharded capture ``out`` was started (a rerun reuses it)."""
    from .rules import ActivationRule

    if not (out / SHARDS_NAME).is_file():
        return None
    old = read_shards_manifest(out).get("rule")
    if isinstance(old, dict) and old.get("thresholds") is not None:
        prev = ActivationRule.from_dict(old)
        if (prev.kind, prev.value, prev.sign, prev.calib_responses) == (rule.kind, rule.value, rule.sign, rule.calib_responses):
            return old
    return None


def _calibrate(ray, worker, responses: list[dict], config: CaptureConfig, rule) -> dict:
    """Calibrate the quantile rule once, on one worker, on the first responses (only a prefix of the
    input travels: doubled until it holds ``calib_responses`` usable responses)."""
    n = 2 * rule.calib_responses
    while True:
        try:
            result = ray.get(worker.calibrate.remote(responses[:n], config, n >= len(responses)))
        except ray.exceptions.RayError as e:
            raise NexError(f"calibrating rule {rule.spec} on a Ray worker failed ({_first_line(e)})") from None
        if result is not None:
            return result
        n *= 4


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[-1] if text else type(e).__name__


__all__ = ["RayOptions", "ShardedReport", "ShardWorker", "capture_sharded", "require_ray", "init_ray", "DEFAULT_SHARD_SIZE"]
