"""``nex demo``: the NEX paper's headline experiment on the embedded zoo, end to end on a CPU.

For each of ``n_variants`` SLERP merges between the zoo's ``instruct`` and ``thinking`` models
(``lambda`` = 0 gives instruct, 1 gives thinking, endpoints included), and for the data-mixture
family (fine-tunes of ``base`` on 0..100% worked solutions):

1. merge (:func:`nex_interp.merge.merge_models`) and load the variant;
2. sample responses to the same unlabeled problems (:func:`nex_interp.generation.generate_responses`);
3. capture a sparse activation cache (:func:`nex_interp.capture.capture.capture_cache`);
4. self-calibrate NEX on that cache (learn weights without labels, score every response);
5. evaluate accuracy with the generator's answers (used for evaluation only), count E segments of
   the HMM phases, and count high-entropy rows (the entropy exploration proxy).

Then it writes ``OUT/summary.json`` (``variants``, ``correlation``, ``inverted_u``,
``phase_agreement`` and the ``mixture_family``), the plots, the neuron-weight table of the most
accurate variant, ``selection.csv`` and ``sample_efficiency.csv``, and prints a summary table.

Each variant's results are kept under ``OUT/variants/<name>/`` as they finish, so an interrupted
demo resumes where it stopped. The same seed gives the same numbers. Labels never enter NEX:
they are read only by :func:`_evaluate`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_path, write_text
from .errors import ConfigError
from .provenance import dumps, record, write_sidecar
from .zoo import MIXTURE_FAMILY, zoo_model_dir
from .zoo.task import Problem, generate_problems, is_correct, label_tokens


@dataclass(frozen=True)
class DemoConfig:
    """Settings of one demo run (all of them are written to ``OUT/demo_config.json``).

    n_variants:         SLERP variants between instruct (lambda 0) and thinking (lambda 1), endpoints included.
    n_problems:         unlabeled problems every variant answers (levels cycle through ``levels``).
    samples:            sampled responses per problem.
    temperature/top_p:  sampling settings; max_new_tokens caps a response.
    row_tokens:         NEX row size for the zoo's short chains of thought (see ``docs``/README).
    rule:               the capture's activation rule.
    high_entropy_quantile: a row is high-entropy when its mean next-token entropy exceeds this
                        quantile of all rows of all merge variants (one threshold for the family).
    boundary_tolerance: tokens within which an HMM phase boundary matches a generator boundary.
    mixtures:           also run the data-mixture family.
    selection_grid:     numbers of problems for the sample-efficiency curve (with ``se_seeds`` seeds).
    """

    seed: int = 0
    n_variants: int = 11
    n_problems: int = 48
    samples: int = 4
    levels: tuple[int, ...] = (1, 2, 3)
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 160
    row_tokens: int = 2
    rule: str = "abs:0.5"
    batch_size: int = 64
    high_entropy_quantile: float = 0.8
    boundary_tolerance: int = 2
    mixtures: bool = True
    selection_grid: tuple[int, ...] = (4, 8, 16, 32, 48)
    se_seeds: int = 10

    def __post_init__(self) -> None:
        if self.n_variants < 2:
            raise ConfigError(f"n_variants must be at least 2 (the two endpoints), got {self.n_variants}")
        if self.n_problems < 2 or self.samples < 1:
            raise ConfigError("n_problems must be >= 2 and samples >= 1")

    @classmethod
    def quick(cls, seed: int = 0) -> "DemoConfig":
        """The reduced mode used by the test suite: the same pipeline on fewer problems and variants."""
        return cls(seed=seed, n_variants=4, n_problems=10, samples=4, mixtures=False, selection_grid=(3, 6, 10), se_seeds=3)

    def lambdas(self) -> list[float]:
        return [round(i / (self.n_variants - 1), 6) for i in range(self.n_variants)]


@dataclass
class VariantResult:
    """Everything the demo keeps about one variant (``OUT/variants/<name>/result.json``)."""

    name: str
    family: str
    lam: float
    accuracy: float
    nex_score: float
    mean_e_segments: float
    thinking_share: float
    mean_tokens: float
    n_responses: int
    n_segmented: int
    seconds: float
    gmf: list[float] = field(default_factory=list)
    e_segments: list[int] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)


# --------------------------------------------------------------------------------------- stages


def _problems(cfg: DemoConfig) -> list[Problem]:
    return generate_problems(cfg.n_problems, seed=100_000 + cfg.seed, levels=cfg.levels, prefix="demo")


def _model_dir(out: Path, name: str, lam: float | None) -> Path:
    """The variant's checkpoint: a merge written under OUT/models, or a shipped zoo model."""
    if lam is None:
        return zoo_model_dir(name)
    from .merge import merge_models

    target = out / "models" / name
    if not (target / "merge.json").exists():
        merge_models(zoo_model_dir("instruct"), zoo_model_dir("thinking"), "slerp", lam, target)
    return target


