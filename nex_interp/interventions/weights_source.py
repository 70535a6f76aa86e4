"""Where an experiment's NEX weights come from: a weights file, a cache, or a fresh capture.

* ``weights.file``: read with :func:`nex_interp.weights_io.load_weights`.
* ``weights.cache``: learn weights on that sparse activation cache (:func:`nex_interp.core.learn_weights`).
* ``weights.model`` alone: sample ``samples`` responses per problem from that model on
  ``problems`` unlabeled task problems (:func:`nex_interp.generation.generate_responses`), capture
  them (:func:`nex_interp.capture.engine.write_cache`) into ``OUT/weights/cache`` and learn
  weights, saved as ``OUT/weights/weights.npz``. Each stage's output is reused when the
  experiment resumes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from nex_interp.atomic import atomic_path
from nex_interp.errors import ConfigError
from nex_interp.neuron_weights import NeuronWeights

from nex_interp.core.params import NexParams

from .config import TransferConfig
from .preflight import model_spec
from .tasks import get_task

#: prefix of the calibration problems' ids (they are drawn with ``weights.seed``, unlabeled)
WEIGHTS_PREFIX = "w"
#: where a capture records what it learned from (read back when the experiment resumes)
SOURCE = "source.json"


def learn_from_cache(cache: Path, params: NexParams | None = None) -> NeuronWeights:
    """NEX weights learned on the cache at ``cache`` with ``params`` (the reference parameters by default)."""
    from nex_interp.cache.reader import open_cache
    from nex_interp.core import learn_weights

    return learn_weights(open_cache(cache), params or NexParams())


def capture_and_learn(cfg: TransferConfig, wdir: Path, loader: Callable[..., Any], show_progress: bool = True) -> tuple[NeuronWeights, dict]:
    """Sample, capture and learn on ``weights.model`` (see the module docstring); resumable."""
    from nex_interp.capture.engine import CaptureConfig, write_cache
    from nex_interp.generation import generate_responses
    from nex_interp.weights_io import save_weights

    w = cfg.weights
    model = loader(model_spec(cfg, w.model or ""), device=cfg.models.device, dtype=cfg.models.dtype)
    task = get_task(cfg.evaluation.task, cfg.evaluation.task_options)
    wdir.mkdir(parents=True, exist_ok=True)
    responses_path = wdir / "responses.jsonl"
    if responses_path.is_file():
        responses = [json.loads(line) for line in responses_path.read_text().splitlines() if line.strip()]
    else:
        problems = task.problems(w.problems, w.seed)
        prompts = [{"id": f"{WEIGHTS_PREFIX}{p.id}", "prompt": p.prompt} for p in problems]  # no answers: label-free
        responses = generate_responses(model, prompts, samples=w.samples, temperature=w.temperature,
                                       max_new_tokens=w.max_new_tokens, seed=w.seed, progress=show_progress,
                                       batch_problems=w.batch_problems)
        with atomic_path(responses_path) as tmp:
            tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in responses))
    cache = wdir / "cache"
    write_cache(model, responses, cache, CaptureConfig(row_tokens=w.row_tokens, rule=w.rule, progress=show_progress), resume=True)
    weights = learn_from_cache(cache, w.nex_params())
    save_weights(weights, wdir / "weights.npz")
    info = {"source": "capture", "model": w.model, "model_identity": model.identity, "path": str(wdir / "weights.npz"),
            "cache": str(cache), "n_responses": len(responses), "n_weighted": len(weights),
            "n_effective": int((weights.weight > 0).sum()), "n_redundant": int((weights.weight < 0).sum())}
    with atomic_path(wdir / SOURCE) as tmp:
        tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return weights, info


def obtain_weights(cfg: TransferConfig, out: Path, loader: Callable[..., Any], show_progress: bool = True) -> tuple[NeuronWeights, dict]:
    """The experiment's weights and a JSON-able note of where they came from."""
    from nex_interp.weights_io import load_weights

    w = cfg.weights
    if w.file:
        path = cfg.path(w.file)
        weights = load_weights(path)
        return weights, {"source": "file", "path": str(path), "n_weighted": len(weights)}
    if w.cache:
        path = cfg.path(w.cache)
        if not path.is_dir():
            raise ConfigError(f"config field weights.cache: {path} is not a cache directory")
        weights = learn_from_cache(path, w.nex_params())
        return weights, {"source": "cache", "path": str(path), "model": w.model, "n_weighted": len(weights)}
    wdir = out / "weights"
    if (wdir / "weights.npz").is_file() and (wdir / SOURCE).is_file():
        weights = load_weights(wdir / "weights.npz")
        return weights, {**json.loads((wdir / SOURCE).read_text()), "reused": True}
    return capture_and_learn(cfg, wdir, loader, show_progress)
