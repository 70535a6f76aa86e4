"""``nex zoo train``, ``nex merge`` and ``nex demo``: the embedded zoo, merging, the end-to-end demo."""

from __future__ import annotations

import argparse
from pathlib import Path


def _resolve_dir(spec: str) -> Path:
    """A checkpoint directory from a path or ``zoo:NAME``."""
    if spec.startswith("zoo:"):
        from ..zoo import zoo_model_dir

        return zoo_model_dir(spec[4:])
    return Path(spec)


def cmd_zoo_train(args: argparse.Namespace) -> int:
    """Train the zoo (base, then its fine-tunes: instruct and the data-mixture family) from scratch on CPU."""
    import dataclasses

    from ..zoo.train import default_config, train_zoo

    cfg = default_config(args.scale)
    if args.threads is not None:
        cfg = dataclasses.replace(cfg, threads=args.threads)
    manifest = train_zoo(Path(args.output), cfg)
    print(f"zoo written to {args.output} ({manifest['total_seconds']:.0f} s of training and evaluation)")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Merge two checkpoints of one architecture per tensor (t=0 gives A, t=1 gives B)."""
    from ..merge import merge_models

    recipe = merge_models(_resolve_dir(args.a), _resolve_dir(args.b), args.method, args.t, Path(args.output), progress=True)
    print(f"merged {recipe.n_tensors} tensors ({recipe.n_linear_fallback} by linear fallback) into {args.output}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Rank a SLERP merge family of zoo models with NEX, without labels, and check against accuracy."""
    from ..zoo.experiment import DemoConfig, run_demo

    cfg = DemoConfig.quick(args.seed) if args.quick else DemoConfig(seed=args.seed)
    run_demo(Path(args.output), cfg)
    return 0


def register(sub) -> None:
    """Add ``zoo train``, ``merge`` and ``demo`` to the nex parser."""
    from ..merge import MERGE_METHODS

    zoo = sub.add_parser("zoo", help="the embedded zoo of tiny reasoning models", description=__doc__)
    zsub = zoo.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND")
    zsub.required = True
    p = zsub.add_parser("train", help=cmd_zoo_train.__doc__, description=cmd_zoo_train.__doc__)
    p.add_argument("-o", "--output", default="zoo", help="output directory (default: ./zoo; the shipped zoo lives in nex_interp/zoo/weights)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every stage's steps (default 1.0 = the shipped zoo)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default 2, as the shipped zoo was trained; the count is part of the "
                        "training config, and another count can change the weights' last bits)")
    p.set_defaults(func=cmd_zoo_train)

    p = sub.add_parser("merge", help=cmd_merge.__doc__, description=cmd_merge.__doc__)
    p.add_argument("a", help="checkpoint A: a Hugging Face directory or zoo:NAME")
    p.add_argument("b", help="checkpoint B: a Hugging Face directory or zoo:NAME")
    p.add_argument("--method", default="slerp", help=f"per-tensor merge method: {', '.join(sorted(MERGE_METHODS))} (default slerp)")
    p.add_argument("--t", type=float, required=True, help="interpolation factor in [0, 1]: 0 gives A, 1 gives B")
    p.add_argument("-o", "--output", required=True, help="output directory (a loadable HF checkpoint with merge.json)")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("demo", help=cmd_demo.__doc__, description=cmd_demo.__doc__)
    p.add_argument("-o", "--output", required=True, help="output directory (summary.json, plots, tables); re-running resumes")
    p.add_argument("--quick", action="store_true", help="reduced mode of the same pipeline (fewer problems and samples), for tests")
    p.add_argument("--seed", type=int, default=0, help="seed of problems, sampling and everything else (default 0)")
    p.set_defaults(func=cmd_demo)