def _generate(model, problems: list[Problem], cfg: DemoConfig, path: Path) -> list[dict]:
    from .generation import generate_responses

    if path.exists():
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    prompts = [{"id": p.id, "prompt": p.prompt()} for p in problems]  # no answer: label-free input
    rows = generate_responses(
        model, prompts, samples=cfg.samples, temperature=cfg.temperature, top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, batch_size=cfg.batch_size, progress=False,
    )
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return rows


def _capture(model, responses: list[dict], cfg: DemoConfig, path: Path) -> Path:
    from .capture.capture import CaptureConfig, capture_cache

    if not (path / "manifest.json").exists() or not json.loads((path / "manifest.json").read_text()).get("complete"):
        capture_cache(model, responses, path, CaptureConfig(row_tokens=cfg.row_tokens, rule=cfg.rule, batch_size=cfg.batch_size, progress=False, attention="eager"), resume=True)
    return path


def _nex(cache_path: Path):
    """Self-calibrated NEX on one cache: (weights, GMF per response, E segments per response)."""
    from .cache.reader import open_cache
    from .core import NexParams, diagnose_response, learn_weights, score_responses

    cache = open_cache(cache_path)
    params = NexParams()
    weights = learn_weights(cache, params)
    gmf = np.asarray(score_responses(cache, weights), dtype=np.float64)
    segs = [int(diagnose_response(cache, i, params).n_e_segments) for i in range(cache.n_responses)]
    return cache, weights, gmf, segs


def _cache_responses(vdir: Path) -> list[dict]:
    """The variant's responses in cache order (matched by id), so per-response arrays line up."""
    from .cache.reader import read_response_meta

    rows = {r["id"]: r for r in (json.loads(l) for l in (vdir / "responses.jsonl").read_text().splitlines() if l.strip())}
    return [rows[str(m["id"])] for m in read_response_meta(vdir / "cache")]


def _evaluate(problems: list[Problem], responses: list[dict]) -> list[bool]:
    """Correctness of each response against the generator's answer (evaluation only)."""
    by_id = {p.id: p for p in problems}
    return [is_correct(by_id[r["problem_id"]], r["response"]) for r in responses]


