"""Best-of-N evaluation: every method picks one response per problem; accuracy with bootstrap CIs.

Ties are resolved in expectation, not by an arbitrary index: when several responses share the top
score (or several answers share the top vote), the problem's accuracy is the mean correctness of a
uniformly random choice among them. So ``random`` (all tied) is its exact expected accuracy, and a
method that cannot tell candidates apart scores exactly as ``random``. A response whose score is
NaN (its input is missing) is never picked unless every candidate is NaN (then: random). Votes go
only to responses with an extracted answer; answers tied on total weight are separated by how many
responses gave them (so a weighted vote whose weights are all 0 is a plain majority vote), then
chosen between uniformly; a problem without any answer falls back to random.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..provenance import record, write_sidecar
from ..stats import N_BOOT, bootstrap_mean_ci
from .candidates import CandidateSet
from .registry import MissingInput, SelectionMethod, SelectionOptions, get_method, method_names, missing_inputs

SELECTION_COLUMNS = ("method", "accuracy", "ci_low", "ci_high")


@dataclass(frozen=True)
class Pick:
    """One method's choice on one problem: a representative response, how many were tied, and the
    expected correctness of the choice (NaN without labels)."""

    problem_id: str
    response_id: str
    n_tied: int
    expected_correct: float


@dataclass(frozen=True)
class MethodResult:
    """A method's best-of-N accuracy over problems (mean of per-problem expected correctness)."""

    method: str
    accuracy: float
    ci_low: float
    ci_high: float
    n_problems: int
    uses_labels: bool
    citation: str
    picks: list[Pick]


