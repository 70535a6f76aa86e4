"""The NEX parameters as command-line flags (``--rho``, ``--min-run``, ``--max-responses``).

Their defaults are read from :class:`nex_interp.core.NexParams`, the one place they are set, so
every command that learns weights (``nex train/run``, ``select``, ``rank``, ``annotate agree``,
``report``) offers the same flags with the same defaults.
"""

from __future__ import annotations

import argparse


def add_nex_params(p: argparse.ArgumentParser, *, max_responses: bool = False) -> None:
    """Add ``--rho`` and ``--min-run`` (and ``--max-responses`` when asked) with NexParams' defaults."""
    from ..core import NexParams

    d = NexParams()
    p.add_argument("--rho", type=float, default=d.rho,
                   help="HMM stickiness: probability of staying in a phase (default %(default)s)")
    p.add_argument("--min-run", type=int, default=d.min_run, dest="min_run",
                   help="merge phase runs shorter than this (default %(default)s)")
    if max_responses:
        p.add_argument("--max-responses", type=int, default=d.max_responses,
                       help="learn on at most this many responses (default: all)")


def nex_params(args: argparse.Namespace):
    """The :class:`~nex_interp.core.NexParams` the flags of :func:`add_nex_params` give."""
    from ..core import NexParams

    d = NexParams()
    return NexParams(rho=args.rho, min_run=args.min_run, max_responses=getattr(args, "max_responses", d.max_responses))