def run_variant(out: Path, name: str, family: str, lam: float | None, problems: list[Problem], cfg: DemoConfig) -> VariantResult:
    """Run (or resume) one variant; the result is saved to ``OUT/variants/<name>/result.json``."""
    from .models.loader import load_model
    from .weights_io import save_weights

    vdir = out / "variants" / name
    result_path = vdir / "result.json"
    if result_path.exists():
        return VariantResult(**json.loads(result_path.read_text()))
    vdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = load_model(str(_model_dir(out, name, lam)))
    responses = _generate(model, problems, cfg, vdir / "responses.jsonl")
    _capture(model, responses, cfg, vdir / "cache")
    del model
    cache, weights, gmf, segs = _nex(vdir / "cache")
    save_weights(weights, vdir / "weights.npz")
    responses = _cache_responses(vdir)
    correct = _evaluate(problems, responses)
    texts = [r["response"] for r in responses]
    res = VariantResult(
        name=name,
        family=family,
        lam=float(lam) if lam is not None else float(MIXTURE_FAMILY[name]),
        accuracy=float(np.mean(correct)),
        nex_score=float(np.nanmean(gmf)) if np.isfinite(gmf).any() else float("nan"),
        mean_e_segments=float(np.mean(segs)),
        thinking_share=float(np.mean([t.split()[:1] == ["try"] for t in texts])),
        mean_tokens=float(np.mean([len(t.split()) for t in texts])),
        n_responses=len(responses),
        n_segmented=int(sum(s > 0 for s in segs)),
        seconds=round(time.perf_counter() - t0, 2),
        gmf=[None if not math.isfinite(g) else float(g) for g in gmf],  # type: ignore[misc]
        e_segments=segs,
        correct=correct,
    )
    write_text(result_path, json.dumps(dataclasses.asdict(res), sort_keys=True) + "\n")
    return res


# ------------------------------------------------------------------------------------- analysis


def row_entropies(cache_path: Path, row_tokens: int) -> list[np.ndarray]:
    """Mean next-token entropy of each row of each response (rows as the cache cut them)."""
    from .cache.reader import open_cache
    from .cache.streams import open_stream

    cache = open_cache(cache_path)
    ptr, arrays = open_stream(cache_path, "tokens")
    ent = np.asarray(arrays["entropy"], dtype=np.float64)
    out = []
    for i in range(cache.n_responses):
        e = ent[ptr[i] : ptr[i + 1]]
        start, stop = cache.response_rows(i)
        n_tok = np.diff(np.asarray(cache.token_row_ptr[start : stop + 1], dtype=np.int64))
        edges = np.concatenate([[0], np.cumsum(n_tok)])
        if edges[-1] != len(e):  # rows and the token stream must cover the same tokens
            raise ConfigError(f"cache {cache_path}: response {i} has {len(e)} entropy values but its rows span {edges[-1]} tokens")
        out.append(np.array([e[a:b].mean() if b > a else np.nan for a, b in zip(edges[:-1], edges[1:])]))
    return out


def quadratic_fit(x: np.ndarray, y: np.ndarray) -> dict:
    """Least-squares ``y = a x^2 + b x + c``: ``r2``, ``optimum`` (the vertex when ``a < 0``, else
    None: no inverted U), and the coefficients."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or len(np.unique(x)) < 3:
        return {"r2": None, "optimum": None, "a": None, "b": None, "c": None, "n": int(len(x))}
    a, b, c = np.polyfit(x, y, 2)
    resid = y - (a * x**2 + b * x + c)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else None
    optimum = float(-b / (2 * a)) if a < 0 else None
    return {"r2": r2, "optimum": optimum, "a": float(a), "b": float(b), "c": float(c), "n": int(len(x))}


def _phase_agreement(out: Path, results: list[VariantResult], cfg: DemoConfig) -> dict:
    """HMM phases (row labels repeated over their tokens) against the generator's token labels."""
    from .phase_agreement import agreement, row_labels_to_tokens
    from .selection.nex_api import row_phases
    from .cache.reader import open_cache

    pred, gold = {}, {}
    for r in results:
        cache_path = out / "variants" / r.name / "cache"
        cache = open_cache(cache_path)
        for i, resp in enumerate(_cache_responses(out / "variants" / r.name)):
            if not resp["response"].startswith("try"):
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


