"""Cache commands: ``nex cache synth`` (a synthetic cache with planted explore/exploit structure) and
``nex cache merge`` (a sharded cache as one cache in the reference layout).

Thin shells over :mod:`nex_interp.cache` (:func:`nex_interp.cache.synthetic.synth_cache`); no
torch or transformers.
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    """Add the ``cache`` command group to the nex parser."""
    from ..cache.synthetic import SynthConfig

    group = sub.add_parser(
        "cache",
        help="cache operations: synth (a synthetic cache), merge (a sharded cache into one)",
        description="Operations on sparse activation caches.",
    )
    ops = group.add_subparsers(dest="cache_command", metavar="OP", parser_class=type(group))
    ops.required = True

    d = SynthConfig()
    s = ops.add_parser(
        "synth",
        help="write a seeded synthetic cache with planted explore/exploit phases",
        description=(
            "Write a synthetic sparse cache (reference layout, with manifest and provenance) whose responses "
            "alternate sticky Explore rows (many neurons new to the response) and Exploit rows (reusing them); "
            "each response records its planted phases in responses.jsonl. The same options and seed write the "
            "same bytes. --dirty adds every case the NEX core sanitises (docs/cache-format.md)."
        ),
    )
    s.add_argument("output", metavar="OUT", help="new cache directory (must not exist)")
    s.add_argument("--responses", type=int, metavar="N", default=d.responses, help=f"number of responses (default {d.responses})")
    s.add_argument("--rows-lo", type=int, metavar="A", default=d.rows_lo, help=f"fewest rows per response (default {d.rows_lo})")
    s.add_argument("--rows-hi", type=int, metavar="B", default=d.rows_hi, help=f"most rows per response (default {d.rows_hi})")
    s.add_argument("--keys-per-row", type=int, metavar="K", default=d.keys_per_row,
                   help=f"mean active neurons per row, +-30%% (default {d.keys_per_row})")
    s.add_argument("--layers", type=int, metavar="L", default=d.layers, help=f"model layers (default {d.layers})")
    s.add_argument("--d-mlp", type=int, metavar="D", default=d.d_mlp, help=f"MLP units per layer (default {d.d_mlp})")
    s.add_argument("--seed", type=int, metavar="S", default=d.seed, help=f"random seed (default {d.seed})")
    s.add_argument("--dirty", action="store_true", help="add the sanitising cases (layer 255, NaN/inf/negative mass, ...)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_synth)

    m = ops.add_parser(
        "merge",
        help="write a sharded cache (nex capture --ray) as one cache in the reference layout",
        description=(
            "Copy every shard of the sharded cache SHARDED, in order, into the single cache OUT (reference layout, "
            "with manifest and provenance; written to a temporary path, then renamed). Every nex command also "
            "reads SHARDED directly; merge is for tools that read the reference layout only."
        ),
    )
    m.add_argument("sharded", metavar="SHARDED", help="sharded cache directory (holding shards.json)")
    m.add_argument("output", metavar="OUT", help="new cache directory (must not exist)")
    m.add_argument("--no-progress", action="store_true", help="no progress bar")
    m.set_defaults(func=cmd_merge)


def cmd_synth(args: argparse.Namespace) -> int:
    """``nex cache synth``: a synthetic cache."""
    from ..cache.synthetic import SynthConfig, synth_cache

    config = SynthConfig(
        responses=args.responses, rows_lo=args.rows_lo, rows_hi=args.rows_hi, keys_per_row=args.keys_per_row,
        layers=args.layers, d_mlp=args.d_mlp, seed=args.seed, dirty=args.dirty,
    )
    cache = synth_cache(args.output, config, progress=not args.no_progress)
    m = cache.manifest
    print(f"wrote synthetic cache {args.output}: {m['n_responses']} responses, {m['n_rows']} rows, "
          f"{m['n_entries']} entries ({cache.scheme.name} keys, seed {config.seed}{', dirty' if config.dirty else ''})")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """``nex cache merge``: a sharded cache as one cache."""
    from pathlib import Path

    from ..cache.sharded import is_sharded, merge_sharded
    from ..errors import CacheError

    if not is_sharded(args.sharded):
        raise CacheError(f"{args.sharded} is not a sharded cache (no shards.json): merge takes the output of nex capture --ray")
    cache = merge_sharded(args.sharded, args.output, progress=not args.no_progress)
    print(f"merged {cache.n_responses} responses "
          f"from sharded cache {Path(args.sharded)} into {Path(args.output)} ({cache.n_rows} rows, {cache.n_entries} entries)")
    return 0
