"""The whole experiment: every variant (:func:`~.variant.run_variant`), then the analyses across
them, ``summary.json``/``details.json``, the neuron table, the figures and a printed summary."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path


from ...atomic import write_text
from ...errors import ConfigError
from ...provenance import dumps, record, write_sidecar
from .. import MIXTURE_FAMILY
from ..plan import MERGE_ENDPOINTS
from ...stats import quadratic_fit
from .analysis import family_phase_agreement, high_entropy_rows, row_entropies, selection_outputs
from .config import DemoConfig, VariantResult
from .figures import demo_figures
from .preconditions import diagnostics, preconditions
from .variant import demo_problems, run_variant, variant_dir


def variant_jobs(cfg: DemoConfig) -> list[tuple[str, str, float | None]]:
    """``(name, family, lambda)`` of every variant a run holds: the SLERP merges, then (with
    ``cfg.mixtures``) the members of the data-mixture family that are not a merge endpoint (the
    family's ``over_mid`` is the merge family's ``thinking``, lambda 1)."""
    jobs: list[tuple[str, str, float | None]] = [(f"slerp{lam:.2f}", "slerp", lam) for lam in cfg.lambdas()]
    if cfg.mixtures:
        jobs += [(name, "mixture", None) for name in MIXTURE_FAMILY if name not in MERGE_ENDPOINTS]
    return jobs


#: a variant "writes worked solutions" when at least this share of its responses are searches
WORKED_VARIANT_SHARE = 0.5


def within_family(merge: list[VariantResult]) -> dict:
    """NEX against accuracy among the merge variants that write worked solutions (a brief answer
    credits no neuron, so the family-wide correlation can come from brief answers alone)."""
    from ...selection.ranking import rank_metric

    worked = [r for r in merge if r.thinking_share >= WORKED_VARIANT_SHARE and math.isfinite(r.nex_score)]
    out = {"min_worked_share": WORKED_VARIANT_SHARE, "variants": [r.name for r in worked],
           "pearson_r": None, "spearman_rho": None, "regret_at_1": None}
    if len(worked) >= 3:
        rank = rank_metric("nex", {r.name: r.nex_score for r in worked}, {r.name: r.accuracy for r in worked}, higher_is_better=True)
        out.update(pearson_r=rank.pearson_r, spearman_rho=rank.spearman_rho, regret_at_1=rank.regret_at_1)
    return out


def print_summary_table(merge: list[VariantResult], mixture: list[VariantResult], hi_rows: dict[str, float], summary: dict) -> None:
    """Print the per-variant table and the headline numbers of a run."""
    head = f"{'variant':<12}{'lambda':>7}{'acc':>7}{'NEX':>8}{'E seg':>7}{'hi-ent':>8}{'think':>7}{'tokens':>8}"
    lines = ["", "SLERP family (instruct -> thinking)", head]
    for r in merge:
        lines.append(f"{r.name:<12}{r.lam:>7.2f}{r.accuracy:>7.3f}{r.nex_score:>8.3f}{r.mean_e_segments:>7.2f}{hi_rows.get(r.name, float('nan')):>8.2f}{r.thinking_share:>7.2f}{r.mean_tokens:>8.1f}")
    if mixture:
        lines += ["", "Data-mixture family (under -> over: position on the exploration axis)", head]
        for r in mixture:
            lines.append(f"{r.name:<12}{r.lam:>7.2f}{r.accuracy:>7.3f}{r.nex_score:>8.3f}{r.mean_e_segments:>7.2f}{hi_rows.get(r.name, float('nan')):>8.2f}{r.thinking_share:>7.2f}{r.mean_tokens:>8.1f}")
    c, u, p = summary["correlation"], summary["inverted_u"], summary["phase_agreement"]

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    w, pre = summary["within_family"], summary["preconditions"]
    lines += [
        "",
        "preconditions (worked solutions of the merge family): " + ", ".join(
            f"{k} {pre.get(k)} ({'met' if ok else 'NOT met'})" for k, ok in pre.get("met", {}).items()),
        f"NEX vs accuracy among the {len(w['variants'])} variants that write worked solutions: Pearson r = {f(w['pearson_r'])}",
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

    from ...selection.ranking import rank_metric

    cfg = cfg or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "demo_config.json"
    cfg_dict = json.loads(dumps(cfg))
    if cfg_path.exists() and json.loads(cfg_path.read_text()) != cfg_dict:
        raise ConfigError(f"{out} holds a demo run with other settings ({cfg_path}); give another -o or remove that directory")
    write_text(cfg_path, json.dumps(cfg_dict, indent=2, sort_keys=True) + "\n")
    t0 = time.perf_counter()
    problems = demo_problems(cfg)
    jobs = variant_jobs(cfg)
    results: dict[str, VariantResult] = {}
    bar = tqdm(jobs, desc="nex demo", unit="variant", disable=not progress)
    for name, family, lam in bar:
        bar.set_postfix_str(name)
        results[name] = run_variant(out, name, family, lam, problems, cfg)
    merge = [results[n] for n, fam, _ in jobs if fam == "slerp"]
    endpoints = dict(zip(MERGE_ENDPOINTS, (merge[0], merge[-1])))
    mixture = []
    if cfg.mixtures:
        for name, position in MIXTURE_FAMILY.items():
            r = endpoints.get(name) or results[name]
            mixture.append(dataclasses.replace(r, name=name, family="mixture", lam=position))

    # entropy exploration proxy: one threshold for the whole merge family
    ents = {r.name: row_entropies(variant_dir(out, r.name) / "cache") for r in merge + [results[m.name] for m in mixture if m.name in results]}
    hi, threshold = high_entropy_rows(ents, [r.name for r in merge], cfg.high_entropy_quantile)
    for m in mixture:
        src = endpoints.get(m.name)
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
            "high_entropy_rows": quadratic_fit([hi[r.name] for r in merge], [r.accuracy for r in merge]).to_dict(),
            "mean_e_segments": quadratic_fit([r.mean_e_segments for r in merge], [r.accuracy for r in merge]).to_dict(),
        },
        "phase_agreement": family_phase_agreement(out, merge, cfg),
        "mixture_family": [
            {"name": r.name, "thinking_fraction": r.lam, "exploration_position": r.lam, "accuracy": r.accuracy,
             "nex_score": r.nex_score, "mean_e_segments": r.mean_e_segments, "high_entropy_rows": hi[r.name],
             "worked_share": r.thinking_share, "mean_opens": r.mean_opens, "mean_tokens": r.mean_tokens}
            for r in mixture
        ],
        "within_family": within_family(merge),
        "preconditions": preconditions(out, merge, cfg),
        "diagnostics": diagnostics(out, merge + [results[m.name] for m in mixture if m.name in results and m.name not in endpoints]),
    }
    if len(mixture) >= 3:
        summary["inverted_u_mixture"] = {
            "high_entropy_rows": quadratic_fit([hi[r.name] for r in mixture], [r.accuracy for r in mixture]).to_dict(),
            "mean_e_segments": quadratic_fit([r.mean_e_segments for r in mixture], [r.accuracy for r in mixture]).to_dict(),
            "mean_opens": quadratic_fit([r.mean_opens for r in mixture], [r.accuracy for r in mixture]).to_dict(),
        }
    summary = _clean(summary)

    from ...table import neuron_table, write_table
    from ...weights_io import load_weights

    # the most accurate variant whose NEX credited any neuron (brief answers credit none)
    table_variant = best
    for r in sorted(merge, key=lambda r: (-r.accuracy, -(r.nex_score if math.isfinite(r.nex_score) else -1.0))):
        if len(load_weights(variant_dir(out, r.name) / "weights.npz").index):
            table_variant = r
            break
    table = neuron_table(load_weights(variant_dir(out, table_variant.name) / "weights.npz"), top=50)
    write_table(table, out / "neuron_table.csv", "csv")
    write_table(table, out / "neuron_table.md", "markdown")
    plots = demo_figures(out, merge, [hi[r.name] for r in merge], best, cfg)
    extra = selection_outputs(out, best, merge, problems, cfg)
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
    print_summary_table(merge, mixture, hi, summary)
    print(f"\nbest variant by accuracy: {best.name}; NEX's pick: {rank.picked}; outputs in {out} ({details['seconds']:.0f} s)")
    return summary