def _plots(out: Path, merge: list[VariantResult], hi_rows: list[float], best: VariantResult, cfg: DemoConfig) -> list[str]:
    """The three PNG figures; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .cache.reader import open_cache
    from .core import NexParams, diagnose_response
    from .plots import plot_inverted_u, plot_nex_vs_accuracy, plot_token_neuron_curve, save_figure

    acc = [r.accuracy for r in merge]
    names = [f"{r.lam:g}" for r in merge]
    written = []
    fig = plot_nex_vs_accuracy([r.nex_score for r in merge], acc, names, title="SLERP family: NEX vs accuracy (labels: lambda)")
    save_figure(fig, out / "nex_vs_accuracy.png", command="nex demo")
    plt.close(fig)
    written.append("nex_vs_accuracy.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    plot_inverted_u(hi_rows, acc, ax=axes[0], xlabel="high-entropy rows per response", title="Accuracy vs entropy proxy")
    plot_inverted_u([r.mean_e_segments for r in merge], acc, ax=axes[1], xlabel="E segments per response", title="Accuracy vs E segments")
    fig.tight_layout()
    save_figure(fig, out / "inverted_u.png", command="nex demo")
    plt.close(fig)
    written.append("inverted_u.png")

    # one response of the best variant: the longest correct worked solution, preferring one in
    # which the HMM found an explore phase (so the figure shows both kinds of span)
    cache = open_cache(out / "variants" / best.name / "cache")
    responses = _cache_responses(out / "variants" / best.name)
    diags = [diagnose_response(cache, j, NexParams()) for j in range(len(responses))]
    order = sorted(range(len(responses)), key=lambda j: (not best.correct[j], diags[j].n_e_segments == 0,
                                                         -len(responses[j]["response"].split()), j))
    i = order[0]
    d = diags[i]
    tokens = responses[i]["response"].split()
    gold = np.array([l == "E" for l in label_tokens(tokens)])
    row_tok = np.asarray(d.tokens, dtype=np.int64)
    edges = np.concatenate([[0], np.cumsum(row_tok)])
    gold_rows = [bool(gold[a:b].mean() >= 0.5) if b > a and b <= len(gold) else False for a, b in zip(edges[:-1], edges[1:])]
    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    plot_token_neuron_curve(row_tok, d.n_new, d.labels, ax=axes[0], title=f"{best.name}, {responses[i]['id']}: HMM phases (E shaded)")
    plot_token_neuron_curve(row_tok, d.n_new, gold_rows, ax=axes[1], title="same response: generator's E/X labels (row majority)")
    fig.tight_layout()
    save_figure(fig, out / "token_neuron_curve.png", command="nex demo")
    plt.close(fig)
    written.append("token_neuron_curve.png")
    return written


def _selection(out: Path, best: VariantResult, merge: list[VariantResult], problems: list[Problem], cfg: DemoConfig) -> list[str]:
    """``selection.csv`` (best-of-N on the best variant's samples) and ``sample_efficiency.csv``
    (ranking the merge family from N unlabeled problems), both through :mod:`nex_interp.selection`."""
    from .cache.reader import open_cache, read_response_meta
    from .selection import write_selection_csv
    from .selection.pipeline import SelectConfig, select_best_of_n
    from .selection.sample_efficiency import Variant, sample_efficiency, write_sample_efficiency
    from .zoo.task import extract_answer

    by_id = {p.id: p for p in problems}

    def checker(row: dict) -> bool:  # evaluation only
        return is_correct(by_id[row["problem_id"]], row["response"])

    def extractor(text: str) -> str | None:
        ans = extract_answer(text)
        return None if ans is None else " ".join(map(str, ans))

    vdir = out / "variants" / best.name
    sel_cfg = SelectConfig(seed=cfg.seed, n_boot=1000)
    report, _ = select_best_of_n(vdir / "cache", vdir / "responses.jsonl", config=sel_cfg, checker=checker, extractor=extractor)
    write_selection_csv(report, out / "selection.csv", record("nex demo: best-of-N", config=sel_cfg, model=best.name, skipped=report.skipped))

    variants = []
    for r in merge:
        cache_path = out / "variants" / r.name / "cache"
        meta = read_response_meta(cache_path)
        variants.append(Variant(r.name, open_cache(cache_path), [str(m["problem_id"]) for m in meta], r.accuracy))
    grid = [n for n in cfg.selection_grid if n <= cfg.n_problems]
    df = sample_efficiency(variants, grid, seeds=cfg.se_seeds, seed=cfg.seed, progress=False)
    paths = write_sample_efficiency(df, out, config={"grid": grid, "seeds": cfg.se_seeds, "seed": cfg.seed, "variants": [r.name for r in merge]})
    return ["selection.csv", *[Path(p).name for p in paths.values()]]


def _print_table(merge: list[VariantResult], mixture: list[VariantResult], hi_rows: dict[str, float], summary: dict) -> None:
    head = f"{'variant':<12}{'lambda':>7}{'acc':>7}{'NEX':>8}{'E seg':>7}{'hi-ent':>8}{'think':>7}{'tokens':>8}"
    lines = ["", "SLERP family (instruct -> thinking)", head]
    for r in merge:
        lines.append(f"{r.name:<12}{r.lam:>7.2f}{r.accuracy:>7.3f}{r.nex_score:>8.3f}{r.mean_e_segments:>7.2f}{hi_rows.get(r.name, float('nan')):>8.2f}{r.thinking_share:>7.2f}{r.mean_tokens:>8.1f}")
    if mixture:
        lines += ["", "Data-mixture family (share of worked solutions)", head]
        for r in mixture:
            lines.append(f"{r.name:<12}{r.lam:>7.2f}{r.accuracy:>7.3f}{r.nex_score:>8.3f}{r.mean_e_segments:>7.2f}{hi_rows.get(r.name, float('nan')):>8.2f}{r.thinking_share:>7.2f}{r.mean_tokens:>8.1f}")
    c, u, p = summary["correlation"], summary["inverted_u"], summary["phase_agreement"]

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    lines += [
        "",
        f"NEX vs accuracy over {len(merge)} variants: Pearson r = {f(c['pearson_r'])}, Spearman rho = {f(c['spearman_rho'])}, Regret@1 = {f(c['regret_at_1'])}  (paper: r = 0.886 over 19 Qwen3-4B variants)",
        f"inverted U (quadratic fit of accuracy): entropy proxy R^2 = {f(u['high_entropy_rows']['r2'])}, optimum {f(u['high_entropy_rows']['optimum'])}; "
        f"E segments R^2 = {f(u['mean_e_segments']['r2'])}, optimum {f(u['mean_e_segments']['optimum'])}  (paper: R^2 = 0.90)",
        f"HMM phases vs generator labels: Cohen's kappa = {f(p['cohen_kappa'])}, boundary F1 = {f(p['boundary_f1'])}",
    ]
    print("\n".join(lines))


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def run_demo(out: str | Path, cfg: DemoConfig | None = None, progress: bool = True) -> dict:
    """Run the demo into ``out`` (resuming finished variants); returns the summary dict."""
    from tqdm import tqdm

    from .selection.ranking import rank_metric

    cfg = cfg or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "demo_config.json"
    cfg_dict = json.loads(dumps(cfg))
    if cfg_path.exists() and json.loads(cfg_path.read_text()) != cfg_dict:
        raise ConfigError(f"{out} holds a demo run with other settings ({cfg_path}); give another -o or remove that directory")
    write_text(cfg_path, json.dumps(cfg_dict, indent=2, sort_keys=True) + "\n")
    t0 = time.perf_counter()
    problems = _problems(cfg)
    jobs: list[tuple[str, str, float | None]] = [(f"slerp{lam:.2f}", "slerp", lam) for lam in cfg.lambdas()]
    if cfg.mixtures:
        jobs += [(name, "mixture", None) for name, share in MIXTURE_FAMILY.items() if 0.0 < share < 1.0]
    results: dict[str, VariantResult] = {}
    bar = tqdm(jobs, desc="nex demo", unit="variant", disable=not progress)
    for name, family, lam in bar:
        bar.set_postfix_str(name)
        results[name] = run_variant(out, name, family, lam, problems, cfg)
    merge = [results[n] for n, fam, _ in jobs if fam == "slerp"]
    endpoints = {0.0: merge[0], 1.0: merge[-1]}
    mixture = []
    if cfg.mixtures:
        for name, share in MIXTURE_FAMILY.items():
            r = endpoints.get(share) or results[name]
            mixture.append(dataclasses.replace(r, name=name, family="mixture", lam=share))

    # entropy exploration proxy: one threshold for the whole merge family
    ents = {r.name: row_entropies(out / "variants" / r.name / "cache", cfg.row_tokens) for r in merge + [results[m.name] for m in mixture if m.name in results]}
    pooled = np.concatenate([np.concatenate(v) if v else np.array([]) for n, v in ents.items() if n in {r.name for r in merge}])
    threshold = float(np.nanquantile(pooled, cfg.high_entropy_quantile))
    hi = {n: float(np.mean([np.nansum(e > threshold) for e in v])) for n, v in ents.items()}
    for m in mixture:
        src = endpoints.get(m.lam)
        hi[m.name] = hi[src.name] if src is not None else hi[m.name]

    accuracy = {r.name: r.accuracy for r in merge}
    rank = rank_metric("nex", {r.name: r.nex_score for r in merge}, accuracy, higher_is_better=True)
    best = max(merge, key=lambda r: (r.accuracy, r.nex_score if math.isfinite(r.nex_score) else -1.0))
    summary = {
        "variants": [
            {"name": r.name, "lambda": r.lam, "accuracy": r.accuracy, "nex_score": r.nex_score,
             "mean_e_segments": r.mean_e_segments, "high_entropy_rows": hi[r.name]}
            for r in merge
        ],
        "correlation": {"pearson_r": rank.pearson_r, "spearman_rho": rank.spearman_rho, "regret_at_1": rank.regret_at_1},
        "inverted_u": {
            "high_entropy_rows": quadratic_fit(np.array([hi[r.name] for r in merge]), np.array([r.accuracy for r in merge])),
            "mean_e_segments": quadratic_fit(np.array([r.mean_e_segments for r in merge]), np.array([r.accuracy for r in merge])),
        },
        "phase_agreement": _phase_agreement(out, merge, cfg),
        "mixture_family": [
            {"name": r.name, "thinking_fraction": r.lam, "accuracy": r.accuracy, "nex_score": r.nex_score,
             "mean_e_segments": r.mean_e_segments, "high_entropy_rows": hi[r.name]}
            for r in mixture
        ],
    }
    summary = _clean(summary)

    from .table import neuron_table, write_table
    from .weights_io import load_weights

    # the most accurate variant whose NEX credited any neuron (brief answers credit none)
    table_variant = best
    for r in sorted(merge, key=lambda r: (-r.accuracy, -(r.nex_score if math.isfinite(r.nex_score) else -1.0))):
        if len(load_weights(out / "variants" / r.name / "weights.npz").index):
            table_variant = r
            break
    table = neuron_table(load_weights(out / "variants" / table_variant.name / "weights.npz"), top=50)
    write_table(table, out / "neuron_table.csv", "csv")
    write_table(table, out / "neuron_table.md", "markdown")
    plots = _plots(out, merge, [hi[r.name] for r in merge], best, cfg)
    extra = _selection(out, best, merge, problems, cfg)
    details = {
        "best_variant": best.name,
        "nex_pick": rank.picked,
        "table_variant": table_variant.name,
        "high_entropy_threshold": threshold,
        "variants": [dataclasses.asdict(r) | {"high_entropy_rows": hi[r.name]} for r in merge],
        "seconds": round(time.perf_counter() - t0, 1),
        "outputs": ["summary.json", "details.json", "neuron_table.csv", "neuron_table.md", *plots, *extra],
    }
    for name, obj in (("summary.json", summary), ("details.json", _clean(details))):
        write_text(out / name, json.dumps(obj, indent=2, sort_keys=True) + "\n")
        write_sidecar(out / name, record("nex demo", config=cfg, model={"a": "zoo:instruct", "b": "zoo:thinking", "method": "slerp"}))
    _print_table(merge, mixture, hi, summary)
    print(f"\nbest variant by accuracy: {best.name}; NEX's pick: {rank.picked}; outputs in {out} ({details['seconds']:.0f} s)")
    return summary
