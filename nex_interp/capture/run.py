"""Capture and get the cache back: :func:`capture_cache` runs :func:`~nex_interp.capture.engine.write_cache`
and returns the opened cache, with what the capture did as its ``capture_report``.

Importing this module does not import torch (the capture itself does, when it runs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from ..cache.arrays import CacheArrays

if TYPE_CHECKING:  # pragma: no cover
    from ..models.loader import LoadedModel
    from .engine import CaptureConfig, CaptureReport


@dataclass(frozen=True)
class CapturedCache(CacheArrays):
    """An opened cache (see :class:`~nex_interp.cache.arrays.CacheArrays`) that was just captured;
    ``capture_report`` says what the capture did (counts, skips, throughput)."""

    capture_report: "CaptureReport | None" = None


def capture_cache(
    model: "LoadedModel", responses: list[dict], out: str | os.PathLike, config: "CaptureConfig | None" = None,
    *, resume: bool = True, **settings,
) -> CapturedCache:
    """Capture ``responses`` (rows with ``id``, ``prompt``, ``response``) of ``model`` into the cache
    directory ``out`` and return the opened cache.

    ``config``: a :class:`~nex_interp.capture.engine.CaptureConfig`; or give its fields as keywords
    (``capture_cache(model, rows, "cache", row_tokens=2, rule="abs:0.5", progress=False)``), not both.
    ``resume``: continue an existing cache of the same model and settings (as :func:`~nex_interp.capture.engine.write_cache`).
    """
    from ..cache.reader import open_cache
    from ..errors import ConfigError
    from .engine import CaptureConfig, write_cache

    if config is not None and settings:
        raise ConfigError(f"give capture settings either as config= or as keywords, not both (got {', '.join(sorted(settings))})")
    if config is None:
        known = {f.name for f in fields(CaptureConfig)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(f"unknown capture setting(s) {', '.join(unknown)}: known are {', '.join(sorted(known))}")
        config = CaptureConfig(**settings)
    report = write_cache(model, responses, out, config, resume=resume)
    cache = open_cache(out)
    return CapturedCache(**{f.name: getattr(cache, f.name) for f in fields(CacheArrays)}, capture_report=report)


__all__ = ["CapturedCache", "capture_cache"]
