"""One variant of the experiment, end to end: its checkpoint, sampled responses, cache, NEX and accuracy.

A variant's files live under ``OUT/variants/<name>/`` (``responses.jsonl``, ``cache/``,
``weights.npz``, ``result.json``) and are kept as they are finished, so a run resumes where it
stopped. Labels never enter NEX: they are read only by :func:`evaluate`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from ...atomic import atomic_path, write_text
from ...cache.arrays import CacheArrays
from .. import MIXTURE_FAMILY, zoo_model_dir
from ..task import Problem, generate_problems, is_correct
from ..traces import WORKED_START
from .config import DemoConfig, VariantResult


def demo_problems(cfg: DemoConfig) -> list[Problem]:
    """The unlabeled problems every variant answers (the same for every variant of a run)."""
    return generate_problems(cfg.n_problems, seed=100_000 + cfg.seed, prefix="demo")


def variant_dir(out: str | Path, name: str) -> Path:
    """Where variant ``name`` of the run in ``out`` keeps its files."""
    return Path(out) / "variants" / name


def variant_cache(out: str | Path, name: str) -> CacheArrays:
    """The opened cache of variant ``name`` of the run in ``out``."""
    from ...cache.reader import open_cache

    return open_cache(variant_dir(out, name) / "cache")


def variant_model_dir(out: Path, name: str, lam: float | None) -> Path:
    """The variant's checkpoint: a SLERP merge (instruct -> thinking at ``lam``) written under
    OUT/models, or a shipped zoo model when ``lam`` is None."""
    if lam is None:
        return zoo_model_dir(name)
    from ...merge import merge_models

    target = out / "models" / name
    if not (target / "merge.json").exists():
        merge_models(zoo_model_dir("instruct"), zoo_model_dir("thinking"), "slerp", lam, target)
    return target


def sample_responses(model, problems: list[Problem], cfg: DemoConfig, path: Path) -> list[dict]:
    """The variant's sampled responses to ``problems`` (no answers in the prompts), kept in ``path``."""
    from ...generation import generate_responses

    if path.exists():
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    prompts = [{"id": p.id, "prompt": p.prompt()} for p in problems]  # no answer: label-free input
    rows = generate_responses(
        model, prompts, samples=cfg.samples, temperature=cfg.temperature, top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, batch_size=cfg.batch_size, progress=False,
        batch_problems=max(1, cfg.generate_rows // cfg.samples),
    )
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return rows


def capture_responses(model, responses: list[dict], cfg: DemoConfig, path: Path) -> CacheArrays:
    """Capture (or finish capturing) ``responses`` into the cache ``path``; returns the opened cache."""
    from ...cache.reader import open_cache
    from ...capture.engine import write_cache

    if not (path / "manifest.json").exists() or not json.loads((path / "manifest.json").read_text()).get("complete"):
        write_cache(model, responses, path, cfg.capture_config(), resume=True)
    return open_cache(path)


def self_calibrated_nex(cache: CacheArrays, params=None):
    """Self-calibrated NEX on one cache: (weights, GMF per response, E segments per response)."""
    from ...core import NexParams, diagnose_response, learn_weights, score_responses

    params = params or NexParams()
    weights = learn_weights(cache, params)
    gmf = np.asarray(score_responses(cache, weights), dtype=np.float64)
    segs = [int(diagnose_response(cache, i, params).n_e_segments) for i in range(cache.n_responses)]
    return weights, gmf, segs


def responses_in_cache_order(cache: CacheArrays, responses: list[dict]) -> list[dict]:
    """``responses`` (with their text) in the cache's order, matched by id, so per-response arrays line up."""
    rows = {r["id"]: r for r in responses}
    return [rows[rid] for rid in cache.response_ids]


def variant_responses(out: str | Path, name: str, cache: CacheArrays | None = None) -> list[dict]:
    """Variant ``name``'s responses (with their text) in its cache's order."""
    vdir = variant_dir(out, name)
    rows = [json.loads(line) for line in (vdir / "responses.jsonl").read_text().splitlines() if line.strip()]
    return responses_in_cache_order(cache if cache is not None else variant_cache(out, name), rows)


def evaluate(problems: list[Problem], responses: list[dict]) -> list[bool]:
    """Correctness of each response against the generator's answer (evaluation only)."""
    by_id = {p.id: p for p in problems}
    return [is_correct(by_id[r["problem_id"]], r["response"]) for r in responses]


def step_kinds(problems: list[Problem], responses: list[dict]) -> dict[str, int]:
    """What the variant's searches did, summed over its responses (:mod:`nex_interp.zoo.audit`):
    boxes opened (``opens``; ``revisits`` of them re-open a box already opened), ``holds`` (a box
    kept while searching on), ``out_of_budget`` stops, ``brief`` answers, and the steps that agree
    with the problem (``opens_ok``, ``checks``, ``checks_ok``)."""
    from ..audit import audit_response

    by_id = {p.id: p for p in problems}
    kinds = dict.fromkeys(("opens", "revisits", "holds", "out_of_budget", "brief", "opens_ok", "checks", "checks_ok"), 0)
    for r in responses:
        words = r["response"].split()
        a = audit_response(by_id[r["problem_id"]], words)
        kinds["opens"] += a.opens
        kinds["revisits"] += a.revisits
        kinds["opens_ok"] += a.opens_ok
        kinds["checks"] += a.checks
        kinds["checks_ok"] += a.checks_ok
        kinds["holds"] += words.count("hold")
        kinds["out_of_budget"] += "stop" in words
        kinds["brief"] += words[:1] != [WORKED_START]
    return kinds


def run_variant(out: Path, name: str, family: str, lam: float | None, problems: list[Problem], cfg: DemoConfig) -> VariantResult:
    """Run (or resume) one variant; the result is saved to ``OUT/variants/<name>/result.json``.

    ``lam``: the SLERP factor (instruct 0 -> thinking 1) of a merge variant; None for a shipped
    zoo model ``name`` (its ``lam`` is then its position on the data-mixture family's exploration
    axis, :data:`nex_interp.zoo.MIXTURE_FAMILY`)."""
    from ...models.loader import load_model
    from ...weights_io import save_weights

    out = Path(out)
    vdir = variant_dir(out, name)
    result_path = vdir / "result.json"
    if result_path.exists():
        return VariantResult(**json.loads(result_path.read_text()))
    vdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = load_model(str(variant_model_dir(out, name, lam)))
    responses = sample_responses(model, problems, cfg, vdir / "responses.jsonl")
    cache = capture_responses(model, responses, cfg, vdir / "cache")
    del model
    weights, gmf, segs = self_calibrated_nex(cache)
    save_weights(weights, vdir / "weights.npz")
    responses = responses_in_cache_order(cache, responses)
    correct = evaluate(problems, responses)
    texts = [r["response"] for r in responses]
    res = VariantResult(
        name=name,
        family=family,
        lam=float(lam) if lam is not None else float(MIXTURE_FAMILY[name]),
        accuracy=float(np.mean(correct)),
        nex_score=float(np.nanmean(gmf)) if np.isfinite(gmf).any() else float("nan"),
        mean_e_segments=float(np.mean(segs)),
        thinking_share=float(np.mean([t.split()[:1] == [WORKED_START] for t in texts])),
        mean_tokens=float(np.mean([len(t.split()) for t in texts])),
        n_responses=len(responses),
        n_segmented=int(sum(s > 0 for s in segs)),
        seconds=round(time.perf_counter() - t0, 2),
        mean_opens=float(np.mean([t.split().count("open") for t in texts])),
        step_kinds=step_kinds(problems, responses),
        gmf=[None if not math.isfinite(g) else float(g) for g in gmf],  # type: ignore[misc]
        e_segments=segs,
        correct=correct,
    )
    write_text(result_path, json.dumps(dataclasses.asdict(res), sort_keys=True) + "\n")
    return res
