"""Run one transfer experiment from a :class:`~nex_interp.interventions.config.TransferConfig`.

Steps: check the config (no model loaded) -> load recipient (and donor) -> get NEX weights ->
build the neuron sets for every k and condition -> evaluate the untouched recipient (and donor)
-> evaluate each (condition, k, seed) unit under the operation -> write ``results.csv``,
``dose_response.png`` and ``summary.json`` (plus ``provenance.json``) into the output directory.

Every finished unit is appended to ``OUT/progress.jsonl`` (per-problem correctness and the
responses); re-running the same command skips finished units, so an interrupted run resumes. A
directory holding another config's progress is refused rather than mixed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from nex_interp import __version__
from nex_interp.atomic import write_text
from nex_interp.errors import ConfigError
from nex_interp.neuron_weights import NeuronWeights
from nex_interp.plots import save_figure
from nex_interp.provenance import dumps, record, write_sidecar

from .config import TransferConfig
from .evaluate import Evaluation, evaluate, full_sequences
from .neuron_sets import NeuronSet, random_matched, save_set, top_effective, top_redundant
from .preflight import check_before_loading, model_spec
from .results import aggregate, contrasts, plot_results, write_results_csv
from .tasks import EvalProblem, get_task

if TYPE_CHECKING:  # pragma: no cover
    from nex_interp.models.loader import LoadedModel

PROGRESS = "progress.jsonl"
#: seed offset of the problems used as the reference inputs of mean ablation
MEAN_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class Unit:
    """One evaluation: a condition at a set size (and a seed for random sets)."""

    condition: str
    k: int
    seed: int | None = None

    @property
    def key(self) -> str:
        return f"{self.condition}/k={self.k}" + ("" if self.seed is None else f"/seed={self.seed}")


def plan_units(cfg: TransferConfig) -> list[Unit]:
    """Every unit the config asks for, references first."""
    units = [Unit("recipient", 0)]
    if cfg.operation.kind != "ablate":
        units.append(Unit("donor", 0))
    for k in cfg.sets.k:
        for cond in cfg.sets.conditions:
            if cond == "random":
                units += [Unit("random", k, s) for s in cfg.sets.random_seeds]
            else:
                units.append(Unit(cond, k))
    return units


def build_sets(cfg: TransferConfig, weights: NeuronWeights, n_layers: int, d_mlp: int) -> dict[str, NeuronSet]:
    """``{unit.key: NeuronSet}`` for every intervention unit of the config."""
    sets: dict[str, NeuronSet] = {}
    for k in cfg.sets.k:
        eff = top_effective(weights, k, cfg.sets.scope)
        red = top_redundant(weights, k, cfg.sets.scope)
        for s in (eff, red):
            s.check_fits(n_layers, d_mlp, "recipient")
        ref = eff if cfg.sets.random_reference == "effective" else red
        for unit in plan_units(cfg):
            if unit.k != k:
                continue
            if unit.condition == "effective":
                sets[unit.key] = eff
            elif unit.condition == "redundant":
                sets[unit.key] = red
            elif unit.condition == "random":
                sets[unit.key] = random_matched(ref, d_mlp, seed=int(unit.seed or 0) * 100_003 + k, name="random")
    return sets


class ProgressLog:
    """Append-only record of finished units (one JSON object a line), tied to a config fingerprint."""

    def __init__(self, path: Path, fingerprint: str):
        self.path = path
        self.fingerprint = fingerprint
        self.done: dict[str, dict] = {}
        if path.is_file():
            lines = path.read_text().splitlines()
            try:
                header = json.loads(lines[0]) if lines else {}
            except json.JSONDecodeError:
                raise ConfigError(f"progress file {path} is damaged at its first line: delete it to start over") from None
            if header.get("fingerprint") != fingerprint:
                raise ConfigError(
                    f"output directory {path.parent} holds results of a different experiment config: "
                    "use another -o directory, or delete it to start over"
                )
            damaged = False
            for line in lines[1:]:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by an interruption: redo that unit
                    damaged = True
                    continue
                self.done[rec["unit"]] = rec
            if damaged or not path.read_text().endswith("\n"):
                # rewrite without the damaged tail so that new records start on a line of their own
                write_text(path, "".join(json.dumps(x) + "\n" for x in [header, *self.done.values()]))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._append({"fingerprint": fingerprint, "version": __version__})

    def _append(self, obj: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(obj) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def add(self, unit: Unit, ev: Evaluation, set_size: int, seconds: float) -> None:
        rec = {"unit": unit.key, "condition": unit.condition, "k": unit.k, "seed": unit.seed, "set_size": set_size,
               "accuracy": ev.accuracy, "correct": ev.correct.astype(int).tolist(), "responses": ev.responses,
               "seconds": round(seconds, 3)}
        self._append(rec)
        self.done[unit.key] = rec


@contextlib.contextmanager
def intervention(cfg: TransferConfig, donor: "LoadedModel | None", recipient: "LoadedModel", nset: NeuronSet,
                 means: dict | None) -> Iterator[list]:
    """The operation's context for one set; yields the lockstep models for generation."""
    from .ablation import ablate
    from .patching import patch_from_donor
    from .transplant import transplant

    kind = cfg.operation.kind
    if kind == "transplant":
        with transplant(donor, recipient, nset):
            yield []
    elif kind == "patch":
        with patch_from_donor(donor, recipient, nset):
            yield [donor]
    else:
        sliced = None
        if cfg.operation.ablation == "mean":
            sliced = {L: means[L][units] for L, units in nset.by_layer().items()}  # type: ignore[index]
        with ablate(recipient, nset, cfg.operation.ablation, sliced):
            yield []


