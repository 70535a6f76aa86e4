"""Capture sparse MLP-activation caches from TransformerLens 4 models.

Importing this package does not import torch; the functions do. Main entry points:
:func:`nex_interp.capture.run.capture` (capture, then return the opened cache),
:func:`nex_interp.capture.capture.capture_cache` (capture, return a report) and
:class:`~nex_interp.capture.capture.CaptureConfig`. (The package has no ``capture`` attribute of
its own for the function: that name is the :mod:`.capture` module's.)
"""

from .rules import DEFAULT_RULE, RULES, ActivationRule, parse_rule
from .run import CapturedCache

_FROM_CAPTURE = ("CaptureConfig", "CaptureReport", "capture_cache", "parse_layers")


def __getattr__(name: str):
    # the capture module (and the model helpers it needs) loads on first use, so that reading an
    # activation rule (as the nex parser does) stays cheap
    if name in _FROM_CAPTURE:
        from . import capture

        return getattr(capture, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CapturedCache", "CaptureConfig", "CaptureReport", "capture_cache", "parse_layers", "DEFAULT_RULE", "RULES", "ActivationRule", "parse_rule"]
