"""Phases against annotations: import/export of E/X annotations and agreement with the HMM's phases.

Label arrays are per response token: ``1`` = E (explore), ``0`` = X (exploit), ``-1`` = unlabelled.

Annotation JSONL, one object per response::

    {"id": "p3-s1", "unit": "token", "spans": [{"start": 0, "end": 40, "label": "E"},
                                               {"start": 40, "end": 96, "label": "X"}]}

Spans are half-open ``[start, end)`` in response tokens (``unit: "token"``) or in characters of
the response text (``unit: "char"``; the record then needs ``token_offsets``, ``[[start, end], ...]``
per token, which :func:`nex_interp.annotation.export_for_annotation` writes, so annotators can fill in the exported file
itself). A token takes the label of the span that overlaps most of its characters; tokens no span
covers are unlabelled and left out of every statistic. The zoo generator's per-token labels enter
through :func:`annotations_from_token_labels` and are scored by the same code.

Agreement (pooled over responses, on tokens both sides label):

* **Cohen's kappa** ``(p_o - p_e) / (1 - p_e)`` over tokens (scikit-learn's ``cohen_kappa_score``);
  NaN when undefined (``p_e = 1``: both sides use one and the same label only).
* **Boundary F1 with a tolerance**: a boundary is a token ``t`` whose label differs from token
  ``t-1``'s. Predicted and gold boundaries are matched one-to-one when at most ``tolerance``
  tokens apart (a maximum matching, found greedily on the sorted positions), per response; matches,
  predicted and gold boundaries are summed over responses (micro average).
  ``precision = matched / predicted``, ``recall = matched / gold``; with no boundaries on one side,
  its ratio is 1 if the other side has none too, else 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from .atomic import atomic_path
from .errors import NexError
from .jsonl import iter_jsonl

E, X, UNLABELLED = 1, 0, -1
_LABELS = {"E": E, "X": X, "e": E, "x": X, "explore": E, "exploit": X}


class AnnotationError(NexError):
    """An annotation file is malformed or does not fit the responses it annotates."""


@dataclass(frozen=True)
class Span:
    """A labelled half-open span ``[start, end)`` in tokens or characters."""

    start: int
    end: int
    label: int  # E or X


@dataclass(frozen=True)
class Annotation:
    """One response's annotation: spans in ``unit`` (``token`` or ``char``), with token character
    offsets when ``unit == "char"``."""

    id: str
    unit: str
    spans: tuple[Span, ...]
    token_offsets: np.ndarray | None = None  # int [T, 2]
    n_tokens: int | None = None

    def token_labels(self, n_tokens: int | None = None) -> np.ndarray:
        """Per-token labels (E=1, X=0, unlabelled=-1) of length ``n_tokens``."""
        n = n_tokens if n_tokens is not None else self.n_tokens
        if self.unit == "token":
            if n is None:
                n = max((s.end for s in self.spans), default=0)
            out = np.full(n, UNLABELLED, dtype=np.int8)
            for s in self.spans:
                if s.end > n:
                    raise AnnotationError(
                        f"annotation {self.id!r}: span [{s.start}, {s.end}) runs past the response's {n} tokens"
                    )
                out[s.start : s.end] = s.label
            return out
        offs = self.token_offsets
        if offs is None:
            raise AnnotationError(
                f"annotation {self.id!r} uses character offsets but has no token_offsets: "
                "annotate the file written by 'nex annotate export' (it carries them)"
            )
        if n is not None and len(offs) != n:
            raise AnnotationError(f"annotation {self.id!r} has offsets for {len(offs)} tokens, the response has {n}")
        out = np.full(len(offs), UNLABELLED, dtype=np.int8)
        best = np.zeros(len(offs), dtype=np.int64)
        for s in self.spans:
            ov = np.minimum(offs[:, 1], s.end) - np.maximum(offs[:, 0], s.start)
            take = ov > best
            out[take] = s.label
            best[take] = ov[take]
        return out


def _parse_label(value: object, where: str) -> int:
    if isinstance(value, str) and value in _LABELS:
        return _LABELS[value]
    raise AnnotationError(f"{where}: label {value!r} is not E or X")


def parse_annotation(obj: dict, where: str = "annotation") -> Annotation:
    """An :class:`Annotation` from one JSON object (see the module docstring for the format)."""
    if "id" not in obj:
        raise AnnotationError(f"{where} has no 'id': each annotation names the response it labels")
    rid = str(obj["id"])
    unit = obj.get("unit", "token")
    if unit not in ("token", "char"):
        raise AnnotationError(f"{where} (response {rid!r}): unit {unit!r} is not 'token' or 'char'")
    spans_in = obj.get("spans")
    if not isinstance(spans_in, list):
        raise AnnotationError(f"{where} (response {rid!r}): 'spans' must be a list of {{start, end, label}}")
    spans = []
    for k, s in enumerate(spans_in):
        w = f"{where} (response {rid!r}) span {k}"
        if not isinstance(s, dict) or not {"start", "end", "label"} <= set(s):
            raise AnnotationError(f"{w}: needs start, end and label")
        try:
            start, end = int(s["start"]), int(s["end"])
        except (TypeError, ValueError):
            raise AnnotationError(f"{w}: start and end must be integers") from None
        if start < 0 or end < start:
            raise AnnotationError(f"{w}: [{start}, {end}) is not a valid span")
        spans.append(Span(start, end, _parse_label(s["label"], w)))
    offs = obj.get("token_offsets")
    offsets = None
    if offs is not None:
        offsets = np.asarray(offs, dtype=np.int64)
        if offsets.ndim != 2 or (offsets.size and offsets.shape[1] != 2):
            raise AnnotationError(f"{where} (response {rid!r}): token_offsets must be [[start, end], ...]")
        offsets = offsets.reshape(-1, 2)
    n_tok = obj.get("n_tokens")
    return Annotation(rid, unit, tuple(spans), offsets, None if n_tok is None else int(n_tok))


def read_annotations(path: str | Path) -> dict[str, Annotation]:
    """Annotations of a JSONL file, by response id; malformed lines are one-line errors naming them."""
    path = Path(path)
    out: dict[str, Annotation] = {}
    for lineno, obj in iter_jsonl(path, "annotation file", AnnotationError, "give the JSONL of E/X spans (see docs/selection.md)"):
        ann = parse_annotation(obj, f"{path} line {lineno}")
        if ann.id in out:
            raise AnnotationError(f"{path} line {lineno}: response {ann.id!r} is annotated twice")
        out[ann.id] = ann
    if not out:
        raise AnnotationError(f"annotation file {path} holds no annotations")
    return out


def spans_from_labels(labels: np.ndarray) -> list[dict]:
    """Run-length spans ``{start, end, label}`` (token units) of a per-token label array; unlabelled runs are omitted."""
    lab = np.asarray(labels)
    spans = []
    start = 0
    for t in range(1, len(lab) + 1):
        if t == len(lab) or lab[t] != lab[start]:
            if lab[start] != UNLABELLED:
                spans.append({"start": int(start), "end": int(t), "label": "E" if lab[start] == E else "X"})
            start = t
    return spans


def annotations_from_token_labels(labels: Mapping[str, Iterable]) -> dict[str, Annotation]:
    """Annotations from per-token labels (``"E"``/``"X"`` strings, or 1/0/-1), e.g. the zoo generator's."""
    out = {}
    for rid, lab in labels.items():
        arr = np.asarray([_LABELS[v] if isinstance(v, str) else int(v) for v in lab], dtype=np.int8)
        spans = tuple(Span(s["start"], s["end"], _LABELS[s["label"]]) for s in spans_from_labels(arr))
        out[str(rid)] = Annotation(str(rid), "token", spans, None, len(arr))
    return out


