"""Checks of a transfer config that need no loaded model: files exist, shapes agree, k fits.

A model's shape is read from its ``config.json`` (local directories and ``zoo:`` models); hub
names and GGUF files are checked once loaded. Each problem is one :class:`ConfigError` line naming
the config field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nex_interp.errors import ConfigError, NexError

from .config import TransferConfig


@dataclass(frozen=True)
class ModelShape:
    """What a model's config.json says about its MLPs (read without loading the weights)."""

    arch: str
    n_layers: int
    d_model: int
    d_mlp: int


def peek_shape(spec: str, field_name: str) -> ModelShape | None:
    """The shape of a local-directory or ``zoo:`` model from its config.json; None if unknowable cheaply.

    A local path that does not exist, or an unknown zoo model, is a ConfigError naming ``field_name``.
    """
    path: Path | None = None
    if spec.startswith("zoo:"):
        try:
            from nex_interp.zoo import zoo_model_dir  # type: ignore[attr-defined]
        except ImportError:
            return None
        try:
            path = Path(zoo_model_dir(spec[4:]))
        except NexError as e:  # the zoo's own message says which names exist
            raise ConfigError(f"config field {field_name}: {e}") from None
    else:
        p = Path(spec).expanduser()
        looks_like_path = spec.startswith((".", "/", "~")) or p.exists()
        if not looks_like_path:
            return None  # a hub name or 'smollm2': resolved by the loader
        if not p.is_dir():
            if spec.endswith(".gguf") and p.is_file():
                return None
            raise ConfigError(f"config field {field_name}: model path {spec} does not exist: give a model directory, .gguf file, zoo:NAME or hub name")
        path = p
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ConfigError(f"config field {field_name}: model directory {path} has no config.json")
    cfg = json.loads(cfg_file.read_text())
    arch = str(cfg.get("model_type", "?"))
    n_layers = int(cfg.get("num_hidden_layers") or cfg.get("n_layer") or 0)
    d_model = int(cfg.get("hidden_size") or cfg.get("n_embd") or 0)
    d_mlp = int(cfg.get("intermediate_size") or cfg.get("n_inner") or (4 * d_model if arch == "gpt2" else 0))
    return ModelShape(arch, n_layers, d_model, d_mlp)


def check_shapes(cfg: TransferConfig, donor: ModelShape | None, recipient: ModelShape | None) -> None:
    """Architecture and set-size checks that need only the models' shapes."""
    if donor is not None and recipient is not None and donor != recipient:
        raise ConfigError(
            f"config fields models.donor and models.recipient: architectures differ "
            f"(donor {donor.arch} {donor.n_layers} layers x {donor.d_mlp} units, d_model {donor.d_model}; "
            f"recipient {recipient.arch} {recipient.n_layers} x {recipient.d_mlp}, d_model {recipient.d_model})"
        )
    shape = recipient or donor
    if shape is None or shape.d_mlp <= 0:
        return
    limit = shape.d_mlp if cfg.sets.scope == "layer" else shape.d_mlp * shape.n_layers
    what = "the layer width" if cfg.sets.scope == "layer" else f"the model's {shape.n_layers} layers x {shape.d_mlp} units"
    for k in cfg.sets.k:
        if k > limit:
            raise ConfigError(f"config field sets.k: k = {k} is larger than {what} ({limit}) with scope {cfg.sets.scope!r}")


def check_before_loading(cfg: TransferConfig) -> tuple[ModelShape | None, ModelShape | None]:
    """Every check possible without loading a model: files exist, shapes agree, k fits."""
    if cfg.weights.file and not cfg.path(cfg.weights.file).is_file():
        raise ConfigError(f"config field weights.file: {cfg.path(cfg.weights.file)} does not exist")
    if cfg.weights.cache and not cfg.path(cfg.weights.cache).is_dir():
        raise ConfigError(f"config field weights.cache: {cfg.path(cfg.weights.cache)} is not a cache directory")
    recipient = peek_shape(_spec(cfg, cfg.models.recipient), "models.recipient")
    donor = peek_shape(_spec(cfg, cfg.models.donor), "models.donor") if cfg.models.donor and cfg.operation.kind != "ablate" else None
    if cfg.weights.model:
        source = peek_shape(_spec(cfg, cfg.weights.model), "weights.model")
        if source is not None and recipient is not None and (source.n_layers, source.d_mlp) != (recipient.n_layers, recipient.d_mlp):
            raise ConfigError(
                f"config field weights.model: its MLPs ({source.n_layers} x {source.d_mlp}) differ from the recipient's "
                f"({recipient.n_layers} x {recipient.d_mlp}): weights must come from the same architecture"
            )
    check_shapes(cfg, donor, recipient)
    return donor, recipient


def _spec(cfg: TransferConfig, spec: str) -> str:
    """A model spec with a relative local path resolved against the config's directory."""
    if spec.startswith("zoo:") or spec == "smollm2":
        return spec
    p = cfg.path(spec)
    return str(p) if (spec.startswith((".", "/", "~")) or p.exists()) else spec


def model_spec(cfg: TransferConfig, spec: str) -> str:
    """The spec to hand to the loader (relative paths resolved against the config file)."""
    return _spec(cfg, spec)
