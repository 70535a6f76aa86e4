"""The experiment's analyses across variants: the entropy exploration proxy, the inverted-U fit,
HMM phases against the generator's labels, best-of-N selection and sample efficiency."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...cache.arrays import CacheArrays
from ...errors import ConfigError
from ..task import Problem, is_correct
from ..traces import WORKED_START, label_tokens
from .config import DemoConfig, VariantResult
from .variant import variant_cache, variant_dir, variant_responses


def row_entropies(cache: CacheArrays | str | Path) -> list[np.ndarray]:
    """Mean next-token entropy of each cache row of each response: the entropy proxy's rows
    (:func:`nex_interp.selection.baselines.row_mean_entropies` over the rows as the cache cut them),
    from the cache's ``tokens`` stream; ``cache``: opened, or its path."""
    from ...cache.reader import as_cache
    from ...selection.baselines import row_mean_entropies
    from ...selection.pipeline import cache_row_tokens

    cache = as_cache(cache)
    ptr, arrays = cache.stream("tokens")
    ent = np.asarray(arrays["entropy"], dtype=np.float64)
    out = []
    for i in range(cache.n_responses):
        try:  # rows and the token stream must cover the same tokens
            out.append(row_mean_entropies(ent[ptr[i] : ptr[i + 1]], cache_row_tokens(cache, i)))
        except ValueError as e:
            raise ConfigError(f"cache {cache.path}: response {i}: {e}") from None
    return out


def high_entropy_rows(entropies: dict[str, list[np.ndarray]], reference: list[str], quantile: float) -> tuple[dict[str, float], float]:
    """The entropy exploration proxy: per variant, the mean number of rows per response whose mean
    entropy exceeds one threshold, the ``quantile`` of the rows of the ``reference`` variants pooled.
    Returns ``(proxy by variant, threshold)``."""
    pooled = np.concatenate([np.concatenate(v) if v else np.array([]) for n, v in entropies.items() if n in set(reference)])
    threshold = float(np.nanquantile(pooled, quantile))
    return {n: float(np.mean([np.nansum(e > threshold) for e in v])) for n, v in entropies.items()}, threshold


def family_phase_agreement(out: Path, results: list[VariantResult], cfg: DemoConfig) -> dict:
    """HMM phases (row labels repeated over their tokens) against the generator's token labels,
    pooled over the worked solutions of ``results``' variants."""
    from ...phase_agreement import agreement, row_labels_to_tokens
    from ...selection.nex_api import row_phases

    pred, gold = {}, {}
    for r in results:
        cache = variant_cache(out, r.name)
        for i, resp in enumerate(variant_responses(out, r.name, cache)):
            if resp["response"].split()[:1] != [WORKED_START]:
                continue  # brief answers have no phases to compare
            start, stop = cache.response_rows(i)
            if stop - start < 3:
                continue
            n_tok = np.diff(np.asarray(cache.token_row_ptr[start : stop + 1], dtype=np.int64))
            tokens = resp["response"].split()
            if int(n_tok.sum()) != len(tokens):
                continue
            rid = f"{r.name}/{resp['id']}"
            pred[rid] = row_labels_to_tokens(row_phases(cache, i), n_tok)
            gold[rid] = np.array([1 if l == "E" else 0 for l in label_tokens(tokens)], dtype=np.int8)
    if not pred:
        return {"cohen_kappa": None, "boundary_f1": None, "n_responses": 0}
    rep = agreement(pred, gold, tolerance=cfg.boundary_tolerance).summary()
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rep.items()}


def selection_outputs(out: Path, best: VariantResult, merge: list[VariantResult], problems: list[Problem], cfg: DemoConfig) -> list[str]:
    """``selection.csv`` (best-of-N on the best variant's samples) and ``sample_efficiency.csv``
    (ranking the merge family from N unlabeled problems), both through :mod:`nex_interp.selection`.
    Returns the file names written."""
    from ...provenance import record
    from ...selection import write_selection_csv
    from ...selection.pipeline import SelectConfig, select_best_of_n
    from ...selection.sample_efficiency import Variant, sample_efficiency, write_sample_efficiency
    from ..task import extract_answer

    by_id = {p.id: p for p in problems}

    def checker(row: dict) -> bool:  # evaluation only
        return is_correct(by_id[row["problem_id"]], row["response"])

    def extractor(text: str) -> str | None:
        return extract_answer(text)

    vdir = variant_dir(out, best.name)
    sel_cfg = SelectConfig(seed=cfg.seed, n_boot=1000)
    report, _ = select_best_of_n(vdir / "cache", vdir / "responses.jsonl", config=sel_cfg, checker=checker, extractor=extractor)
    write_selection_csv(report, out / "selection.csv", record("nex demo: best-of-N", config=sel_cfg, model=best.name, skipped=report.skipped))

    variants = [Variant.from_cache(r.name, variant_cache(out, r.name), r.accuracy) for r in merge]
    grid = [n for n in cfg.selection_grid if n <= cfg.n_problems]
    df = sample_efficiency(variants, grid, seeds=cfg.se_seeds, seed=cfg.seed, progress=False)
    paths = write_sample_efficiency(df, out, config={"grid": grid, "seeds": cfg.se_seeds, "seed": cfg.seed, "variants": [r.name for r in merge]})
    return ["selection.csv", *[Path(p).name for p in paths.values()]]
