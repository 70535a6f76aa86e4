"""Capture sparse MLP-activation caches from TransformerLens 4 models.

Importing this package does not import torch; the functions do. Main entry points:
:func:`nex_interp.capture.capture.capture_cache` and :class:`~nex_interp.capture.capture.CaptureConfig`.
"""

from .capture import CaptureConfig, CaptureReport, capture_cache, parse_layers
from .rules import DEFAULT_RULE, RULES, ActivationRule, parse_rule

__all__ = ["CaptureConfig", "CaptureReport", "capture_cache", "parse_layers", "DEFAULT_RULE", "RULES", "ActivationRule", "parse_rule"]