def _mean_reference(cfg: TransferConfig, recipient: "LoadedModel", task: Any) -> dict:
    """Mean activation of every neuron of the recipient over its own answers to reference problems."""
    import torch

    from .ablation import mean_activations

    problems = task.problems(cfg.operation.mean_problems, cfg.evaluation.seed + MEAN_SEED_OFFSET)
    ev = evaluate(recipient, task, problems, cfg.evaluation.batch_size, cfg.evaluation.max_new_tokens)
    everything = NeuronSet.every_neuron(recipient.n_layers, recipient.d_mlp)
    batches = full_sequences(recipient, problems, ev.responses, cfg.evaluation.batch_size)
    means = mean_activations(recipient, batches, everything)
    return {L: m.to(torch.float32) for L, m in means.items()}


def _memoized(loader: Any) -> Any:
    """A loader that returns the same loaded model for the same (spec, device, dtype)."""
    loaded: dict[tuple, Any] = {}

    def load(spec: str, device: str = "cpu", dtype: str = "float32") -> Any:
        key = (spec, device, dtype)
        if key not in loaded:
            loaded[key] = loader(spec, device=device, dtype=dtype)
        return loaded[key]

    return load


@dataclass(frozen=True)
class ExperimentOutputs:
    """Paths written by :func:`run_experiment` and the result rows."""

    out: Path
    results_csv: Path
    plot: Path
    summary: Path
    rows: list


def run_experiment(cfg: TransferConfig, out: str | Path, show_progress: bool = True, loader: Any = None) -> ExperimentOutputs:
    """Run (or resume) the experiment, writing its outputs into ``out``."""
    from tqdm.auto import tqdm

    from .transplant import check_same_architecture
    from .weights_source import obtain_weights

    out = Path(out)
    check_before_loading(cfg)
    task = get_task(cfg.evaluation.task, cfg.evaluation.task_options)
    log = ProgressLog(out / PROGRESS, cfg.fingerprint())
    if loader is None:
        from nex_interp.models.loader import load_model as loader
    loader = _memoized(loader)
    t0 = time.time()
    recipient = loader(model_spec(cfg, cfg.models.recipient), device=cfg.models.device, dtype=cfg.models.dtype)
    donor = None
    if cfg.operation.kind != "ablate":
        donor = loader(model_spec(cfg, cfg.models.donor or ""), device=cfg.models.device, dtype=cfg.models.dtype)
        try:
            check_same_architecture(donor, recipient)
        except ConfigError as e:
            raise ConfigError(f"config fields models.donor and models.recipient: {e}") from None
    weights, weights_info = obtain_weights(cfg, out, loader, show_progress)
    if not np.any(np.asarray(weights.weight) != 0):
        raise ConfigError(
            f"the NEX weights ({weights_info.get('path')}) credit no neuron: nothing to select; "
            "learn them on more or longer responses (weights.problems, weights.samples, weights.row_tokens)"
        )
    sets = build_sets(cfg, weights, recipient.n_layers, recipient.d_mlp)
    for key, s in sets.items():
        if s.name != "random" and len(s) < int(s.meta.get("k", 0)) and show_progress:
            print(f"note: {key}: only {len(s)} neurons have a {'positive' if s.name == 'effective' else 'negative'} weight; the set holds {len(s)}", file=sys.stderr)
    sets_dir = out / "sets"
    for key, s in sets.items():
        f = sets_dir / (key.replace("/", "_").replace("=", "") + ".csv")
        if not f.is_file():
            save_set(s, f, command="nex transfer")
    problems: list[EvalProblem] = task.problems(cfg.evaluation.problems, cfg.evaluation.seed)
    units = plan_units(cfg)
    pending = [u for u in units if u.key not in log.done]
    means = None
    if cfg.operation.kind == "ablate" and cfg.operation.ablation == "mean" and any(u.condition not in ("recipient", "donor") for u in pending):
        means = _mean_reference(cfg, recipient, task)
    bar = tqdm(total=len(pending) * len(problems), desc=f"transfer {cfg.name}", unit="problem", disable=not show_progress)
    try:
        for unit in pending:
            bar.set_postfix_str(unit.key)
            started = time.time()
            if unit.condition == "recipient":
                ev = evaluate(recipient, task, problems, cfg.evaluation.batch_size, cfg.evaluation.max_new_tokens, progress=bar)
                size = 0
            elif unit.condition == "donor":
                ev = evaluate(donor, task, problems, cfg.evaluation.batch_size, cfg.evaluation.max_new_tokens, progress=bar)  # type: ignore[arg-type]
                size = 0
            else:
                nset = sets[unit.key]
                size = len(nset)
                if size == 0:  # an empty set changes nothing: reuse the untouched recipient's answers
                    base = log.done[Unit("recipient", 0).key]
                    ev = Evaluation(np.asarray(base["correct"], dtype=np.int8), list(base["responses"]))
                    bar.update(len(problems))
                else:
                    with intervention(cfg, donor, recipient, nset, means) as lockstep:
                        ev = evaluate(recipient, task, problems, cfg.evaluation.batch_size, cfg.evaluation.max_new_tokens,
                                      lockstep=lockstep, progress=bar)
            log.add(unit, ev, size, time.time() - started)
    finally:
        bar.close()
    return write_outputs(cfg, out, log, sets, weights_info, recipient, donor, time.time() - t0)


