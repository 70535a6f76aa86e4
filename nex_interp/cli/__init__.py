"""The ``nex`` command line: thin shells over library functions.

Each command group lives in its own module exposing ``register(subparsers)``; a module must not
import torch or transformers at import time (they are imported inside the command function), so
``nex train/score/run/table`` start fast and work without the model extras.

User errors (:class:`nex_interp.errors.NexError`) print one line and exit 2. Ctrl-C exits 130
with a note that re-running the same command resumes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__
from ..errors import NexError

#: command-group modules, in help order
COMMAND_MODULES = (
    "core_cmds",
    "capture_cmds",
    "zoo_cmds",
    "select_cmds",
    "transfer_cmds",
    "report_cmds",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"nex: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nex", description="NEX: neuron explore-exploit scoring of reasoning traces.")
    parser.add_argument("--version", action="version", version=f"nex-interp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
