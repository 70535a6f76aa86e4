"""``nex study``: the whole sweep, model by model, then across models.

Per model (``OUT/models/<name>/``): build the merge variant (``model/``), sample the responses
(``responses.jsonl``, graded by the task when there is one), capture them (``cache/``), learn NEX
weights on that cache (``weights.npz``) and score its responses (``scores.csv``), and run best-of-N
(``selection.csv``, ``picks.csv``). Across models: the ranking of the models by NEX and the baselines
against accuracy (``OUT/variants.csv``, ``OUT/ranking.csv``) and ``OUT/summary.json``. Every output
carries provenance; every stage resumes (:mod:`.stages`). With Ray options, generation and capture
run sharded on Ray workers (:mod:`nex_interp.generation_sharded`, :mod:`nex_interp.capture.distributed`);
the results are those of one process.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

from ..atomic import atomic_path, write_text
from ..errors import ConfigError
from ..provenance import record, write_sidecar
from .config import StudyConfig
from .models import drop_merged, ensure_model, model_identity
from .stages import LOCK_NAME, DriverLock, StageBook, digest, stage_key

STUDY_NAME = "study.json"
PROMPTS_NAME = "prompts.jsonl"
RESPONSES_NAME = "responses.jsonl"
CACHE_NAME = "cache"
WEIGHTS_NAME = "weights.npz"
SCORES_NAME = "scores.csv"
SUMMARY_NAME = "summary.json"


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} is a file: give a directory for -o")
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()) and not (out / STUDY_NAME).is_file():
        raise ConfigError(f"output directory {out} exists and is not a nex study: choose a new -o")


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _read_rows(path: Path, what: str) -> list[dict]:
    from ..jsonl import read_jsonl

    return [{k: v for k, v in r.items() if k != "_line"} for r in read_jsonl(path, what, line_numbers=True)]


class _Study:
    """One run of a study (the state shared by its stages)."""

    def __init__(self, cfg: StudyConfig, out: Path, ray_options=None, progress: bool = True) -> None:
        self.cfg, self.out, self.ray, self.progress = cfg, out, ray_options, progress
        self.task = cfg.task()
        self.problems: dict = {}
        self.book = StageBook(out)

    # ------------------------------------------------------------------ prompts
    def prompts(self) -> list[dict]:
        """The problems' prompt rows, written once to ``OUT/prompts.jsonl`` (the study's record of them)."""
        p = self.cfg.prompts
        if self.task is not None:
            problems = self.task.problems(p.n_problems, p.seed)
            self.problems = {str(x.id): x for x in problems}
            rows = [{"id": str(x.id), "prompt": x.prompt} for x in problems]
            source = {"task": p.task, "task_options": p.task_options, "n_problems": p.n_problems, "seed": p.seed}
        elif p.file:
            path = self.cfg.path(p.file)
            rows = _read_rows(path, "prompts file")
            source = {"file": str(path), "sha256": digest(path)}
        else:
            return []
        key = stage_key(stage="prompts", source=source, rows=rows)
        if not self.book.done("prompts", key):
            write_text(self.out / PROMPTS_NAME, _jsonl(rows))
            write_sidecar(self.out / PROMPTS_NAME, record("nex study prompts", config=source, n_prompts=len(rows)))
            self.book.record("prompts", key, [PROMPTS_NAME])
        return rows

    def grade(self, rows: list[dict], name: str) -> list[dict]:
        """Each response row with ``correct`` from the task's checker (no task: rows as they are)."""
        if self.task is None:
            return rows
        out = []
        for r in rows:
            problem = self.problems.get(str(r.get("problem_id")))
            if problem is None:
                raise ConfigError(f"model {name}: response {r.get('id')!r} is for problem {r.get('problem_id')!r}, "
                                  f"which is not one of the task's {len(self.problems)} problems (same task, n_problems and seed?)")
            out.append({**r, "correct": bool(self.task.is_correct(problem, str(r.get("response", ""))))})
        return out

    # ------------------------------------------------------------------ one model
    def run_model(self, entry, prompt_rows: list[dict]) -> dict:
        cfg = self.cfg
        mdir = self.out / "models" / entry.name
        mdir.mkdir(parents=True, exist_ok=True)
        book = StageBook(mdir)
        identity = {**model_identity(cfg, entry), "device": cfg.device, "dtype": cfg.dtype}
        loaded: dict = {}

        def spec() -> str:
            """The model's spec (a merge variant is built on first use)."""
            if "spec" not in loaded:
                loaded["spec"] = ensure_model(cfg, entry, mdir, book, self.progress)
            return loaded["spec"]

        def model():
            if "m" not in loaded:
                from ..models.loader import load_model

                loaded["m"] = load_model(spec(), device=cfg.device, dtype=cfg.dtype, boot_bridge=False)
            return loaded["m"]

        # responses
        gen = cfg.generation
        if entry.responses is not None:
            src = {"responses": str(cfg.path(entry.responses)), "sha256": digest(cfg.path(entry.responses))}
        else:
            src = {"generation": {k: v for k, v in gen.to_dict().items() if k != "shard_size"},
                   "prompts": digest(self.out / PROMPTS_NAME), "model": identity}
        grading = {"task": cfg.prompts.task, "options": cfg.prompts.task_options, "n": cfg.prompts.n_problems,
                   "seed": cfg.prompts.seed} if self.task else None
        key = stage_key(stage="responses", source=src, grading=grading)
        if not book.done("responses", key):
            rows = self.responses(entry, spec, model, prompt_rows, mdir, key)
            path = mdir / RESPONSES_NAME
            write_text(path, _jsonl(self.grade(rows, entry.name)))
            write_sidecar(path, record("nex study responses", config=src, model=identity, grading=grading, n_responses=len(rows)))
            book.record("responses", key, [RESPONSES_NAME])
            for p in mdir.glob(".responses.partial.jsonl*"):
                shutil.rmtree(p) if p.is_dir() else p.unlink()

        # cache
        cap = cfg.capture
        cap_settings = {k: v for k, v in cap.to_dict().items() if k not in ("batch_size", "shard_size")}
        sharded = self.ray is not None
        key = stage_key(stage="cache", capture=cap_settings, responses=digest(mdir / RESPONSES_NAME), model=identity,
                        sharded=sharded, shard_size=cap.shard_size if sharded else None)
        if not book.done("cache", key):
            self.capture(spec, model, mdir, book, key)
            book.record("cache", key, [CACHE_NAME])
        loaded.clear()  # the model is not needed past capture
        if not cfg.keep_merged:
            drop_merged(entry, mdir)

        result = {"name": entry.name, "model": identity}
        k = cfg.compute
        if k.weights:
            result.update(self.nex(mdir, book))
        if k.best_of_n:
            result["best_of_n"] = self.best_of_n(mdir, book)
        return result

    def ray_options(self, shard_size: int):
        """The Ray options for one stage: its shard size; GPUs per worker, unless given, 1 where the
        config's device is a GPU one and the cluster has GPUs, and none for a CPU device."""
        gpus = self.ray.gpus_per_worker
        if gpus is None and not self.cfg.device.startswith("cuda"):
            gpus = 0
        return replace(self.ray, shard_size=shard_size, gpus_per_worker=gpus)

    def responses(self, entry, spec, model, prompt_rows: list[dict], mdir: Path, key: str) -> list[dict]:
        """The model's responses: read from its responses file, or generated (resuming an interrupted
        generation of the same settings; one of other settings is discarded)."""
        cfg = self.cfg
        if entry.responses is not None:
            return _read_rows(cfg.path(entry.responses), f"responses file of model {entry.name}")
        gen_cfg = cfg.generation.generation_config()
        partial = mdir / ".responses.partial.jsonl"
        marker = mdir / ".responses.key"
        if not marker.is_file() or marker.read_text() != key:
            for p in mdir.glob(".responses.partial.jsonl*"):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            write_text(marker, key)
        if self.ray is not None:
            from ..generation_sharded import generate_sharded

            generate_sharded(spec(), prompt_rows, partial, gen_cfg, self.ray_options(cfg.generation.shard_size),
                             device=cfg.device, dtype=cfg.dtype, progress=self.progress)
        else:
            from ..generation import generate_to_file

            generate_to_file(model(), prompt_rows, partial, gen_cfg, progress=self.progress)
        return _read_rows(partial, f"generated responses of model {entry.name}")

    def capture(self, spec, model, mdir: Path, book: StageBook, key: str) -> None:
        """Capture (or finish capturing) the model's responses into ``mdir/cache``."""
        cfg = self.cfg
        cache = mdir / CACHE_NAME
        marker = mdir / ".cache.key"
        if cache.exists() and (not marker.is_file() or marker.read_text() != key):
            shutil.rmtree(cache)  # a cache of other settings, or of unknown origin: start again
        write_text(marker, key)
        rows = _read_rows(mdir / RESPONSES_NAME, f"responses of model {mdir.name}")
        if self.ray is not None:
            from ..capture.distributed import capture_sharded

            n_layers = None
            if cfg.capture.layers.strip().lower() != "all":
                n_layers = model().n_layers
            config = cfg.capture.capture_config(n_layers, progress=self.progress)
            capture_sharded(spec(), rows, cache, config, self.ray_options(cfg.capture.shard_size), device=cfg.device,
                            dtype=cfg.dtype)
        else:
            from ..capture.engine import write_cache

            m = model()
            write_cache(m, rows, cache, cfg.capture.capture_config(m.n_layers, progress=self.progress), resume=True)

    def nex(self, mdir: Path, book: StageBook) -> dict:
        """Weights learned on the model's own cache; GMF of each response (``scores.csv``)."""
        from ..cache.reader import open_cache

        k = self.cfg.compute
        params = k.nex_params()
        outputs = [WEIGHTS_NAME] + ([SCORES_NAME] if k.scores else [])
        key = stage_key(stage="nex", params=params.to_dict(), scores=k.scores, cache=digest(mdir / CACHE_NAME))
        if not book.done("nex", key):
            from ..core import learn_weights, nex_score
            from ..core.kernel import default_workers
            from ..scores import score_table
            from ..weights_io import save_weights

            cache = open_cache(mdir / CACHE_NAME)
            weights = learn_weights(cache, params, workers=default_workers())
            rec = record("nex study weights", config=params.to_dict(), model=_cache_model(cache), inputs={"cache": str(mdir / CACHE_NAME)},
                         n_weights=len(weights))
            save_weights(weights, mdir / WEIGHTS_NAME, provenance=rec)
            summary = {"n_responses": int(cache.n_responses), "n_weights": len(weights)}
            if k.scores:
                table = score_table(cache, weights)
                with atomic_path(mdir / SCORES_NAME) as tmp:
                    table.to_csv(tmp)
                write_sidecar(mdir / SCORES_NAME, {**rec, "command": "nex study scores"})
                score = nex_score(table["gmf"].to_numpy())
                summary["nex_score"] = None if math.isnan(float(score)) else float(score)
            write_text(mdir / "nex.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
            book.record("nex", key, outputs + ["nex.json"])
        return json.loads((mdir / "nex.json").read_text())

    def best_of_n(self, mdir: Path, book: StageBook) -> dict:
        """Best-of-N selection on the model's responses (``selection.csv``, ``picks.csv``)."""
        from ..selection.pipeline import SelectConfig

        k = self.cfg.compute
        config = SelectConfig(rho=k.rho, min_run=k.min_run, n_boot=k.n_boot, seed=k.seed)
        key = stage_key(stage="best_of_n", config=config.to_dict(), methods=k.methods, cache=digest(mdir / CACHE_NAME),
                        responses=digest(mdir / RESPONSES_NAME))
        if not book.done("best_of_n", key):
            from ..selection.best_of_n import write_picks_csv, write_selection_csv
            from ..selection.pipeline import select_best_of_n

            report, cands = select_best_of_n(mdir / CACHE_NAME, mdir / RESPONSES_NAME, list(k.methods) if k.methods else None, config)
            rec = record("nex study best-of-N", config=config.to_dict(), inputs={"cache": str(mdir / CACHE_NAME)},
                         skipped=report.skipped, n_candidates=len(cands), n_problems=len(cands.problems()),
                         labelled=cands.correct is not None)
            write_selection_csv(report, mdir / "selection.csv", rec)
            write_picks_csv(report, mdir / "picks.csv", rec)
            result = {"methods": {r.method: {"accuracy": _num(r.accuracy), "ci_low": _num(r.ci_low), "ci_high": _num(r.ci_high)}
                                  for r in report.results},
                      "skipped": report.skipped, "n_problems": len(cands.problems()), "n_candidates": len(cands)}
            write_text(mdir / "best_of_n.json", json.dumps(result, indent=2, sort_keys=True) + "\n")
            book.record("best_of_n", key, ["selection.csv", "picks.csv", "best_of_n.json"])
        return json.loads((mdir / "best_of_n.json").read_text())

    # ------------------------------------------------------------------ across models
    def ranking(self, names: list[str]) -> dict:
        """Rank the models by NEX and the baselines against accuracy (``variants.csv``, ``ranking.csv``)."""
        k = self.cfg.compute
        if len(names) < 2:
            return {"skipped": "ranking needs at least two models"}
        dirs = {n: self.out / "models" / n for n in names}
        if any(_accuracy(d / RESPONSES_NAME)["accuracy"] is None for d in dirs.values()):
            return {"skipped": "some models' responses carry no correctness or reference answer: no accuracy to rank against"}
        params = k.nex_params()
        key = stage_key(stage="ranking", params=params.to_dict(), names=names,
                        caches={n: digest(d / CACHE_NAME) for n, d in dirs.items()},
                        responses={n: digest(d / RESPONSES_NAME) for n, d in dirs.items()})
        if not self.book.done("ranking", key):
            from ..selection.pipeline import rank_variants

            result = rank_variants({n: d / CACHE_NAME for n, d in dirs.items()}, None, params, progress=self.progress,
                                   responses={n: d / RESPONSES_NAME for n, d in dirs.items()})
            rec = record("nex study ranking", config={**params.to_dict(), "entropy_threshold": result.entropy_threshold},
                         inputs={"models": names})
            for name, df in (("variants.csv", result.variants), ("ranking.csv", result.ranking)):
                with atomic_path(self.out / name) as tmp:
                    df.to_csv(tmp, index=False, float_format="%.6g")
                write_sidecar(self.out / name, rec)
            self.book.record("ranking", key, ["variants.csv", "ranking.csv"])
        import pandas as pd

        return {"variants": _records(pd.read_csv(self.out / "variants.csv")), "ranking": _records(pd.read_csv(self.out / "ranking.csv"))}


def _accuracy(path: Path) -> dict:
    """Number of responses and mean correctness (the ``correct`` field, else the extracted answer
    against a reference answer, as best-of-N and the ranking grade them; None when ungraded)."""
    import numpy as np

    from ..selection.candidates import candidates_from_rows

    rows = _read_rows(path, "responses")
    cands = candidates_from_rows(rows, source=str(path))
    acc = None if cands.correct is None else float(np.nanmean(cands.correct))
    return {"n_responses_generated": len(rows), "accuracy": acc}


def _cache_model(cache) -> dict:
    from ..cache.manifest import RESERVED_FIELDS

    return {k: v for k, v in (cache.manifest or {}).items() if k not in RESERVED_FIELDS and k != "sharded"}


def _num(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _records(df) -> list[dict]:
    return [{k: (_num(v) if isinstance(v, float) else (v.item() if hasattr(v, "item") else v)) for k, v in row.items()}
            for row in df.to_dict(orient="records")]


def run_study(cfg: StudyConfig, out: str | Path, ray_options=None, progress: bool = True) -> dict:
    """Run (or resume) the study ``cfg`` into ``out``; returns the summary (also ``OUT/summary.json``).

    ``ray_options``: a :class:`nex_interp.capture.distributed.RayOptions` to generate and capture on Ray
    (its ``shard_size`` is replaced by the config's ``generation.shard_size`` / ``capture.shard_size``)."""
    from tqdm.auto import tqdm

    out = Path(out)
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    with DriverLock(out):
        write_text(out / STUDY_NAME, json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
        study = _Study(cfg, out, ray_options, progress)
        prompt_rows = study.prompts()
        models = []
        for entry in tqdm(cfg.models, desc="study", unit="model", disable=not progress):
            models.append(study.run_model(entry, prompt_rows))
        summary: dict = {"name": cfg.name, "n_models": len(models), "models": models}
        for m in models:
            m.update(_accuracy(out / "models" / m["name"] / RESPONSES_NAME))
        if cfg.compute.ranking:
            summary["ranking"] = study.ranking([m["name"] for m in models])
        rec = record("nex study", config=cfg.to_dict(), inputs={"config_dir": cfg.base_dir},
                     ray=None if ray_options is None else {"address": ray_options.address, "workers": ray_options.workers,
                                                            "gpus_per_worker": ray_options.gpus_per_worker})
        write_text(out / SUMMARY_NAME, json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
        write_sidecar(out / SUMMARY_NAME, rec)
        write_sidecar(out, rec)
    return summary


__all__ = ["run_study"]