def write_outputs(cfg: TransferConfig, out: Path, log: ProgressLog, sets: dict[str, NeuronSet], weights_info: dict,
                  recipient: Any, donor: Any, seconds: float) -> ExperimentOutputs:
    """results.csv, dose_response.png, summary.json and provenance.json from the finished units."""
    units = {}
    for rec in log.done.values():
        units[(rec["condition"], int(rec["k"]), rec["seed"])] = np.asarray(rec["correct"], dtype=np.float64)
    baseline = units.pop(("recipient", 0, None))
    rows = aggregate(units, baseline, cfg.evaluation.bootstrap)
    versus = contrasts(units, cfg.evaluation.bootstrap)
    results_csv = out / "results.csv"
    write_results_csv(rows, results_csv)
    plot = out / "dose_response.png"
    title = f"{cfg.operation.kind}: {cfg.models.donor or ''} -> {cfg.models.recipient}" if cfg.operation.kind != "ablate" else f"ablate ({cfg.operation.ablation}) in {cfg.models.recipient}"
    fig = plot_results(rows, title, "recipient" if cfg.operation.kind != "ablate" else "model")
    save_figure(fig, plot, command="nex transfer", config=cfg.to_dict())
    import matplotlib.pyplot as plt

    plt.close(fig)
    per_seed = [
        {"condition": r["condition"], "k": r["k"], "seed": r["seed"], "accuracy": r["accuracy"], "set_size": r["set_size"]}
        for r in log.done.values() if r["seed"] is not None
    ]
    set_sizes = {key: {"size": len(s), "layer_counts": {str(L): c for L, c in s.layer_counts().items()},
                       "available": s.meta.get("available")} for key, s in sets.items()}
    models = {"recipient": recipient.identity, "donor": donor.identity if donor is not None else None}
    prov = record("nex transfer", config=cfg.to_dict(), model=models, inputs={"weights": weights_info})
    summary = {
        "name": cfg.name,
        "operation": cfg.operation.kind,
        "n_problems": int(len(baseline)),
        "recipient_accuracy": float(baseline.mean()),
        "donor_accuracy": next((r.accuracy for r in rows if r.condition == "donor"), None),
        "results": [r.__dict__ for r in rows],
        "random_seeds": per_seed,
        "sets": set_sizes,
        "ci": "percentile bootstrap of delta over problems, paired with the untouched recipient, 95%",
        "contrasts": [c.__dict__ for c in versus],
        "contrasts_ci": "effective minus random (seeds averaged per problem) or redundant at the same k: percentile "
                        "bootstrap of the per-problem difference, 95%",
        "seconds": round(seconds, 1),
        "provenance": prov,
    }
    summary_path = out / "summary.json"
    write_text(summary_path, dumps(summary))
    write_sidecar(out, prov)
    return ExperimentOutputs(out, results_csv, plot, summary_path, rows)