@dataclass(frozen=True)
class SelectionReport:
    """All methods' results on one candidate set; ``skipped`` maps a method to why it could not run."""

    results: list[MethodResult]
    skipped: dict[str, str] = field(default_factory=dict)
    n_candidates: int = 0

    def to_frame(self):
        """A pandas DataFrame, one row per method (``method, accuracy, ci_low, ci_high, n_problems, uses_labels, citation``)."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "method": r.method,
                    "accuracy": r.accuracy,
                    "ci_low": r.ci_low,
                    "ci_high": r.ci_high,
                    "n_problems": r.n_problems,
                    "uses_labels": r.uses_labels,
                    "citation": r.citation,
                }
                for r in self.results
            ]
        )

    def picks_frame(self):
        """A pandas DataFrame of every pick: ``method, problem_id, response_id, n_tied, expected_correct``."""
        import pandas as pd

        return pd.DataFrame(
            [
                {"method": r.method, "problem_id": p.problem_id, "response_id": p.response_id,
                 "n_tied": p.n_tied, "expected_correct": p.expected_correct}
                for r in self.results
                for p in r.picks
            ]
        )

    def result(self, method: str) -> MethodResult:
        for r in self.results:
            if r.method == method:
                return r
        raise KeyError(method)


def _mean_correct(correct: np.ndarray | None, idx: np.ndarray) -> float:
    if correct is None:
        return float("nan")
    return float(np.mean(correct[idx]))


def pick_by_score(values: np.ndarray, idx: np.ndarray, correct: np.ndarray | None) -> tuple[int, int, float]:
    """(representative index, number tied, expected correctness) of picking the highest value among ``idx``."""
    v = np.asarray(values, dtype=np.float64)[idx]
    ok = np.isfinite(v)
    if not ok.any():
        tied = idx
    else:
        top = v[ok].max()
        tied = idx[ok & (v == top)]
    return int(tied[0]), len(tied), _mean_correct(correct, tied)


def pick_by_vote(
    weights: np.ndarray, answers: list[str | None], idx: np.ndarray, correct: np.ndarray | None
) -> tuple[int, int, float]:
    """(representative index, number of responses in the winning answers, expected correctness) of a
    weighted vote over the answers of ``idx``; tied answers are chosen between uniformly."""
    w = np.asarray(weights, dtype=np.float64)
    totals: dict[str, float] = {}
    members: dict[str, list[int]] = {}
    for i in idx:
        a = answers[i]
        if a is None or not np.isfinite(w[i]):
            continue
        totals[a] = totals.get(a, 0.0) + float(w[i])
        members.setdefault(a, []).append(int(i))
    if not totals:
        return int(idx[0]), len(idx), _mean_correct(correct, idx)
    top = max(totals.values())
    winners = [a for a in totals if totals[a] == top]  # first-appearance order
    if len(winners) > 1:  # equal weight (e.g. all GMF 0): the answer more responses gave wins
        most = max(len(members[a]) for a in winners)
        winners = [a for a in winners if len(members[a]) == most]
    exp = float(np.mean([_mean_correct(correct, np.asarray(members[a])) for a in winners]))
    first = members[winners[0]]
    rep = max(first, key=lambda i: (w[i], -i))
    return int(rep), sum(len(members[a]) for a in winners), exp


def evaluate_method(
    method: SelectionMethod, cands: CandidateSet, options: SelectionOptions, n_boot: int = N_BOOT, seed: int = 0
) -> MethodResult:
    """Run one method on every problem of ``cands``; raises :class:`MissingInput` if it cannot run."""
    missing = missing_inputs(method, cands)
    if missing:
        raise MissingInput(f"selection method {method.name!r} needs {', '.join(missing)}")
    values = np.asarray(method.compute(cands, options), dtype=np.float64)
    if values.shape != (len(cands),):
        raise ValueError(f"method {method.name!r} returned shape {values.shape} for {len(cands)} responses")
    picks, per_problem = [], []
    for pid, idx in cands.problems():
        if method.kind == "score":
            rep, n_tied, exp = pick_by_score(values, idx, cands.correct)
        else:
            rep, n_tied, exp = pick_by_vote(values, cands.answers, idx, cands.correct)
        picks.append(Pick(pid, cands.ids[rep], n_tied, exp))
        per_problem.append(exp)
    ci = bootstrap_mean_ci(np.asarray(per_problem), n_boot=n_boot, seed=seed)
    n_eval = int(np.isfinite(per_problem).sum())
    return MethodResult(method.name, ci.estimate, ci.low, ci.high, n_eval, method.uses_labels, method.citation, picks)


def run_best_of_n(
    cands: CandidateSet,
    methods: list[str] | None = None,
    options: SelectionOptions | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> SelectionReport:
    """Evaluate ``methods`` (default: every registered one) on ``cands``.

    With ``methods=None`` a method whose inputs are absent is skipped and listed in
    ``report.skipped`` with the reason; a method named explicitly must be able to run
    (:class:`MissingInput` otherwise). The same bootstrap seed is used for every method, so their
    intervals come from the same resampled problem sets.
    """
    options = options or SelectionOptions()
    explicit = methods is not None
    names = list(methods) if explicit else method_names()
    results, skipped = [], {}
    for name in names:
        m = get_method(name)
        missing = missing_inputs(m, cands)
        if missing and not explicit:
            skipped[name] = "needs " + ", ".join(missing)
            continue
        results.append(evaluate_method(m, cands, options, n_boot=n_boot, seed=seed))
    return SelectionReport(results, skipped, len(cands))


def write_selection_csv(report: SelectionReport, path: str | Path, provenance: dict | None = None) -> Path:
    """Write ``selection.csv`` (``method, accuracy, ci_low, ci_high``, then ``n_problems``,
    ``uses_labels``, ``citation``) atomically, with its provenance sidecar."""
    path = Path(path)
    df = report.to_frame()
    if df.empty:
        import pandas as pd

        df = pd.DataFrame(columns=[*SELECTION_COLUMNS, "n_problems", "uses_labels", "citation"])
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    write_sidecar(path, provenance or record("selection", inputs={}, skipped=report.skipped))
    return path


def write_picks_csv(report: SelectionReport, path: str | Path, provenance: dict | None = None) -> Path:
    """Write every method's pick per problem (``picks.csv``) atomically, with its provenance sidecar."""
    path = Path(path)
    with atomic_path(path) as tmp:
        report.picks_frame().to_csv(tmp, index=False, float_format="%.6g")
    write_sidecar(path, provenance or record("selection picks"))
    return path


def method_scores(report: SelectionReport, cands: CandidateSet, options: SelectionOptions | None = None):
    """Each evaluated method's per-response value (pandas DataFrame: ``id, problem_id``, then one
    column per method of ``report``), what ``nex select`` writes to ``scores.csv``."""
    import pandas as pd

    options = options or SelectionOptions()
    cols = {"id": cands.ids, "problem_id": cands.problem_ids}
    for r in report.results:
        cols[r.method] = get_method(r.method).compute(cands, options)
    return pd.DataFrame(cols)


def write_method_scores_csv(report: SelectionReport, cands: CandidateSet, path: str | Path,
                            options: SelectionOptions | None = None, provenance: dict | None = None) -> Path:
    """Write :func:`method_scores` (``scores.csv``) atomically, with its provenance sidecar."""
    path = Path(path)
    with atomic_path(path) as tmp:
        method_scores(report, cands, options).to_csv(tmp, index=False, float_format="%.6g")
    write_sidecar(path, provenance or record("selection scores"))
    return path
