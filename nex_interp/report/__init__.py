"""Self-contained HTML reports of one response: phases, cycles and neurons at a glance.

>>> from nex_interp.report import gather_report, write_report            # doctest: +SKIP
>>> write_report(gather_report("my_cache", 0), "report.html")           # doctest: +SKIP

The page (inline CSS and SVG, no scripts, no network) shows the response text with each row
coloured by its phase (or labelled row boxes when the cache has no token text), the novelty
curve with the phase strip, the token-neuron curve, each E->X cycle's signals and the neurons
contributing most ``mass * weight`` to the response's Good-Mass Fraction.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..atomic import write_text
from ..provenance import record, write_sidecar
from .data import CycleView, NeuronView, ReportData, RowView, gather_report
from .html import phase_text_document, phase_text_html, render_report
from .text import load_tokenizer


def write_report(data: ReportData, path: str | os.PathLike, *, command: str = "nex report", **provenance: Any) -> Path:
    """Render ``data`` to ``path`` atomically, with a provenance sidecar beside it."""
    path = Path(path)
    write_text(path, render_report(data))
    inputs = {"cache": data.cache, "response": data.response}
    inputs.update(provenance.pop("inputs", {}) or {})
    write_sidecar(path, record(command, config=provenance.pop("config", data.params), inputs=inputs, **provenance))
    return path


__all__ = [
    "CycleView",
    "NeuronView",
    "ReportData",
    "RowView",
    "gather_report",
    "load_tokenizer",
    "phase_text_document",
    "phase_text_html",
    "render_report",
    "write_report",
]
