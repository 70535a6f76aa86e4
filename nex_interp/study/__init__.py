"""``nex study``: the paper's sweep as one command (models, merges, generation, capture, weights,
scores, ranking, best-of-N), on one machine or sharded on a Ray cluster.

* :mod:`.config`: the TOML config, read into typed dataclasses;
* :mod:`.models`: the models, and the merge variants built from a merge spec;
* :mod:`.stages`: what is finished (resume) and the one-driver lock;
* :mod:`.run`: :func:`run_study`, the stages in order.

Importing this package imports neither torch nor Ray.
"""

from .config import StudyConfig, parse_study, read_study
from .run import run_study

__all__ = ["StudyConfig", "parse_study", "read_study", "run_study"]
