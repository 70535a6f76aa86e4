"""The ``nex`` command line: thin shells over library functions.

Each command group lives in its own module exposing ``register(subparsers)``; a module must not
import torch or transformers at import time (they are imported inside the command function), so
``nex train/score/run/table`` start fast and work without the model extras.

User errors (:class:`nex_interp.errors.NexError`) print one line and exit 2. Ctrl-C exits 130
with a note that re-running the same command resumes.
"""

from __future__ import annotations

import gc
import os

# numpy's OpenBLAS starts a pool of threads that busy-wait for work after start-up; the nex commands
# make no large BLAS calls, and on a small machine those threads take the cores the NEX core's own
# threads need. One BLAS thread unless the user chose otherwise (must be set before numpy loads).
# (torch's own threads are set by OMP/MKL variables, which this leaves alone.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402

from .. import __version__
from ..errors import NexError

#: command-group modules, in help order
COMMAND_MODULES = (
    "core_cmds",
    "cache_cmds",
    "capture_cmds",
    "study_cmds",
    "zoo_cmds",
    "select_cmds",
    "transfer_cmds",
    "report_cmds",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"nex: error: {message} (see '{self.prog} --help')\n")


#: which module registers each command (so that running one command imports only its module);
#: tests/test_cli_core.py::test_the_command_table_names_each_commands_module checks it against what the
#: modules register
COMMANDS = {
    "train": "core_cmds", "score": "core_cmds", "run": "core_cmds", "table": "core_cmds",
    "cache": "cache_cmds",
    "generate": "capture_cmds", "capture": "capture_cmds",
    "study": "study_cmds",
    "zoo": "zoo_cmds", "merge": "zoo_cmds", "demo": "zoo_cmds",
    "select": "select_cmds", "rank": "select_cmds", "annotate": "select_cmds", "sweep": "select_cmds",
    "transfer": "transfer_cmds",
    "report": "report_cmds",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The nex parser; ``only``: register just that command group module (one of COMMAND_MODULES)."""
    parser = _Parser(prog="nex", description="NEX: neuron explore-exploit scoring of reasoning traces.")
    parser.add_argument("--version", action="version", version=f"nex-interp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES if only is None else (only,):
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Building the parser imports the command's module and its dependencies: many long-lived objects
    # and no garbage, which the collector would walk several times over. It is off meanwhile, then back
    # on (as the caller had it) with what start-up made frozen, so later collections skip it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        # `nex COMMAND ...`: build only that command's group (its imports only); anything else (help, a
        # typo) gets the whole parser, with the list of every command
        parser = build_parser(COMMANDS.get(argv[0]) if argv else None)
        args = parser.parse_args(argv)
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
    try:
        rc = args.func(args)
    except NexError as e:
        print(f"nex: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nex: interrupted; finished work is kept: re-run the same command to resume", file=sys.stderr)
        return 130
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        print(f"nex: error: {e.strerror or e}: {e.filename}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug, not a user error: one line unless debugging
        if os.environ.get("NEX_DEBUG"):
            raise
        print(f"nex: internal error: {type(e).__name__}: {e} (set NEX_DEBUG=1 for the traceback and report it)", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
