"""Extracting a final answer from a response's text and checking it against a reference.

Used for majority voting (which needs an answer per response) and, when a responses file has no
``correct`` field, for grading. A task with its own answer format plugs in its own function
(``nex select --extractor module:function``); the default understands the common formats.
"""

from __future__ import annotations

import importlib
import re
from typing import Callable

from ..errors import ConfigError

#: fields, in order, that may hold the reference (gold) answer in a responses row
REFERENCE_FIELDS = ("reference_answer", "reference", "gold", "target", "answer")

_BOXED = re.compile(r"\\boxed\{")
_LABELLED = re.compile(r"(?:final answer|answer)\s*(?:is|:|=)\s*([^\n]+)", re.IGNORECASE)
_ANS = re.compile(r"(?:^|\s)ans\s+([^\n;]+)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


def _last_boxed(text: str) -> str | None:
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    i = starts[-1]
    depth, j = 1, i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i : j - 1] if depth == 0 else None


def _first_phrase(text: str) -> str:
    """The answer at the start of ``text``: a leading number, else the text up to the first . , ; or : break."""
    text = text.strip()
    num = _NUMBER.match(text)
    if num:
        return num.group(0)
    return re.split(r"[.,;:](?:\s|$)", text, maxsplit=1)[0]


def extract_answer(text: str) -> str | None:
    """The final answer of a response, or None.

    In order: the last ``\\boxed{...}``; the last ``ans X`` (the zoo's format); the text after the
    last "answer is" / "answer:"; the last number. The result is normalised with
    :func:`normalize_answer`.

    >>> extract_answer("so the answer is 42.")
    '42'
    >>> extract_answer("the answer is 7 . verify : 7 - 3 = 4")
    '7'
    >>> extract_answer("Answer: blue whale, probably")
    'blue whale'
    >>> extract_answer("try 3 ; ans 10 15")
    '10 15'
    """
    if not text:
        return None
    cand = _last_boxed(text)
    if cand is None:
        m = list(_ANS.finditer(text))
        cand = m[-1].group(1) if m else None
    if cand is None:
        m = list(_LABELLED.finditer(text))
        cand = _first_phrase(m[-1].group(1)) if m else None
    if cand is None:
        m = _NUMBER.findall(text)
        cand = m[-1] if m else None
    return normalize_answer(cand)


def normalize_answer(answer: object) -> str | None:
    """Canonical form for comparing answers: trimmed, lower-case, single spaces, no trailing period,
    numbers written canonically (``"10.0"`` -> ``"10"``). None or empty gives None."""
    if answer is None:
        return None
    s = " ".join(str(answer).strip().lower().split()).rstrip(".").strip()
    s = s.replace("$", "").strip()
    if not s:
        return None
    try:
        f = float(s.replace(",", ""))
    except ValueError:
        return s
    if f != f or f in (float("inf"), float("-inf")):
        return s
    return str(int(f)) if f == int(f) else repr(f)


def load_callable(spec: str, what: str) -> Callable:
    """Import ``module:function`` (for a user's answer extractor or checker)."""
    mod_name, sep, fn_name = spec.partition(":")
    if not sep or not mod_name or not fn_name:
        raise ConfigError(f"{what} {spec!r} is not of the form module:function")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ConfigError(f"{what} {spec!r}: cannot import module {mod_name!r} ({e})") from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise ConfigError(f"{what} {spec!r}: module {mod_name!r} has no function {fn_name!r}")
    return fn
