"""Core commands: ``nex train``, ``nex score``, ``nex run``, ``nex table``.

Thin shells over the library (:mod:`nex_interp.cache.reader`, :mod:`nex_interp.core`,
:mod:`nex_interp.weights_io`, :mod:`nex_interp.table`). None of them imports torch or transformers.
Outputs are written to a temporary path and renamed into place, with provenance beside them.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..errors import ConfigError, WeightsError

SCORES_NAME = "scores.csv"
SUMMARY_NAME = "summary.json"
WEIGHTS_NAME = "weights.npz"
#: seconds of learning after which ``nex train``/``nex run`` show a progress bar
PROGRESS_AFTER_S = 1.0


# --------------------------------------------------------------------------- helpers
def _params(args: argparse.Namespace):
    from .nex_params import nex_params

    return nex_params(args)


def _model_identity(manifest: dict) -> dict:
    """The caller's manifest fields of a cache (model identity, rule, row size, ...)."""
    from ..cache.manifest import RESERVED_FIELDS

    return {k: v for k, v in manifest.items() if k not in RESERVED_FIELDS}


def _check_outdir(out: Path, *protected: Path) -> None:
    """Refuse an output directory that would clobber inputs or someone else's files (an existing
    directory is replaced only if it is an earlier nex output: holds summary.json or provenance.json)."""
    from .common import check_outdir

    check_outdir(out, *protected, ours=(SUMMARY_NAME, "provenance.json"))


def _check_outfile(out: Path, *protected: Path) -> None:
    if out.is_dir():
        raise ConfigError(f"output {out} is a directory: give a file name for -o")
    for p in protected:
        if out.resolve() == p.resolve():
            raise ConfigError(f"output {out} is the input file: choose another -o")


