"""Provenance: every output carries the config, model identity and package version beside it.

A file output ``X`` gets a sidecar ``X.provenance.json``; a directory output gets
``provenance.json`` inside it. Both hold the same record (see :func:`record`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import write_text


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return obj


def _platform() -> str:
    """``OS-release-machine``, e.g. ``Linux-6.1.0-x86_64`` (os.uname: platform.platform() would start a
    subprocess and read the interpreter's binary, tens of milliseconds of a fast ``nex run``)."""
    try:
        u = os.uname()
    except AttributeError:  # Windows
        return sys.platform
    return f"{u.sysname}-{u.release}-{u.machine}"


def record(command: str, config: Any = None, model: Any = None, inputs: dict | None = None, **extra: Any) -> dict:
    """A provenance record: what produced an output, from what, with which settings and versions."""
    rec = {
        "package": "nex-interp",
        "version": __version__,
        "command": command,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": _platform(),
        "config": _jsonable(config),
        "model": _jsonable(model),
        "inputs": _jsonable(inputs or {}),
    }
    rec.update({k: _jsonable(v) for k, v in extra.items()})
    return rec


def sidecar_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output / "provenance.json" if output.is_dir() else output.with_name(output.name + ".provenance.json")


def write_sidecar(output: str | os.PathLike, rec: dict) -> Path:
    """Write ``rec`` beside (file) or inside (directory) ``output``; returns the sidecar path."""
    path = sidecar_path(output)
    write_text(path, json.dumps(rec, indent=2, sort_keys=True) + "\n")
    return path


def dumps(obj: Any) -> str:
    return json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n"
