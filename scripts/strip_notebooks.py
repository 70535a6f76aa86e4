#!/usr/bin/env python3
"""Strip outputs from the project's notebooks so git holds only their source.

    python scripts/strip_notebooks.py                 # strip notebooks/*.ipynb in place
    python scripts/strip_notebooks.py --check         # exit 1, naming them, if any has outputs
    python scripts/strip_notebooks.py a.ipynb b.ipynb # strip the given files

Removes cell outputs, execution counts and per-cell execution metadata, and the kernel's
language_info version details; keeps sources, cell ids and tags. Writes in nbformat's own layout
(sorted keys, indent 1) so stripping twice changes nothing. Plain JSON: needs no Jupyter package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def strip(nb: dict) -> dict:
    """The notebook without outputs or run-specific metadata (a new dict)."""
    nb = json.loads(json.dumps(nb))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        meta = cell.get("metadata", {})
        for key in VOLATILE_CELL_METADATA:
            meta.pop(key, None)
    meta = nb.get("metadata", {})
    meta.pop("widgets", None)
    if "language_info" in meta:
        meta["language_info"] = {"name": meta["language_info"].get("name", "python")}
    return nb


def dumps(nb: dict) -> str:
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any notebook is not stripped")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "notebooks").glob("*.ipynb"))
    dirty = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
            nb = json.loads(text)
        except (OSError, json.JSONDecodeError) as e:
            print(f"strip_notebooks: cannot read {path}: {e}", file=sys.stderr)
            return 2
        clean = dumps(strip(nb))
        if clean != text:
            dirty.append(path)
            if not args.check:
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_text(clean, encoding="utf-8")
                tmp.replace(path)
    if args.check and dirty:
        print("notebooks with outputs (run scripts/strip_notebooks.py): " + ", ".join(str(p) for p in dirty), file=sys.stderr)
        return 1
    for path in dirty:
        print(f"stripped {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