def write_annotations(annotations: Mapping[str, Annotation], path: str | Path) -> Path:
    """Write annotations as JSONL (token units, or char units with their offsets)."""
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for a in annotations.values():
            obj = {"id": a.id, "unit": a.unit,
                   "spans": [{"start": s.start, "end": s.end, "label": "E" if s.label == E else "X"} for s in a.spans]}
            if a.n_tokens is not None:
                obj["n_tokens"] = a.n_tokens
            if a.token_offsets is not None:
                obj["token_offsets"] = a.token_offsets.tolist()
            f.write(json.dumps(obj) + "\n")
    return path


# ---------------------------------------------------------------------------- metrics


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two label arrays over the positions both label (NaN if undefined).

    >>> cohen_kappa(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    0.5
    """
    a = np.asarray(a)
    b = np.asarray(b)
    both = (a != UNLABELLED) & (b != UNLABELLED)
    a, b = a[both], b[both]
    if a.size == 0 or (np.all(a == a[0]) and np.all(b == a[0])):
        return float("nan")  # nothing to compare, or both sides use one and the same label (p_e = 1)
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(a, b))


def boundaries(labels: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Token positions ``t`` where the label changes from token ``t-1`` (both labelled, and both in ``valid``)."""
    lab = np.asarray(labels)
    if lab.size < 2:
        return np.zeros(0, dtype=np.int64)
    ok = (lab[1:] != UNLABELLED) & (lab[:-1] != UNLABELLED)
    if valid is not None:
        ok &= valid[1:] & valid[:-1]
    return (np.flatnonzero(ok & (lab[1:] != lab[:-1])) + 1).astype(np.int64)


def match_boundaries(pred: np.ndarray, gold: np.ndarray, tolerance: int) -> int:
    """Size of a maximum one-to-one matching of positions at most ``tolerance`` apart.

    >>> match_boundaries(np.array([3, 10]), np.array([4, 20]), tolerance=1)
    1
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    p, g = np.sort(pred), np.sort(gold)
    i = j = n = 0
    while i < len(p) and j < len(g):
        if abs(int(p[i]) - int(g[j])) <= tolerance:
            n, i, j = n + 1, i + 1, j + 1
        elif p[i] < g[j]:
            i += 1
        else:
            j += 1
    return n


@dataclass(frozen=True)
class BoundaryScore:
    """Boundary precision, recall and F1 from matched / predicted / gold counts."""

    matched: int
    n_pred: int
    n_gold: int

    @property
    def precision(self) -> float:
        return self.matched / self.n_pred if self.n_pred else (1.0 if self.n_gold == 0 else 0.0)

    @property
    def recall(self) -> float:
        return self.matched / self.n_gold if self.n_gold else (1.0 if self.n_pred == 0 else 0.0)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


def boundary_score(pred: np.ndarray, gold: np.ndarray, tolerance: int = 2) -> BoundaryScore:
    """Boundary matching of two label arrays of one response, on positions both label."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    valid = (pred != UNLABELLED) & (gold != UNLABELLED)
    bp, bg = boundaries(pred, valid), boundaries(gold, valid)
    return BoundaryScore(match_boundaries(bp, bg, tolerance), len(bp), len(bg))


@dataclass(frozen=True)
class AgreementReport:
    """Agreement of predicted phases with annotations, pooled over responses."""

    cohen_kappa: float
    boundary_f1: float
    boundary_precision: float
    boundary_recall: float
    tolerance: int
    n_responses: int
    n_tokens: int
    per_response: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        """The headline numbers as a JSON-ready dict."""
        return {k: getattr(self, k) for k in ("cohen_kappa", "boundary_f1", "boundary_precision", "boundary_recall",
                                              "tolerance", "n_responses", "n_tokens")}


def agreement(pred: Mapping[str, np.ndarray], gold: Mapping[str, np.ndarray], tolerance: int = 2) -> AgreementReport:
    """Cohen's kappa (pooled over tokens) and micro boundary F1 of ``pred`` against ``gold``.

    Both map response id -> per-token labels; only ids in both are compared, and their lengths must
    match (an :class:`AnnotationError` names the first that does not).
    """
    ids = [i for i in gold if i in pred]
    if not ids:
        raise AnnotationError("no annotated response is among the predicted ones: check that the ids match the cache's response ids")
    pa, ga, per = [], [], []
    matched = n_pred = n_gold = 0
    for rid in ids:
        p, g = np.asarray(pred[rid]), np.asarray(gold[rid])
        if len(p) != len(g):
            raise AnnotationError(f"response {rid!r}: annotation covers {len(g)} tokens but the cache has {len(p)}")
        b = boundary_score(p, g, tolerance)
        matched, n_pred, n_gold = matched + b.matched, n_pred + b.n_pred, n_gold + b.n_gold
        both = int(((p != UNLABELLED) & (g != UNLABELLED)).sum())
        per.append({"id": rid, "n_tokens": both, "cohen_kappa": cohen_kappa(p, g), "boundary_f1": b.f1,
                    "pred_boundaries": b.n_pred, "gold_boundaries": b.n_gold, "matched": b.matched})
        pa.append(p)
        ga.append(g)
    allp, allg = np.concatenate(pa), np.concatenate(ga)
    total = BoundaryScore(matched, n_pred, n_gold)
    n_tok = int(((allp != UNLABELLED) & (allg != UNLABELLED)).sum())
    return AgreementReport(cohen_kappa(allp, allg), total.f1, total.precision, total.recall, int(tolerance), len(ids), n_tok, per)


def hmm_token_labels(cache, responses: Iterable[int] | None = None, params=None) -> dict[int, np.ndarray]:
    """Per-token phase labels the NEX HMM assigns (1 E, 0 X, -1 a row NEX dropped), by response index.

    Each kept row's label is repeated over the row's tokens (:func:`row_labels_to_tokens`); a response
    too short to segment is all X, as the algorithm defines. ``params``: a ``NexParams`` (default).
    """
    from .selection.nex_api import row_phases

    trp = np.asarray(cache.token_row_ptr, dtype=np.int64)
    out = {}
    for k in range(cache.n_responses) if responses is None else responses:
        start, stop = cache.response_rows(int(k))
        out[int(k)] = row_labels_to_tokens(row_phases(cache, int(k), params), np.diff(trp[start : stop + 1]))
    return out


def row_labels_to_tokens(row_labels: np.ndarray, row_tokens: np.ndarray) -> np.ndarray:
    """Per-token labels from per-row labels: each row's label repeated over its tokens.

    >>> row_labels_to_tokens(np.array([1, 0, -1]), np.array([2, 3, 1])).tolist()
    [1, 1, 0, 0, 0, -1]
    """
    lab = np.asarray(row_labels, dtype=np.int8)
    n = np.asarray(row_tokens, dtype=np.int64)
    if lab.shape != n.shape:
        raise ValueError(f"{len(lab)} row labels for {len(n)} rows")
    return np.repeat(lab, np.maximum(n, 0))
