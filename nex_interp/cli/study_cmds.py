"""``nex study``: the whole sweep from one TOML config (:mod:`nex_interp.study`), on one machine or on Ray."""

from __future__ import annotations

import argparse


def add_ray_args(p: argparse.ArgumentParser, shard_help: str | None = None, shard_default: int | None = None) -> None:
    """``--ray [ADDRESS]``, ``--workers``, ``--gpus-per-worker`` (and ``--shard-size`` when ``shard_help``)."""
    r = p.add_argument_group("distributed (docs/distributed.md; needs the [distributed] extra)")
    r.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray: no ADDRESS starts a local cluster sized to the machine; "
                        "'auto' or host:port joins a running one (as $RAY_ADDRESS does)")
    r.add_argument("--workers", type=int, default=1, help="Ray workers (default 1)")
    r.add_argument("--gpus-per-worker", type=float, default=None, help="GPUs per worker (default: 1 where the cluster has GPUs, else 0)")
    if shard_help:
        r.add_argument("--shard-size", type=int, default=shard_default, help=shard_help)


def ray_options(args: argparse.Namespace, shard_size: int | None = None):
    """The :class:`~nex_interp.capture.distributed.RayOptions` of ``--ray`` etc. (None without ``--ray``)."""
    if args.ray is None:
        return None
    from ..capture.distributed import RayOptions
    from ..errors import ConfigError

    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give 1 or more workers")
    if args.gpus_per_worker is not None and args.gpus_per_worker < 0:
        raise ConfigError(f"--gpus-per-worker {args.gpus_per_worker}: give 0 or more GPUs")
    if shard_size is not None and shard_size < 1:
        raise ConfigError(f"--shard-size {shard_size}: give 1 or more")
    kw = {"shard_size": shard_size} if shard_size is not None else {}
    return RayOptions(address=None if args.ray == "local" else args.ray, workers=args.workers,
                      gpus_per_worker=args.gpus_per_worker, **kw)


def cmd_study(args: argparse.Namespace) -> int:
    """Run a study: for every model of STUDY.toml (paths, zoo:NAME, merge variants), sample responses,
    capture them, learn NEX weights and score, best-of-N; then rank the models against accuracy.
    Writes OUT/models/<name>/ (responses.jsonl, cache/, weights.npz, scores.csv, selection.csv),
    OUT/ranking.csv, OUT/variants.csv and OUT/summary.json. Re-running resumes: finished stages are kept."""
    from ..interventions.fields import flag_overrides
    from ..study import read_study, run_study
    from ..study.config import SECTIONS

    cfg = read_study(args.config, flag_overrides(args, list(SECTIONS)))
    options = ray_options(args)
    summary = run_study(cfg, args.output, options, progress=not args.no_progress)
    print(f"study {cfg.name}: {summary['n_models']} models into {args.output}")
    for m in summary["models"]:
        acc = "n/a" if m.get("accuracy") is None else f"{m['accuracy']:.3f}"
        nex = "n/a" if m.get("nex_score") is None else f"{m['nex_score']:.4f}"
        print(f"  {m['name']:24s} accuracy {acc}  NEX {nex}  ({m['n_responses_generated']} responses)")
    ranking = summary.get("ranking") or {}
    if ranking.get("skipped"):
        print(f"ranking skipped: {ranking['skipped']}")
    for row in ranking.get("ranking", []):
        if row["metric"] == "nex_score":
            r = row["pearson_r"]
            print(f"NEX vs accuracy: Pearson r = {'n/a' if r is None else f'{r:.3f}'}, picked {row['picked']}")
    print(f"wrote {args.output}/summary.json")
    return 0


def register(sub) -> None:
    """Add ``study`` to the nex parser."""
    p = sub.add_parser("study", help="the whole sweep from a TOML config: merges, generation, capture, weights, scores, ranking",
                       description=cmd_study.__doc__)
    p.add_argument("--config", required=True, metavar="STUDY.toml", help="study config (see interventions/experiments/study_zoo.toml)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output directory; re-running resumes")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_ray_args(p)
    from ..interventions.fields import add_flags
    from ..study.config import SECTIONS

    add_flags(p, list(SECTIONS))
    p.set_defaults(func=cmd_study)
