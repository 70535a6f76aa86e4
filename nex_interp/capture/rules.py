"""Activation rules: which neurons count as *active* on a token, and with what mass.

A rule is written as ``KIND:VALUE[,sign=SIGN]`` on the command line (``--rule``):

``abs:T``       a neuron is active where its activation exceeds the absolute threshold ``T``.
``topk:K``      the ``K`` most active units of each layer on each token (and > 0).
``quantile:Q``  per-layer thresholds: the ``Q``-quantile of the layer's activations over a calibration
                sample of responses (the first ``calib_responses`` of the capture); the calibrated
                thresholds are stored in the cache manifest, so a resumed capture reuses them.

Sign. The neuron activation (``blocks.{L}.mlp.out.hook_in``) of a gated MLP is signed
(``act(gate) * up``), while NEX masses must be >= 0. With ``sign=positive`` (the default) a rule
looks at the activation itself: only positive excursions count and the mass is the activation.
With ``sign=magnitude`` it looks at ``|activation|`` and the mass is ``|activation|``, so strongly
negative units count too. Either way every stored mass is >= 0.

The default rule, :data:`DEFAULT_RULE`, is ``topk:2``; ``docs/capture.md`` gives the densities
measured on SmolLM2 that justify it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from jaxtyping import Bool, Float
    from torch import Tensor

DEFAULT_RULE = "topk:2"
SIGNS = ("positive", "magnitude")

#: the rule registry: kind -> (what VALUE means, description with its origin)
RULES: dict[str, tuple[str, str]] = {
    "abs": ("T >= 0, a float", "fixed threshold on the activation, as in the NEX reference's capture (Chen et al. 2026)"),
    "topk": ("K >= 1, an integer", "per-token top-K units of each layer (a TopK sparsity in the manner of Gao et al. 2024, arXiv 2406.04093)"),
    "quantile": ("0 < Q < 1", "per-layer Q-quantile thresholds calibrated on a sample of responses"),
}

# log-spaced histogram used to calibrate quantile thresholds: bounded memory, deterministic
_HIST_LO, _HIST_HI, _HIST_BINS = -4.0, 5.0, 9000


@dataclass(frozen=True)
class ActivationRule:
    """A parsed activation rule; see the module docstring. ``thresholds`` holds per-layer
    thresholds once a ``quantile`` rule has been calibrated (``None`` before)."""

    kind: str
    value: float
    sign: str = "positive"
    thresholds: tuple[float, ...] | None = None
    calib_responses: int = 16

    def __post_init__(self) -> None:
        if self.kind not in RULES:
            raise ConfigError(f"unknown activation rule {self.kind!r}: use one of {', '.join(f'{k}:VALUE' for k in RULES)}")
        if self.sign not in SIGNS:
            raise ConfigError(f"unknown rule sign {self.sign!r}: use sign=positive or sign=magnitude")
        v = self.value
        ok = {
            "abs": math.isfinite(v) and v >= 0,
            "topk": v >= 1 and float(v).is_integer(),
            "quantile": 0 < v < 1,
        }[self.kind]
        if not ok:
            raise ConfigError(f"rule {self.kind}:{v:g} is invalid: VALUE must be {RULES[self.kind][0]}")
        if self.calib_responses < 1:
            raise ConfigError(f"calib_responses must be >= 1, got {self.calib_responses}")

    @property
    def needs_calibration(self) -> bool:
        return self.kind == "quantile" and self.thresholds is None

    @property
    def spec(self) -> str:
        """The rule as written on the command line."""
        v = str(int(self.value)) if self.kind == "topk" else f"{self.value:g}"
        return f"{self.kind}:{v}" + ("" if self.sign == "positive" else f",sign={self.sign}")

    def to_dict(self) -> dict:
        d = {"spec": self.spec, "kind": self.kind, "value": self.value, "sign": self.sign}
        if self.kind == "quantile":
            d["calib_responses"] = self.calib_responses
            d["thresholds"] = list(self.thresholds) if self.thresholds is not None else None
        return d

    @staticmethod
    def from_dict(d: dict) -> "ActivationRule":
        try:
            th = d.get("thresholds")
            return ActivationRule(
                str(d["kind"]), float(d["value"]), str(d.get("sign", "positive")),
                tuple(float(t) for t in th) if th is not None else None, int(d.get("calib_responses", 16)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"malformed activation rule {d!r}: {e}") from None

    def with_thresholds(self, thresholds: list[float]) -> "ActivationRule":
        return replace(self, thresholds=tuple(float(t) for t in thresholds))

    # ------------------------------------------------------------------ applying
    def select_topk(self, x: "Float[Tensor, 'tok d_mlp']") -> tuple["Tensor", "Float[Tensor, 'tok k']"]:
        """A ``topk`` rule, sparse: per token the ``K`` top units and their float32 mass (a unit
        with mass 0 is not active: top-K units must also be > 0)."""
        v = x if self.sign == "positive" else x.abs()
        top = v.topk(min(int(self.value), v.shape[-1]), dim=-1, sorted=False)
        return top.indices, top.values.float().clamp_(min=0)

    def select(self, x: "Float[Tensor, 'tok d_mlp']", layer: int) -> tuple["Bool[Tensor, 'tok d_mlp']", "Float[Tensor, 'tok d_mlp']"]:
        """(active, mass): which units are active on each token, and their mass (float32, 0 where inactive)."""
        import torch

        v = x if self.sign == "positive" else x.abs()
        if self.kind == "abs":
            active = v > self.value
        elif self.kind == "quantile":
            if self.thresholds is None:
                raise ConfigError("quantile rule used before calibration: calibrate it on a sample first")
            if layer >= len(self.thresholds):
                raise ConfigError(f"quantile rule has {len(self.thresholds)} thresholds but layer {layer} was captured")
            active = v > self.thresholds[layer]
        else:
            k = min(int(self.value), v.shape[-1])
            top = v.topk(k, dim=-1, sorted=False)
            active = torch.zeros(v.shape, dtype=torch.bool, device=v.device)
            active.scatter_(-1, top.indices, top.values > 0)
        mass = torch.where(active, v.float(), torch.zeros((), dtype=torch.float32, device=v.device))
        return active, mass


def parse_rule(text: str, calib_responses: int = 16) -> ActivationRule:
    """Parse ``KIND:VALUE[,sign=SIGN]`` (e.g. ``topk:8``, ``abs:2.5``, ``quantile:0.999,sign=magnitude``)."""
    if not isinstance(text, str) or ":" not in text:
        raise ConfigError(f"activation rule {text!r} is not KIND:VALUE: use e.g. topk:8, abs:2.5 or quantile:0.999")
    head, *opts = text.strip().split(",")
    kind, _, value = head.partition(":")
    sign = "positive"
    for opt in opts:
        key, _, val = opt.partition("=")
        if key.strip() != "sign":
            raise ConfigError(f"unknown rule option {opt!r} in {text!r}: the only option is sign=positive|magnitude")
        sign = val.strip()
    try:
        v = float(value)
    except ValueError:
        raise ConfigError(f"activation rule {text!r}: VALUE {value!r} is not a number") from None
    return ActivationRule(kind.strip(), v, sign, None, calib_responses)


# ---------------------------------------------------------------------- calibration


class QuantileCalibrator:
    """Per-layer histograms of activations (log-spaced bins over ``[1e-4, 1e5]``) on the device.

    ``add(layer, x)`` accumulates one chunk of response-token activations; ``thresholds(q)`` reads
    each layer's ``q``-quantile off its histogram, interpolating within the bin (relative error
    below 0.25%). Values <= 1e-4 (including all negatives under ``sign=positive``) share the lowest
    bin; a quantile that falls there gives threshold 0.
    """

    def __init__(self, n_layers: int, sign: str, device) -> None:
        import torch

        self.sign = sign
        self.edges = torch.logspace(_HIST_LO, _HIST_HI, _HIST_BINS + 1, dtype=torch.float32, device=device)
        self.counts = torch.zeros(n_layers, _HIST_BINS + 2, dtype=torch.int64, device=device)

    def add(self, layer: int, x: "Float[Tensor, 'tok d_mlp']") -> None:
        import torch

        v = (x if self.sign == "positive" else x.abs()).float().flatten()
        idx = torch.bucketize(v, self.edges)  # 0: below 1e-4, len(edges): above 1e5
        self.counts[layer] += torch.bincount(idx, minlength=self.counts.shape[1])

    def thresholds(self, q: float) -> list[float]:
        import numpy as np

        counts = self.counts.cpu().numpy()
        edges = self.edges.cpu().numpy().astype(np.float64)
        out = []
        for c in counts:
            total = int(c.sum())
            if total == 0:
                out.append(0.0)
                continue
            target = q * total
            cum = np.cumsum(c)
            b = int(np.searchsorted(cum, target, side="left"))
            if b == 0:
                out.append(0.0)
            elif b >= len(edges):
                out.append(float(edges[-1]))
            else:
                lo, hi = edges[b - 1], edges[b]
                before = cum[b - 1]
                frac = (target - before) / max(c[b], 1)
                out.append(float(lo * (hi / lo) ** frac))
        return out

