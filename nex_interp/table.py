"""The neuron-weight table: one row per credited neuron, ranked, ready for a paper.

>>> from nex_interp.weights_io import load_weights
>>> from nex_interp.table import neuron_table
>>> df = neuron_table(load_weights("tests/data/reference/example_weights.npz"), top=3)
>>> list(df.columns)
['layer', 'unit', 'weight', 'effective_mass', 'redundant_mass', 'class', 'rank']

Ranking: by ``|weight|`` descending, then by total credit ``effective_mass + redundant_mass``
descending, then by (layer, unit) ascending, so ties (many weights saturate at +-1) are broken by
how much evidence a neuron has and the order is deterministic. ``rank`` starts at 1.
``class`` is ``effective`` (weight > 0), ``redundant`` (weight < 0) or ``neutral`` (weight 0).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ConfigError
from .neuron_weights import NeuronWeights

COLUMNS = ["layer", "unit", "weight", "effective_mass", "redundant_mass", "class", "rank"]
FORMATS = ("csv", "parquet", "latex", "markdown")
_EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".tex": "latex", ".md": "markdown", ".markdown": "markdown"}
_HEADERS = {
    "layer": "Layer",
    "unit": "Unit",
    "weight": "Weight",
    "effective_mass": "Effective mass",
    "redundant_mass": "Redundant mass",
    "class": "Class",
    "rank": "Rank",
}


def neuron_table(weights: NeuronWeights, top: int | None = None) -> pd.DataFrame:
    """The ranked table of ``weights`` (all neurons with an entry, or the ``top`` highest ranked)."""
    if top is not None and top < 1:
        raise ConfigError(f"--top must be a positive number of neurons, got {top}")
    layer, unit = weights.layer_unit()
    w = np.asarray(weights.weight, dtype=np.float64)
    eff = np.asarray(weights.effective_mass, dtype=np.float64)
    red = np.asarray(weights.redundant_mass, dtype=np.float64)
    # np.lexsort sorts by the last key first
    order = np.lexsort((unit, layer, -(eff + red), -np.abs(w)))
    if top is not None:
        order = order[:top]
    cls = np.where(w[order] > 0, "effective", np.where(w[order] < 0, "redundant", "neutral"))
    return pd.DataFrame(
        {
            "layer": layer[order].astype(np.int64),
            "unit": unit[order].astype(np.int64),
            "weight": w[order],
            "effective_mass": eff[order],
            "redundant_mass": red[order],
            "class": cls,
            "rank": np.arange(1, len(order) + 1, dtype=np.int64),
        },
        columns=COLUMNS,
    )


def infer_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The table format: ``fmt`` if given, else from the file extension."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown table format {fmt!r}: use one of {', '.join(FORMATS)}")
        return fmt
    ext = Path(path).suffix.lower()
    if ext not in _EXTENSIONS:
        raise ConfigError(
            f"cannot tell the table format of {path} from its extension {ext or '(none)'!r}: "
            f"pass --format {{{','.join(FORMATS)}}} or name it .csv/.parquet/.tex/.md"
        )
    return _EXTENSIONS[ext]


def _num(x: float, latex: bool = False) -> str:
    s = f"{x:.4f}" if abs(x) < 1e4 else f"{x:.0f}"
    if latex and s.startswith("-"):
        return "$-$" + s[1:]
    return s


def _cells(df: pd.DataFrame, latex: bool) -> list[list[str]]:
    """Formatted cells in COLUMNS order: integers plain, numbers to 4 decimals, classes as words."""
    out = []
    for layer, unit, w, eff, red, cls, rank in df[COLUMNS].itertuples(index=False, name=None):
        out.append([str(int(layer)), str(int(unit)), _num(w, latex), _num(eff, latex), _num(red, latex), str(cls), str(int(rank))])
    return out


def to_latex(df: pd.DataFrame, caption: str | None = None, label: str = "tab:nex-neurons") -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    caption = caption or f"NEX neuron weights: the {len(df)} highest-ranked neurons by $|w|$, then total credit."
    lines = [
        "% NEX neuron-weight table; needs \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        "\\begin{tabular}{rrrrrlr}",
        "\\toprule",
        " & ".join(_HEADERS[c] for c in COLUMNS) + " \\\\",
        "\\midrule",
    ]
    lines += [" & ".join(cells) + " \\\\" for cells in _cells(df, latex=True)]
    lines += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{caption}}}", f"\\label{{{label}}}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub pipe table."""
    align = {"class": ":---"}
    lines = ["| " + " | ".join(_HEADERS[c] for c in COLUMNS) + " |", "| " + " | ".join(align.get(c, "---:") for c in COLUMNS) + " |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in _cells(df, latex=False)]
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, path: str | os.PathLike, fmt: str) -> None:
    """Write ``df`` to ``path`` (a temporary path from the caller; not atomic by itself)."""
    path = Path(path)
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError("parquet tables need pyarrow: pip install 'nex-interp[tables]', or use --format csv") from None
        df.to_parquet(path, index=False)
    elif fmt == "latex":
        path.write_text(to_latex(df))
    elif fmt == "markdown":
        path.write_text(to_markdown(df))
    else:
        raise ConfigError(f"unknown table format {fmt!r}: use one of {', '.join(FORMATS)}")
