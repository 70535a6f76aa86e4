"""Helpers the command modules share."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..errors import ConfigError


def check_outdir(out: Path, *inputs: Path, ours: Iterable[str]) -> None:
    """Refuse an output directory that would clobber inputs or someone else's files.

    ``out`` must not be a file, nor be (or hold) one of ``inputs``; an existing non-empty directory
    is replaced only when it is an earlier nex output, i.e. holds one of the file names ``ours``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} is a file: give a directory for -o")
    resolved = out.resolve()
    for p in inputs:
        rp = Path(p).resolve()
        if rp == resolved or resolved in rp.parents:
            raise ConfigError(f"output directory {out} holds the input {p}: choose another -o")
    if out.is_dir() and any(out.iterdir()) and not any((out / name).exists() for name in ours):
        raise ConfigError(f"output directory {out} exists and holds other files: choose a new -o (nex only replaces its own outputs)")