def _train(cache, params):
    """Learn weights and stamp them with their provenance."""
    import dataclasses

    from ..core import learn_weights
    from ..core.kernel import default_workers

    # the progress bar (and its import) only appears if learning runs longer than a second
    weights = learn_weights(cache, params, progress=PROGRESS_AFTER_S, workers=default_workers())
    meta = dict(weights.meta)
    meta.setdefault("params", params.to_dict())
    meta.setdefault("model", _model_identity(cache.manifest))
    meta["cache_path"] = str(cache.path)
    return dataclasses.replace(weights, meta=meta)


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _write_scores(outdir: Path, cache, weights, with_log_gap: bool) -> dict:
    """Score every response of ``cache``; write scores.csv and summary.json into ``outdir``."""
    import numpy as np

    from ..core import log_gap, nex_score, score_responses
    from ..scores import score_columns

    if weights.scheme != cache.scheme:
        raise WeightsError(
            f"weights use key scheme {weights.scheme.to_dict()} but cache {cache.path} uses {cache.scheme.to_dict()}: "
            "score with weights learned on a cache of the same model"
        )
    gmf = np.asarray(score_responses(cache, weights), dtype=np.float64)
    _write_csv(outdir / SCORES_NAME, score_columns(cache, gmf, with_log_gap))
    score = nex_score(gmf)
    summary = {
        "n_responses": int(cache.n_responses),
        "n_scored_responses": int(np.count_nonzero(~np.isnan(gmf))),
        "nex_score": _nan_to_none(float(score)),
        "log_gap": None if math.isnan(float(score)) else float(log_gap(score)),
        "n_weights": len(weights),
    }
    (outdir / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _csv_cell(v) -> str:
    """A CSV cell as pandas writes it: floats at full precision (repr), NaN and None empty."""
    if hasattr(v, "item"):  # a numpy scalar
        v = v.item()
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def _write_csv(path: Path, columns: dict) -> None:
    """Write equal-length columns as CSV with a header (plain csv module: no pandas import for 400 rows)."""
    import csv

    names = list(columns)
    cols = [columns[n].tolist() if hasattr(columns[n], "tolist") else list(columns[n]) for n in names]
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(names)
        w.writerows([_csv_cell(v) for v in row] for row in zip(*cols))


def _report(summary: dict, out: Path, with_log_gap: bool) -> None:
    score = "n/a" if summary["nex_score"] is None else f"{summary['nex_score']:.6f}"
    gap = f", log gap {summary['log_gap']:.4f}" if with_log_gap and summary["log_gap"] is not None else ""
    print(f"scored {summary['n_scored_responses']}/{summary['n_responses']} responses: NEX score {score}{gap}; wrote {out}")


def _add_params(p: argparse.ArgumentParser) -> None:
    from .nex_params import add_nex_params

    add_nex_params(p, max_responses=True)


# --------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    """Learn signed neuron weights from the unlabeled responses of a cache and save them (.npz)."""
    from ..cache.reader import open_cache
    from ..provenance import record
    from ..weights_io import save_weights

    cache_path, out = Path(args.cache), Path(args.output)
    params = _params(args)
    _check_outfile(out, cache_path)
    cache = open_cache(cache_path)
    weights = _train(cache, params)
    rec = record("nex train", config=params.to_dict(), model=_model_identity(cache.manifest), inputs={"cache": str(cache_path)}, n_weights=len(weights))
    save_weights(weights, out, provenance=rec)
    print(f"learned {len(weights)} neuron weights from {cache.n_responses} responses; wrote {out}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Score every response of a cache (Good-Mass Fraction) with given weights; write scores.csv and summary.json.

    With --log-gap, scores.csv also gets a per-response log_gap column and the log gap is printed.
    """
    from ..atomic import atomic_path
    from ..cache.reader import open_cache
    from ..provenance import record, write_sidecar
    from ..weights_io import load_weights

    cache_path, weights_path, out = Path(args.cache), Path(args.weights), Path(args.output)
    _check_outdir(out, cache_path, weights_path)
    cache = open_cache(cache_path)
    weights = load_weights(weights_path)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        summary = _write_scores(tmp, cache, weights, args.log_gap)
        rec = record(
            "nex score",
            config={"log_gap": bool(args.log_gap)},
            model=_model_identity(cache.manifest),
            inputs={"cache": str(cache_path), "weights": str(weights_path)},
            weights_meta=weights.meta,
        )
        write_sidecar(tmp, rec)
    _report(summary, out, args.log_gap)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Self-calibrate: learn weights on a cache and score the same cache with them.

    Writes OUTDIR/weights.npz (with its provenance sidecar), OUTDIR/scores.csv, OUTDIR/summary.json.
    """
    from ..atomic import atomic_path
    from ..cache.reader import open_cache
    from ..provenance import record, write_sidecar
    from ..weights_io import save_weights

    cache_path, out = Path(args.cache), Path(args.output)
    params = _params(args)
    _check_outdir(out, cache_path)
    cache = open_cache(cache_path)
    weights = _train(cache, params)
    model = _model_identity(cache.manifest)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        rec = record("nex run", config=params.to_dict(), model=model, inputs={"cache": str(cache_path)}, n_weights=len(weights))
        save_weights(weights, tmp / WEIGHTS_NAME, provenance=rec)
        summary = _write_scores(tmp, cache, weights, args.log_gap)
        write_sidecar(tmp, dict(rec, log_gap=bool(args.log_gap)))
    _report(summary, out, args.log_gap)
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    """Write the ranked neuron-weight table (layer, unit, weight, masses, class, rank) for a paper.

    Ranked by |weight|, then total credit (effective + redundant mass), then (layer, unit). The
    format comes from --format or the file extension (.csv, .parquet, .tex, .md).
    """
    from ..atomic import atomic_path
    from ..provenance import record, write_sidecar
    from ..table import infer_format, neuron_table, write_table
    from ..weights_io import load_weights

    weights_path, out = Path(args.weights), Path(args.output)
    _check_outfile(out, weights_path)
    fmt = infer_format(out, args.format)
    if args.top is not None and args.top < 1:
        raise ConfigError(f"--top must be a positive number of neurons, got {args.top}")
    weights = load_weights(weights_path)
    df = neuron_table(weights, top=args.top)
    with atomic_path(out) as tmp:
        write_table(df, tmp, fmt)
    rec = record("nex table", config={"format": fmt, "top": args.top}, inputs={"weights": str(weights_path)}, weights_meta=weights.meta)
    write_sidecar(out, rec)
    print(f"wrote {len(df)} of {len(weights)} neurons ({fmt}) to {out}")
    return 0


def register(sub) -> None:
    """Add train, score, run and table to the nex parser."""

    def add(name: str, func, summary: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=summary, description=func.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    p = add("train", cmd_train, "learn neuron weights from a cache")
    p.add_argument("cache", metavar="CACHE", help="cache directory (rows/, base/)")
    p.add_argument("-o", "--output", metavar="WEIGHTS", required=True, help="weights file to write (.npz)")
    _add_params(p)

    p = add("score", cmd_score, "score a cache's responses with given weights")
    p.add_argument("cache", metavar="CACHE", help="cache directory (rows/, base/)")
    p.add_argument("--weights", metavar="WEIGHTS", required=True, help="our weights .npz or the reference's dense one")
    p.add_argument("-o", "--output", metavar="OUTDIR", required=True, help="output directory (scores.csv, summary.json)")
    p.add_argument("--log-gap", action="store_true", help="add a per-response log_gap column and print the log gap")

    p = add("run", cmd_run, "self-calibrate: train on a cache and score it")
    p.add_argument("cache", metavar="CACHE", help="cache directory (rows/, base/)")
    p.add_argument("-o", "--output", metavar="OUTDIR", required=True, help="output directory (weights.npz, scores.csv, summary.json)")
    p.add_argument("--log-gap", action="store_true", help="add a per-response log_gap column and print the log gap")
    _add_params(p)

    p = add("table", cmd_table, "write the ranked neuron-weight table")
    p.add_argument("weights", metavar="WEIGHTS", help="our weights .npz or the reference's dense one")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="table file (.csv, .parquet, .tex, .md)")
    p.add_argument("--format", choices=("csv", "parquet", "latex", "markdown"), default=None, help="table format (default: from the extension)")
    p.add_argument("--top", type=int, default=None, metavar="K", help="only the K highest-ranked neurons")


__all__ = ["register", "cmd_train", "cmd_score", "cmd_run", "cmd_table"]
