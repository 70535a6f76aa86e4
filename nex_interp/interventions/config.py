"""The transfer experiment's configuration: a TOML file read into typed dataclasses.

Every field is checked before any model is loaded; a problem is one :class:`ConfigError` line that
names the field (``sets.k``, ``models.recipient``, ...). Relative paths are resolved against the
directory of the TOML file. See ``interventions/experiments/zoo.toml`` for a commented example and
``docs/interventions.md`` for every field.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nex_interp.errors import ConfigError, NexError

from .neuron_sets import SCOPES
from .tasks import get_task

CONDITIONS = ("effective", "redundant", "random")
OPERATIONS = ("transplant", "patch", "ablate")
ABLATIONS = ("zero", "mean")
REFERENCES = ("effective", "redundant")
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ModelsConfig:
    """donor: model spec whose neurons are given (unused by ``ablate``); recipient: the model changed."""

    recipient: str
    donor: str | None = None
    device: str = "cpu"
    dtype: str = "float32"


@dataclass(frozen=True)
class WeightsConfig:
    """Where the NEX weights come from: exactly one of ``file``, ``cache``, or ``model`` (capture).

    file:  a weights file (``nex train`` output, or the reference's dense ``.npz``).
    cache: a sparse activation cache to learn weights on (``model`` then names its model, optional).
    model: with neither file nor cache, sample ``samples`` responses per problem from this model on
           ``problems`` task problems (``seed``) at ``temperature``, capture them (``row_tokens``-token
           rows, activation ``rule``) and learn weights (kept in OUT/weights, reused on resume).
    """

    file: str | None = None
    cache: str | None = None
    model: str | None = None
    problems: int = 64
    samples: int = 4
    temperature: float = 0.8
    max_new_tokens: int = 160
    seed: int = 7
    row_tokens: int = 4
    rule: str = "abs:0.5"


@dataclass(frozen=True)
class SetsConfig:
    """k: set sizes; conditions: which sets; random_seeds: one random set per seed and k.

    scope ``model``: the k best neurons over all layers; ``layer``: the k best in each layer.
    Random sets match the per-layer counts of the ``random_reference`` set of the same k.
    """

    k: tuple[int, ...]
    conditions: tuple[str, ...] = CONDITIONS
    random_seeds: tuple[int, ...] = (0, 1, 2)
    scope: str = "model"
    random_reference: str = "effective"


@dataclass(frozen=True)
class OperationConfig:
    """kind: transplant | patch | ablate; ablation: zero | mean; mean_problems: reference inputs for mean."""

    kind: str = "transplant"
    ablation: str = "zero"
    mean_problems: int = 32


@dataclass(frozen=True)
class EvaluationConfig:
    """Greedy generation on ``problems`` problems of ``task`` (seeded), scored by the task's checker."""

    task: str = "zoo"
    problems: int = 200
    seed: int = 2026
    batch_size: int = 50
    max_new_tokens: int = 192
    bootstrap: int = 2000
    task_options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TransferConfig:
    """One transfer experiment (see the module docstring)."""

    name: str
    models: ModelsConfig
    weights: WeightsConfig
    sets: SetsConfig
    operation: OperationConfig
    evaluation: EvaluationConfig
    base_dir: str = "."

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """A stable hash of everything that determines the results (resume safety)."""
        import hashlib

        d = self.to_dict()
        d.pop("base_dir", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def path(self, value: str) -> Path:
        """``value`` resolved against the config file's directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p


# ---------------------------------------------------------------- parsing helpers


def _table(doc: dict, name: str, required: bool = True) -> dict:
    t = doc.get(name)
    if t is None:
        if required:
            raise ConfigError(f"config lacks the [{name}] table")
        return {}
    if not isinstance(t, dict):
        raise ConfigError(f"config field {name} must be a table ([{name}])")
    return t


def _no_unknown(t: dict, section: str, allowed: set[str]) -> None:
    unknown = sorted(set(t) - allowed)
    if unknown:
        raise ConfigError(f"config field {section}.{unknown[0]} is unknown; valid fields of [{section}]: {', '.join(sorted(allowed))}")


def _str(t: dict, section: str, key: str, default: Any = ..., choices: tuple[str, ...] | None = None) -> Any:
    if key not in t:
        if default is ...:
            raise ConfigError(f"config field {section}.{key} is missing")
        return default
    v = t[key]
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"config field {section}.{key} must be a non-empty string, got {v!r}")
    if choices is not None and v not in choices:
        raise ConfigError(f"config field {section}.{key}: unknown value {v!r}; use one of {', '.join(choices)}")
    return v


def _int(t: dict, section: str, key: str, default: int, minimum: int = 0) -> int:
    v = t.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ConfigError(f"config field {section}.{key} must be an integer >= {minimum}, got {v!r}")
    return v


def _float(t: dict, section: str, key: str, default: float, minimum: float = 0.0) -> float:
    v = t.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < minimum:
        raise ConfigError(f"config field {section}.{key} must be a number >= {minimum}, got {v!r}")
    return float(v)


def _int_list(t: dict, section: str, key: str, default: Any = ..., minimum: int = 0) -> tuple[int, ...]:
    if key not in t:
        if default is ...:
            raise ConfigError(f"config field {section}.{key} is missing")
        return tuple(default)
    v = t[key]
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, list) or not v or any(isinstance(x, bool) or not isinstance(x, int) or x < minimum for x in v):
        raise ConfigError(f"config field {section}.{key} must be a non-empty list of integers >= {minimum}, got {t[key]!r}")
    if len(set(v)) != len(v):
        raise ConfigError(f"config field {section}.{key} lists a value twice: {v!r}")
    return tuple(v)


# ---------------------------------------------------------------- loading


def parse_config(doc: dict, base_dir: str | Path = ".", name: str = "transfer") -> TransferConfig:
    """Validate a parsed TOML document into a :class:`TransferConfig` (no model is touched)."""
    _no_unknown(doc, "top level", {"name", "models", "weights", "sets", "operation", "evaluation"})
    name = _str(doc, "top level", "name", name)

    m = _table(doc, "models")
    _no_unknown(m, "models", {"donor", "recipient", "device", "dtype"})
    models = ModelsConfig(
        recipient=_str(m, "models", "recipient"),
        donor=_str(m, "models", "donor", None),
        device=_str(m, "models", "device", "cpu"),
        dtype=_str(m, "models", "dtype", "float32", DTYPES),
    )

    o = _table(doc, "operation", required=False)
    _no_unknown(o, "operation", {"kind", "ablation", "mean_problems"})
    operation = OperationConfig(
        kind=_str(o, "operation", "kind", "transplant", OPERATIONS),
        ablation=_str(o, "operation", "ablation", "zero", ABLATIONS),
        mean_problems=_int(o, "operation", "mean_problems", 32, minimum=1),
    )
    if operation.kind in ("transplant", "patch"):
        if models.donor is None:
            raise ConfigError(f"config field models.donor is missing: operation {operation.kind!r} needs a donor model")
        if models.donor == models.recipient:
            raise ConfigError(f"config fields models.donor and models.recipient name the same model {models.donor!r}: a transfer needs two models")

    w = _table(doc, "weights")
    _no_unknown(w, "weights", {f.name for f in dataclasses.fields(WeightsConfig)})
    weights = WeightsConfig(
        file=_str(w, "weights", "file", None),
        cache=_str(w, "weights", "cache", None),
        model=_str(w, "weights", "model", None),
        problems=_int(w, "weights", "problems", 64, minimum=1),
        samples=_int(w, "weights", "samples", 4, minimum=1),
        temperature=_float(w, "weights", "temperature", 0.8),
        max_new_tokens=_int(w, "weights", "max_new_tokens", 160, minimum=1),
        seed=_int(w, "weights", "seed", 7),
        row_tokens=_int(w, "weights", "row_tokens", 4, minimum=1),
        rule=_str(w, "weights", "rule", "abs:0.5"),
    )
    if weights.file and weights.cache:
        raise ConfigError("config fields weights.file and weights.cache are both set: give one source of weights")
    if not (weights.file or weights.cache or weights.model):
        raise ConfigError("config table [weights] needs file (a weights file), cache (learn on a cache) or model (capture from it)")

    s = _table(doc, "sets")
    _no_unknown(s, "sets", {"k", "conditions", "random_seeds", "scope", "random_reference"})
    conditions = s.get("conditions", list(CONDITIONS))
    if not isinstance(conditions, list) or not conditions or not all(isinstance(c, str) for c in conditions):
        raise ConfigError(f"config field sets.conditions must be a non-empty list of names, got {conditions!r}")
    for c in conditions:
        if c not in CONDITIONS:
            raise ConfigError(f"config field sets.conditions: unknown condition {c!r}; use {', '.join(CONDITIONS)}")
    if len(set(conditions)) != len(conditions):
        raise ConfigError(f"config field sets.conditions lists a condition twice: {conditions!r}")
    sets = SetsConfig(
        k=_int_list(s, "sets", "k", minimum=1),
        conditions=tuple(conditions),
        random_seeds=_int_list(s, "sets", "random_seeds", (0, 1, 2)),
        scope=_str(s, "sets", "scope", "model", SCOPES),
        random_reference=_str(s, "sets", "random_reference", "effective", REFERENCES),
    )

    e = _table(doc, "evaluation", required=False)
    _no_unknown(e, "evaluation", {f.name for f in dataclasses.fields(EvaluationConfig)})
    options = e.get("task_options", {})
    if not isinstance(options, dict):
        raise ConfigError("config field evaluation.task_options must be a table")
    evaluation = EvaluationConfig(
        task=_str(e, "evaluation", "task", "zoo"),
        problems=_int(e, "evaluation", "problems", 200, minimum=1),
        seed=_int(e, "evaluation", "seed", 2026),
        batch_size=_int(e, "evaluation", "batch_size", 50, minimum=1),
        max_new_tokens=_int(e, "evaluation", "max_new_tokens", 192, minimum=1),
        bootstrap=_int(e, "evaluation", "bootstrap", 2000, minimum=100),
        task_options=dict(options),
    )
    get_task(evaluation.task, evaluation.task_options)  # validates the name and options now
    return TransferConfig(name, models, weights, sets, operation, evaluation, str(base_dir))


def load_config(path: str | Path) -> TransferConfig:
    """Read and validate a TOML experiment file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment config {path} does not exist: give a TOML file such as interventions/experiments/zoo.toml")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"experiment config {path} is not valid TOML: {e}") from None
    return parse_config(doc, base_dir=path.resolve().parent, name=path.stem)


# ---------------------------------------------------------------- pre-load checks


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
