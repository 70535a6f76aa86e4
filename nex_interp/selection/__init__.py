"""Label-free best-of-N selection and model ranking, measured against the known baselines.

* :mod:`.candidates`: the candidate set (responses grouped by problem) and its loading.
* :mod:`.registry` / :mod:`.methods`: selection methods by name, with citations.
* :mod:`.baselines`: the output-side signals (self-certainty, DeepConf, entropy) on numpy arrays.
* :mod:`.best_of_n`: picks per problem, accuracy with bootstrap intervals, ``selection.csv``.
* :mod:`.ranking`: correlation of variant scores with accuracy, Regret@1, top-1 hit.
* :mod:`.sample_efficiency`: ranking quality against the number of unlabeled problems.
* :mod:`.pipeline`: attaching NEX scores and token statistics from a cache.
"""

from . import methods as _methods  # noqa: F401  (registers the built-in methods)
from .best_of_n import MethodResult, SelectionReport, run_best_of_n, write_picks_csv, write_selection_csv
from .candidates import CandidateSet, candidates_from_rows, load_responses
from .pipeline import SelectConfig, load_candidates, select_best_of_n
from .ranking import rank_all, rank_metric
from .registry import MissingInput, SelectionMethod, SelectionOptions, get_method, method_names, register_method

__all__ = [
    "CandidateSet",
    "MethodResult",
    "MissingInput",
    "SelectConfig",
    "SelectionMethod",
    "SelectionOptions",
    "SelectionReport",
    "candidates_from_rows",
    "get_method",
    "load_candidates",
    "load_responses",
    "method_names",
    "rank_all",
    "rank_metric",
    "register_method",
    "run_best_of_n",
    "select_best_of_n",
    "write_picks_csv",
    "write_selection_csv",
]
