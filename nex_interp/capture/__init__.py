"""Capture sparse MLP-activation caches from TransformerLens 4 models.

Importing this package does not import torch; the functions do. Entry points:
:func:`capture_cache` (:mod:`.run`: capture, then return the opened cache),
:func:`~nex_interp.capture.engine.write_cache` (:mod:`.engine`: the capture itself, returning a
:class:`~nex_interp.capture.engine.CaptureReport` of what it did) and
:class:`~nex_interp.capture.engine.CaptureConfig`.
"""

from .rules import DEFAULT_RULE, RULES, ActivationRule, parse_rule
from .run import CapturedCache, capture_cache

_FROM_ENGINE = ("CaptureConfig", "CaptureReport", "write_cache", "parse_layers")


def __getattr__(name: str):
    # the engine (and the model helpers it needs) loads on first use, so that reading an activation
    # rule (as the nex parser does) stays cheap
    if name in _FROM_ENGINE:
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CapturedCache", "CaptureConfig", "CaptureReport", "capture_cache", "write_cache", "parse_layers", "DEFAULT_RULE",
           "RULES", "ActivationRule", "parse_rule"]
