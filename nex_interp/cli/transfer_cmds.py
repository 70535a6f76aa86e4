"""``nex transfer``: effective-vs-redundant neuron transfer between two models, with effect sizes.

Runs one experiment described by a TOML file (see ``interventions/experiments/zoo.toml`` and
``docs/interventions.md``): neuron sets chosen from NEX weights (top-k effective, top-k
redundant, random sets matched per layer), an operation (weight transplant donor -> recipient,
activation patching during generation, or ablation), and the accuracy of the recipient's greedy
answers on the task's problems. Every field of the file can be overridden by a flag
(``--section-field``, e.g. ``--evaluation-problems 50 --sets-k 16,64``). Writes
``OUT/results.csv``, ``OUT/dose_response.png`` and ``OUT/summary.json``; re-running the same
command resumes an interrupted run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError

#: the default experiment of a source checkout (interventions/experiments/zoo.toml)
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "interventions" / "experiments" / "zoo.toml"


def _config_path(given: str | None) -> Path:
    if given is not None:
        return Path(given)
    if not DEFAULT_CONFIG.is_file():
        raise ConfigError("no --config given and the default interventions/experiments/zoo.toml is not here "
                          "(it lives in the source checkout): give --config FILE")
    return DEFAULT_CONFIG


def cmd_transfer(args: argparse.Namespace) -> int:
    """Run (or resume) a neuron transfer experiment from a TOML config."""
    from ..interventions.config import SECTIONS, load_config
    from ..interventions.fields import flag_overrides
    from ..interventions.preflight import check_before_loading

    overrides: dict = flag_overrides(args, list(SECTIONS))
    if args.name is not None:
        overrides["name"] = args.name
    cfg = load_config(_config_path(args.config), overrides)
    check_before_loading(cfg)  # one-line config errors before any model (or torch) loads
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from ..interventions.experiment import run_experiment

    res = run_experiment(cfg, Path(args.output), show_progress=not args.quiet)
    print(f"{'condition':<10} {'k':>5} {'accuracy':>9} {'delta':>8} {'95% CI':>18} {'n':>5}")
    for r in res.rows:
        print(f"{r.condition:<10} {r.k:>5} {r.accuracy:>9.3f} {r.delta:>+8.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] {r.n:>5}")
    print(f"wrote {res.results_csv}, {res.plot} and {res.summary}")
    return 0


def register(sub) -> None:
    """Add ``transfer`` to the nex parser."""
    p = sub.add_parser("transfer", help=cmd_transfer.__doc__, description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    from ..interventions.config import SECTIONS
    from ..interventions.fields import add_flags

    p.add_argument("--config", default=None, help="experiment TOML file (default: interventions/experiments/zoo.toml of the source checkout)")
    p.add_argument("-o", "--output", required=True, help="output directory (an existing one from the same config is resumed)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--name", default=None, help="experiment name (default: the config's name, else its file name)")
    add_flags(p, list(SECTIONS))
    p.set_defaults(func=cmd_transfer)
