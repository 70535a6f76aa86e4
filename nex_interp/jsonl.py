"""Reading JSONL inputs (prompts, responses, annotations) with one-line errors naming the line.

The one home of JSONL reading: :func:`iter_jsonl` yields ``(line number, object)``;
:func:`read_jsonl` returns the rows as a list.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

from .errors import NexError

#: the key :func:`read_jsonl` stores each row's line number under (``line_numbers=True``)
LINE_KEY = "_line"


class InputError(NexError):
    """A JSONL input file is missing or malformed."""


def iter_jsonl(path: str | os.PathLike, what: str, error: type[NexError], missing_hint: str) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSONL file.

    A missing file, a line that is not JSON, or a line that is not a JSON object raises ``error``
    with one line naming ``what``, the file and the line number.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} not found: {missing_hint}")
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise error(f"{what} {path} line {lineno} is not valid JSON ({e.msg}): fix or remove that line") from None
            if not isinstance(obj, dict):
                raise error(f"{what} {path} line {lineno} is not a JSON object: each line must be {{...}}")
            yield lineno, obj


def read_jsonl(
    path: str | os.PathLike,
    what: str = "JSONL file",
    *,
    error: type[NexError] = InputError,
    missing_hint: str = "give an existing JSONL file",
    line_numbers: bool = False,
) -> list[dict]:
    """The rows of a JSONL file (blank lines skipped), with :func:`iter_jsonl`'s one-line errors.

    ``line_numbers`` adds each row's line in the file under :data:`LINE_KEY` (``"_line"``), for
    later errors about a row (e.g. a prompt without text) to name its line.
    """
    rows = iter_jsonl(path, what, error, missing_hint)
    return [dict(row, **{LINE_KEY: n}) for n, row in rows] if line_numbers else [row for _, row in rows]
