"""Reading JSONL inputs (prompts, responses, annotations) with one-line errors naming the line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

from .errors import NexError


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
