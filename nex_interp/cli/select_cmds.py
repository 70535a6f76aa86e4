"""Selection and evaluation commands: ``nex select``, ``nex rank``, ``nex annotate export|agree``, ``nex sweep``.

Thin shells over :mod:`nex_interp.selection`, :mod:`nex_interp.annotation` (with
:mod:`nex_interp.phase_agreement`) and :mod:`nex_interp.sensitivity`. None imports torch or transformers (``nex annotate export
--tokenizer`` loads a tokenizer lazily).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..errors import ConfigError, NexError
from .nex_params import add_nex_params, nex_params


# --------------------------------------------------------------------------- helpers
def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


#: files whose presence marks a directory as an earlier output of these commands (safe to replace)
_OUR_OUTPUTS = ("selection.csv", "ranking.csv", "agreement.json", "sweep.csv", "sample_efficiency.csv")


def _check_outdir(out: Path, *inputs: Path) -> None:
    from .common import check_outdir

    check_outdir(out, *inputs, ours=_OUR_OUTPUTS)


def _row_options(args: argparse.Namespace) -> dict:
    from ..selection.answers import load_callable

    opts: dict = {}
    if getattr(args, "answer_field", None):
        opts["answer_field"] = args.answer_field
    if getattr(args, "reference_field", None):
        opts["reference_field"] = args.reference_field
    if getattr(args, "extractor", None):
        opts["extractor"] = load_callable(args.extractor, "--extractor")
    if getattr(args, "checker", None):
        opts["checker"] = load_callable(args.checker, "--checker")
    return opts


def _add_answer_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("answers and grading")
    g.add_argument("--answer-field", help="field holding each response's already extracted answer (default: extract from the text)")
    g.add_argument("--reference-field", help="field holding the reference answer (default: the first of reference_answer, reference, gold, target, answer)")
    g.add_argument("--extractor", metavar="MODULE:FUNCTION", help="answer extractor: text -> answer (default: boxed / 'ans X' / 'answer is X' / last number)")
    g.add_argument("--checker", metavar="MODULE:FUNCTION", help="grader: response row -> true/false (overrides the 'correct' field)")


def _fmt(x) -> str:
    if isinstance(x, float):
        return "  n/a" if math.isnan(x) else f"{x:.3f}"
    return str(x)


def _parse_labelled(spec: str) -> tuple[str | None, str | None, str]:
    """``[VARIANT[@RULE]=]PATH`` -> (variant, rule, path)."""
    label, sep, path = spec.partition("=")
    if not sep:
        return None, None, spec
    variant, _, rule = label.partition("@")
    return (variant or None), (rule or None), path


def _read_accuracy(path: str) -> dict[str, float]:
    from ..selection.ranking import read_accuracy

    return read_accuracy(path)


# --------------------------------------------------------------------------- nex select
def cmd_select(args: argparse.Namespace) -> int:
    """Best-of-N selection on a cache of N sampled responses per problem: every method picks one
    response per problem; with correctness known, reports accuracy with bootstrap CIs.

    Writes OUT/selection.csv (method, accuracy, ci_low, ci_high, n_problems, uses_labels, citation),
    OUT/picks.csv (each method's pick per problem) and OUT/scores.csv (each method's per-response value).
    """
    from ..provenance import record, write_sidecar
    from ..selection import get_method, method_names
    from ..selection.best_of_n import write_method_scores_csv, write_picks_csv, write_selection_csv
    from ..selection.pipeline import SelectConfig, select_best_of_n
    from ..selection.registry import SelectionOptions

    if args.list_methods:
        for name in method_names():
            m = get_method(name)
            print(f"{name:20s} {m.summary}\n{'':20s} [{m.citation}]")
        return 0
    if args.cache is None or args.output is None:
        raise ConfigError("nex select needs CACHE and -o OUT (or --list-methods)")
    methods = _names(args.methods) if args.methods else None
    for m in methods or []:
        get_method(m)
    cache, out = Path(args.cache), Path(args.output)
    inputs = [cache] + ([Path(args.responses)] if args.responses else [])
    _check_outdir(out, *inputs)
    config = SelectConfig(
        rho=args.rho, min_run=args.min_run, deepconf_window=args.deepconf_window,
        n_boot=args.n_boot, seed=args.seed, calibration_weights=args.calibration_weights, calibration_cache=args.calibration_cache,
    )
    report, cands = select_best_of_n(cache, args.responses, methods, config, progress=True, **_row_options(args))
    rec = record("nex select", config=config.to_dict(), inputs={"cache": str(cache), "responses": args.responses},
                 skipped=report.skipped, n_candidates=len(cands), n_problems=len(cands.problems()),
                 labelled=cands.correct is not None)
    out.mkdir(parents=True, exist_ok=True)
    write_selection_csv(report, out / "selection.csv", rec)
    write_picks_csv(report, out / "picks.csv", rec)
    write_method_scores_csv(report, cands, out / "scores.csv", SelectionOptions(config.deepconf_window), rec)
    write_sidecar(out, rec)

    n_prob = len(cands.problems())
    if cands.meta.get("n_missing_in_cache"):
        print(f"note: {cands.meta['n_missing_in_cache']} responses are not in the cache: no method that reads the cache can pick them")
    if cands.answers is None or all(a is None for a in cands.answers):
        print("note: no answers could be extracted (a cache stores no response text): pass --responses FILE to vote and grade")
    print(f"{len(cands)} responses, {n_prob} problems{'' if cands.correct is not None else ' (no correctness labels: picks only)'}")
    print(f"{'method':20s} {'accuracy':>8s} {'95% CI':>15s}")
    for r in report.results:
        tag = "  (uses labels)" if r.uses_labels else ""
        print(f"{r.method:20s} {_fmt(r.accuracy):>8s} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]{tag}")
    for name, why in report.skipped.items():
        print(f"{name:20s} skipped: {why}")
    print(f"wrote {out / 'selection.csv'}")
    return 0


# --------------------------------------------------------------------------- nex rank
def cmd_rank(args: argparse.Namespace) -> int:
    """Rank model variants without labels: each variant's NEX score (self-calibrated) and the
    output-side baselines, correlated with the variants' accuracy (Pearson, Spearman, Kendall),
    with Regret@1 and top-1 hit. Optionally the sample-efficiency curve (--sample-efficiency).

    Writes OUT/variants.csv, OUT/ranking.csv and, with --sample-efficiency,
    OUT/sample_efficiency.csv and OUT/sample_efficiency.png.
    """
    from ..atomic import atomic_path
    from ..provenance import record, write_sidecar
    from ..selection.pipeline import rank_variants

    out = Path(args.output)
    variants: dict[str, str] = {}
    for spec in args.variants:
        name, _, path = _parse_labelled(spec)
        name = name or Path(path).name
        if name in variants:
            raise ConfigError(f"variant name {name!r} given twice: label caches as NAME=CACHE")
        variants[name] = path
    if len(variants) < 2:
        raise ConfigError("nex rank needs at least two variants (NAME=CACHE ...)")
    _check_outdir(out, *map(Path, variants.values()))
    params = nex_params(args)
    responses = {}
    for spec in args.responses or []:
        name, _, path = _parse_labelled(spec)
        if name not in variants:
            raise ConfigError(f"--responses {spec!r}: give NAME=FILE with NAME one of the variants ({', '.join(variants)})")
        responses[name] = path
    acc_given = None
    if args.accuracy:
        acc_given = _read_accuracy(args.accuracy)
        missing = [v for v in variants if v not in acc_given]
        if missing:
            raise ConfigError(f"accuracy file {args.accuracy} has no accuracy for variant(s) {', '.join(missing)}")
    result = rank_variants(variants, acc_given, params, args.entropy_threshold, progress=True, responses=responses,
                           **_row_options(args))
    frame, ranking, cands_by, threshold = result.variants, result.ranking, result.candidates, result.entropy_threshold
    accuracy = dict(zip(frame["variant"], frame["accuracy"]))
    config = {"rho": args.rho, "min_run": args.min_run, "entropy_threshold": threshold}
    rec = record("nex rank", config=config, inputs={"variants": variants, "accuracy": args.accuracy})
    out.mkdir(parents=True, exist_ok=True)
    for name, df in (("variants.csv", frame), ("ranking.csv", ranking)):
        with atomic_path(out / name) as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
        write_sidecar(out / name, rec)
    print(frame.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print()
    print(ranking.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if args.sample_efficiency:
        from ..cache.reader import open_cache
        from ..selection.sample_efficiency import Variant, fit_curves, nex_subset_scorer, sample_efficiency, write_sample_efficiency

        vs = [Variant(n, open_cache(p), cands_by[n].problem_ids, accuracy[n]) for n, p in variants.items()]
        df = sample_efficiency(vs, args.sample_efficiency, seeds=args.seeds, scorer=nex_subset_scorer(params), seed=args.seed)
        paths = write_sample_efficiency(df, out, config={**config, "grid": list(args.sample_efficiency), "seeds": args.seeds})
        for col, fit in fit_curves(df).items():
            shown = f"a={fit.a:.4g}, b={fit.b:.4g}, tau={fit.tau:.4g} problems, R^2={fit.r2:.3f}" if fit.ok else f"no fit ({fit.message})"
            print(f"saturation fit of {col}: y(N) = a - b*exp(-N/tau), {shown}")
        print(f"wrote {paths['csv']}")
    write_sidecar(out, rec)
    print(f"wrote {out / 'ranking.csv'}")
    return 0


# --------------------------------------------------------------------------- nex annotate
def cmd_annotate_export(args: argparse.Namespace) -> int:
    """Export a cache's responses for human E/X annotation (JSONL): text, tokens with character
    offsets (with --tokenizer, or the model the cache records), the cache's rows as token ranges,
    and an empty 'spans' list to fill in (unit 'char' or 'token')."""
    from ..annotation import cache_model_spec, export_for_annotation, token_ids_stream, tokenizer_for_model
    from ..cache.reader import open_cache
    from ..provenance import record, write_sidecar
    from ..selection.candidates import read_responses

    cache_path, out = Path(args.cache), Path(args.output)
    if out.is_dir():
        raise ConfigError(f"output {out} is a directory: give a file name for -o")
    cache = open_cache(cache_path)
    texts = {str(r.get("id")): r.get("response") for r in read_responses(args.responses)} if args.responses else {}
    has_ids = token_ids_stream(cache) is not None
    if args.tokenizer and not has_ids:
        raise ConfigError(f"cache {cache_path} stores no token ids (tokens/ids): --tokenizer cannot render its tokens; export without it")
    spec = args.tokenizer or cache_model_spec(cache)
    tokenizer = None
    if spec and has_ids:
        try:
            tokenizer = tokenizer_for_model(spec)
        except NexError as e:
            if args.tokenizer:
                raise
            print(f"note: the cache's model {spec!r} gives no tokenizer here ({e}); exporting token units without token text")
    n = export_for_annotation(cache, out, texts=texts, tokenizer=tokenizer, limit=args.limit)
    write_sidecar(out, record("nex annotate export", inputs={"cache": str(cache_path), "responses": args.responses}, tokenizer=spec))
    print(f"exported {n} responses for annotation to {out}" + ("" if tokenizer else " (no tokenizer: label spans in token units)"))
    return 0


def cmd_annotate_agree(args: argparse.Namespace) -> int:
    """Agreement of the HMM's E/X phases (rows mapped to tokens) with annotations: Cohen's kappa
    over tokens and boundary F1 within a tolerance in tokens. Writes OUT/agreement.json and
    OUT/agreement_per_response.csv."""
    from ..annotation import agree_with_annotations
    from ..atomic import atomic_path, write_text
    from ..cache.reader import open_cache
    from ..phase_agreement import read_annotations
    from ..provenance import record, write_sidecar

    cache_path, out = Path(args.cache), Path(args.output)
    _check_outdir(out, cache_path, Path(args.annotations))
    if args.tolerance < 0:
        raise ConfigError(f"--tolerance must be >= 0 tokens, got {args.tolerance}")
    cache = open_cache(cache_path)
    anns = read_annotations(args.annotations)
    params = nex_params(args)
    rep, summary = agree_with_annotations(cache, anns, params, args.tolerance)
    unknown = summary["unmatched_annotations"]
    rec = record("nex annotate agree", config={"tolerance": args.tolerance, **params.to_dict()},
                 inputs={"cache": str(cache_path), "annotations": args.annotations})
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "agreement.json", json.dumps(summary, indent=2) + "\n")
    write_sidecar(out / "agreement.json", rec)
    import pandas as pd

    with atomic_path(out / "agreement_per_response.csv") as tmp:
        pd.DataFrame(rep.per_response).to_csv(tmp, index=False, float_format="%.6g")
    write_sidecar(out, rec)
    print(f"{rep.n_responses} responses, {rep.n_tokens} tokens: Cohen's kappa {_fmt(rep.cohen_kappa)}, "
          f"boundary F1 {_fmt(rep.boundary_f1)} (tolerance {rep.tolerance} tokens; P {_fmt(rep.boundary_precision)}, "
          f"R {_fmt(rep.boundary_recall)})" + (f"; {unknown} annotations name responses not in the cache" if unknown else ""))
    return 0


# --------------------------------------------------------------------------- nex sweep
def cmd_sweep(args: argparse.Namespace) -> int:
    """Sensitivity of NEX scores and rankings to rho, min_run, row size (merging adjacent rows)
    and the activation rule (several caches of the same responses). CACHE is
    [VARIANT[@RULE]=]PATH; unlabelled caches take the variant and rule from their manifest.
    Writes OUT/sweep.csv, OUT/sweep_scores.csv and OUT/sweep.md."""
    from ..sensitivity import SweepSpec, accuracy_from_caches, run_sweep, sweep_input, write_sweep

    out = Path(args.output)
    items = []
    for spec in args.caches:
        variant, rule, path = _parse_labelled(spec)
        items.append(sweep_input(path, variant, rule))
    _check_outdir(out, *(Path(i.path) for i in items))
    spec = SweepSpec(args.rho, args.min_run, args.row_multiple, args.design)
    if any(m < 1 for m in spec.row_multiples):
        raise ConfigError("--row-multiple values must be positive integers")
    # default: from the caches' own response metadata, when every response is graded
    accuracy = _read_accuracy(args.accuracy) if args.accuracy else {}
    if not accuracy:
        accuracy = accuracy_from_caches(items)
    result = run_sweep(items, spec, accuracy)
    paths = write_sweep(result, out, config={"rhos": spec.rhos, "min_runs": spec.min_runs, "row_multiples": spec.row_multiples,
                                             "design": spec.design}, inputs={"caches": [i.path for i in items]})
    print(paths["markdown"].read_text())
    print(f"wrote {paths['table']}")
    return 0


# --------------------------------------------------------------------------- registration
def register(sub) -> None:
    """Add this group's subcommands to the nex parser."""
    p = sub.add_parser("select", help="best-of-N selection: NEX against the baselines, accuracy with bootstrap CIs",
                       description=cmd_select.__doc__)
    p.add_argument("cache", nargs="?", help="cache of the candidate responses")
    p.add_argument("--responses", help="responses JSONL (default: the cache's own responses.jsonl)")
    p.add_argument("-o", "--output", help="output directory")
    p.add_argument("--methods", help="comma-separated methods (default: all that the inputs allow; see --list-methods)")
    p.add_argument("--list-methods", action="store_true", help="list the registered methods with their citations and exit")
    p.add_argument("--calibration-weights", help="weights file for nex_gmf_calibrated (default: a 2-fold split of the problems)")
    p.add_argument("--calibration-cache", help="separate unlabeled cache to learn nex_gmf_calibrated's weights on")
    p.add_argument("--deepconf-window", type=int, default=2048, help="DeepConf group size in tokens (default 2048, as Fu et al.)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples over problems (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of the calibration split (default 0)")
    add_nex_params(p)
    _add_answer_options(p)
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("rank", help="rank model variants without labels; correlation with accuracy, Regret@1",
                       description=cmd_rank.__doc__)
    p.add_argument("variants", nargs="+", metavar="[NAME=]CACHE", help="one cache per variant")
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--accuracy", help="JSON {variant: accuracy} or CSV (variant, accuracy); default: from the variants' graded responses")
    p.add_argument("--responses", action="append", metavar="NAME=FILE",
                   help="a variant's responses JSONL (its text, for grading by reference answer or --checker); repeat per variant")
    p.add_argument("--entropy-threshold", type=float, default=None,
                   help="row entropy above which a row counts as high-entropy (default: pooled 75th percentile)")
    p.add_argument("--sample-efficiency", type=_ints, metavar="N1,N2,...", help="also run the sample-efficiency curve on this grid of problem counts")
    p.add_argument("--seeds", type=int, default=10, help="draws per problem count for --sample-efficiency (default 10)")
    p.add_argument("--seed", type=int, default=0, help="base seed of the draws (default 0)")
    add_nex_params(p)
    _add_answer_options(p)
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("annotate", help="E/X annotations: export responses for annotators, agreement with the HMM phases",
                       description="Export responses for E/X annotation, or measure the HMM phases' agreement with annotations.")
    asub = p.add_subparsers(dest="annotate_command", metavar="{export,agree}", parser_class=type(p))
    asub.required = True
    e = asub.add_parser("export", help="write responses as JSONL for annotators", description=cmd_annotate_export.__doc__)
    e.add_argument("cache")
    e.add_argument("-o", "--output", required=True, help="output JSONL file")
    e.add_argument("--responses", help="responses JSONL (for the text when no tokenizer is used)")
    e.add_argument("--tokenizer", help="model spec whose tokenizer renders the tokens (default: the model the cache records)")
    e.add_argument("--limit", type=int, default=None, help="export at most this many responses")
    e.set_defaults(func=cmd_annotate_export)
    a = asub.add_parser("agree", help="Cohen's kappa and boundary F1 of HMM phases against annotations",
                        description=cmd_annotate_agree.__doc__)
    a.add_argument("cache")
    a.add_argument("--annotations", required=True, help="annotation JSONL (id, unit, spans)")
    a.add_argument("-o", "--output", required=True, help="output directory")
    a.add_argument("--tolerance", type=int, default=2, help="boundary match tolerance in tokens (default 2)")
    add_nex_params(a)
    a.set_defaults(func=cmd_annotate_agree)

    p = sub.add_parser("sweep", help="sensitivity of scores and rankings to rho, min_run, row size and activation rule",
                       description=cmd_sweep.__doc__)
    p.add_argument("caches", nargs="+", metavar="[VARIANT[@RULE]=]CACHE")
    p.add_argument("-o", "--output", required=True, help="output directory")
    from ..sensitivity import SweepSpec

    grid = SweepSpec()  # the sweep's default grids (the default setting itself is NexParams())

    def listed(values) -> str:
        return ",".join(f"{v:g}" for v in values)

    p.add_argument("--rho", type=_floats, default=grid.rhos, help=f"rho values swept (default {listed(grid.rhos)})")
    p.add_argument("--min-run", type=_ints, default=grid.min_runs, help=f"min_run values swept (default {listed(grid.min_runs)})")
    p.add_argument("--row-multiple", type=_ints, default=grid.row_multiples,
                   help=f"row sizes swept, as multiples of the captured one (default {listed(grid.row_multiples)})")
    p.add_argument("--design", choices=("oat", "grid"), default="oat", help="one factor at a time around the default (oat) or all combinations (grid)")
    p.add_argument("--accuracy", help="JSON {variant: accuracy} or CSV (variant, accuracy) to add correlation and Regret@1")
    p.set_defaults(func=cmd_sweep)
