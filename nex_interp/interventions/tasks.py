"""Evaluation tasks, registered by name: problems with prompts and an answer checker.

An experiment names its task (``evaluation.task``); :func:`get_task` builds it with the
``[evaluation.task_options]`` table. Registered tasks:

* ``zoo``: the zoo's box-search task (:mod:`nex_interp.zoo.task`: problems from a seed, checked by
  its ``is_correct``). No options.
* ``toy-echo``: a tiny self-contained task for tests and pico models: the prompt lists digits and
  the response is correct when it contains the prompt's last digit. Options: ``length``.

Add a task with :func:`register_task`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from nex_interp.errors import ConfigError


@dataclass(frozen=True)
class EvalProblem:
    """One evaluation problem: an id, the prompt text (fed as is) and what the checker needs."""

    id: str
    prompt: str
    reference: Any


class Task(Protocol):
    """A generator of problems and a checker of responses."""

    name: str

    def problems(self, n: int, seed: int) -> list[EvalProblem]: ...

    def is_correct(self, problem: EvalProblem, response: str) -> bool: ...


@dataclass(frozen=True)
class ZooTask:
    """The zoo's task: :func:`nex_interp.zoo.task.generate_problems` and its ``is_correct``."""

    name: str = "zoo"

    def problems(self, n: int, seed: int) -> list[EvalProblem]:
        from nex_interp.zoo.task import generate_problems

        return [EvalProblem(p.id, p.prompt(), p) for p in generate_problems(n, seed, prefix="tx")]

    def is_correct(self, problem: EvalProblem, response: str) -> bool:
        from nex_interp.zoo.task import is_correct

        return bool(is_correct(problem.reference, response))


@dataclass(frozen=True)
class ToyEchoTask:
    """Prompt ``<bos> 3 1 4 1 5 :``; correct when the response contains the last digit (``5``)."""

    length: int = 5
    name: str = "toy-echo"

    def problems(self, n: int, seed: int) -> list[EvalProblem]:
        rng = random.Random(seed)
        out = []
        for i in range(n):
            digits = [str(rng.randrange(10)) for _ in range(self.length)]
            out.append(EvalProblem(f"echo{seed}-{i:05d}", "<bos> " + " ".join(digits) + " :", digits[-1]))
        return out

    def is_correct(self, problem: EvalProblem, response: str) -> bool:
        return problem.reference in response.split()


_TASKS: dict[str, Callable[[dict], Task]] = {}


def register_task(name: str, factory: Callable[[dict], Task]) -> None:
    """Register ``factory(options) -> Task`` under ``name``."""
    _TASKS[name] = factory


def task_names() -> list[str]:
    return sorted(_TASKS)


def _zoo(options: dict) -> Task:
    if options:
        raise ConfigError(f"evaluation.task_options: unknown option(s) {sorted(options)} for task 'zoo' (it takes none)")
    return ZooTask()


def _echo(options: dict) -> Task:
    unknown = set(options) - {"length"}
    if unknown:
        raise ConfigError(f"evaluation.task_options: unknown option(s) {sorted(unknown)} for task 'toy-echo' (valid: length)")
    length = options.get("length", 5)
    if not isinstance(length, int) or length < 1:
        raise ConfigError(f"evaluation.task_options.length must be a positive integer, got {length!r}")
    return ToyEchoTask(length)


register_task("zoo", _zoo)
register_task("toy-echo", _echo)


def get_task(name: str, options: dict | None = None) -> Task:
    """The task registered as ``name``, built with ``options``."""
    if name not in _TASKS:
        raise ConfigError(f"evaluation.task: unknown task {name!r}; registered tasks: {', '.join(task_names())}")
    return _TASKS[name](dict(options or {}))
