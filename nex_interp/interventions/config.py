"""The transfer experiment's configuration: a TOML file read into typed dataclasses.

Each field is declared once (:func:`~nex_interp.interventions.fields.option`: default, type,
bounds, choices, help); the TOML validation, ``to_dict``/``from_dict`` and the ``nex transfer``
flags that override the file all come from those declarations. The NEX parameters default to
:class:`nex_interp.core.NexParams`'s. Every field is checked before any model is loaded; a
problem is one :class:`ConfigError` line that names the field (``sets.k``, ``models.recipient``,
...), and an unknown key names the valid ones. Relative paths are resolved against the directory
of the TOML file. See ``interventions/experiments/zoo.toml`` for a commented example and
``docs/interventions.md`` for every field. The checks that read models' ``config.json`` are in
:mod:`nex_interp.interventions.preflight`.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from nex_interp.core.params import NexParams
from nex_interp.errors import ConfigError

from .fields import Section, check_keys, check_value, option
from .neuron_sets import SCOPES
from .tasks import get_task

CONDITIONS = ("effective", "redundant", "random")
OPERATIONS = ("transplant", "patch", "ablate")
ABLATIONS = ("zero", "mean")
REFERENCES = ("effective", "redundant")
DTYPES = ("float32", "bfloat16", "float16")

_NEX = NexParams()


@dataclass(frozen=True)
class ModelsConfig(Section):
    """donor: model spec whose neurons are given (unused by ``ablate``); recipient: the model changed."""

    SECTION = "models"
    recipient: str = option(kind="str", help="model spec of the model changed (zoo:NAME, a directory, a .gguf, a hub name)")
    donor: str | None = option(None, kind="str", optional=True, help="model spec of the model whose neurons are given (not for ablate)")
    device: str = option("cpu", kind="str", help="torch device")
    dtype: str = option("float32", kind="str", choices=DTYPES, help="model dtype")


@dataclass(frozen=True)
class WeightsConfig(Section):
    """Where the NEX weights come from: exactly one of ``file``, ``cache``, or ``model`` (capture).

    file:  a weights file (``nex train`` output, or the reference's dense ``.npz``).
    cache: a sparse activation cache to learn weights on (``model`` then names its model, optional).
    model: with neither file nor cache, sample ``samples`` responses per problem from this model on
           ``problems`` task problems (``seed``) at ``temperature``, capture them (``row_tokens``-token
           rows, activation ``rule``) and learn weights (kept in OUT/weights, reused on resume).
    rho, min_run: the NEX parameters weights are learned with (cache and model sources).
    """

    SECTION = "weights"
    file: str | None = option(None, kind="str", optional=True, help="a weights file (nex train output)")
    cache: str | None = option(None, kind="str", optional=True, help="a cache to learn weights on")
    model: str | None = option(None, kind="str", optional=True, help="without file or cache: sample, capture and learn on this model")
    problems: int = option(64, kind="int", minimum=1, help="task problems to sample responses on")
    samples: int = option(4, kind="int", minimum=1, help="responses sampled per problem")
    temperature: float = option(0.8, kind="float", minimum=0.0, help="sampling temperature")
    max_new_tokens: int = option(160, kind="int", minimum=1, help="longest sampled response, in tokens")
    seed: int = option(7, kind="int", minimum=0, help="seed of the problems and the sampling")
    batch_problems: int = option(1, kind="int", minimum=1, help="problems sampled in one generate call (nex_interp.generation)")
    row_tokens: int = option(4, kind="int", minimum=1, help="response tokens per cache row")
    rule: str = option("abs:0.5", kind="str", help="capture activation rule")
    rho: float = option(_NEX.rho, kind="float", minimum=0.0, help="NEX HMM stickiness (0 < rho < 1)")
    min_run: int = option(_NEX.min_run, kind="int", minimum=1, help="NEX shortest phase run")

    def nex_params(self) -> NexParams:
        """The NEX parameters weights are learned with."""
        return NexParams(rho=self.rho, min_run=self.min_run)


@dataclass(frozen=True)
class SetsConfig(Section):
    """k: set sizes; conditions: which sets; random_seeds: one random set per seed and k.

    scope ``model``: the k best neurons over all layers; ``layer``: the k best in each layer.
    Random sets match the per-layer counts of the ``random_reference`` set of the same k.
    """

    SECTION = "sets"
    k: tuple[int, ...] = option(kind="ints", minimum=1, help="set sizes")
    conditions: tuple[str, ...] = option(CONDITIONS, kind="strs", choices=CONDITIONS, help="which sets")
    random_seeds: tuple[int, ...] = option((0, 1, 2), kind="ints", minimum=0, help="one random set per seed and k")
    scope: str = option("model", kind="str", choices=SCOPES, help="top-k over all layers (model) or in each layer (layer)")
    random_reference: str = option("effective", kind="str", choices=REFERENCES, help="the set whose per-layer counts random sets copy")


@dataclass(frozen=True)
class OperationConfig(Section):
    """kind: transplant | patch | ablate; ablation: zero | mean; mean_problems: reference inputs for mean."""

    SECTION = "operation"
    kind: str = option("transplant", kind="str", choices=OPERATIONS, help="what is done to the recipient's neurons")
    ablation: str = option("zero", kind="str", choices=ABLATIONS, help="ablate only: the value neurons are fixed to")
    mean_problems: int = option(32, kind="int", minimum=1, help="ablate with mean: reference problems for the means")


@dataclass(frozen=True)
class EvaluationConfig(Section):
    """Greedy generation on ``problems`` problems of ``task`` (seeded), scored by the task's checker."""

    SECTION = "evaluation"
    task: str = option("zoo", kind="str", help="a registered task")
    problems: int = option(200, kind="int", minimum=1, help="held-out problems")
    seed: int = option(2026, kind="int", minimum=0, help="seed of the held-out problems")
    batch_size: int = option(50, kind="int", minimum=1, help="problems decoded together")
    max_new_tokens: int = option(192, kind="int", minimum=1, help="longest answer, in tokens")
    bootstrap: int = option(2000, kind="int", minimum=100, help="bootstrap resamples of the intervals")
    task_options: dict = option({}, kind="table", help="the task's options")


#: the sections of a config, in file order
SECTIONS: tuple[type[Section], ...] = (ModelsConfig, WeightsConfig, SetsConfig, OperationConfig, EvaluationConfig)
#: sections a config may leave out (all their fields have defaults)
OPTIONAL_SECTIONS = ("operation", "evaluation")


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
        """The config as a JSON-able dict: ``from_dict(to_dict())`` gives an equal config."""
        out: dict = {"name": self.name}
        for cls in SECTIONS:
            out[cls.SECTION] = getattr(self, cls.SECTION).to_dict()
        out["base_dir"] = self.base_dir
        return out

    @staticmethod
    def from_dict(doc: dict, base_dir: str | Path | None = None, name: str = "transfer") -> "TransferConfig":
        """Validate a parsed TOML document (or a :meth:`to_dict`) into a config; no model is touched.

        ``base_dir`` (else the document's own ``base_dir``, else ``.``) resolves relative paths.
        """
        doc = dict(doc)
        base = base_dir if base_dir is not None else doc.get("base_dir", ".")
        doc.pop("base_dir", None)
        check_keys(doc, "top level", ["name", *(cls.SECTION for cls in SECTIONS)])
        name = check_value("name", doc.get("name", name), {"kind": "str", "choices": None, "minimum": None, "optional": False})
        parts = {}
        for cls in SECTIONS:
            if cls.SECTION not in doc and cls.SECTION not in OPTIONAL_SECTIONS:
                raise ConfigError(f"config lacks the [{cls.SECTION}] table")
            parts[cls.SECTION] = cls.from_dict(doc.get(cls.SECTION, {}))
        cfg = TransferConfig(name, base_dir=str(base), **parts)  # type: ignore[arg-type]
        cfg.check()
        return cfg

    def check(self) -> None:
        """The rules that span fields (a donor where the operation needs one, one weights source, ...)."""
        models, weights, operation = self.models, self.weights, self.operation
        if operation.kind in ("transplant", "patch"):
            if models.donor is None:
                raise ConfigError(f"config field models.donor is missing: operation {operation.kind!r} needs a donor model")
            if models.donor == models.recipient:
                raise ConfigError(f"config fields models.donor and models.recipient name the same model {models.donor!r}: a transfer needs two models")
        if weights.file and weights.cache:
            raise ConfigError("config fields weights.file and weights.cache are both set: give one source of weights")
        if not (weights.file or weights.cache or weights.model):
            raise ConfigError("config table [weights] needs file (a weights file), cache (learn on a cache) or model (capture from it)")
        if not 0.0 < weights.rho < 1.0:
            raise ConfigError(f"config field weights.rho must lie strictly between 0 and 1, got {weights.rho!r}")
        get_task(self.evaluation.task, self.evaluation.task_options)  # validates the name and options now

    def fingerprint(self) -> str:
        """A stable hash of everything that determines the results (resume safety)."""
        d = self.to_dict()
        d.pop("base_dir", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def path(self, value: str) -> Path:
        """``value`` resolved against the config file's directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p


def parse_config(doc: dict, base_dir: str | Path = ".", name: str = "transfer") -> TransferConfig:
    """Validate a parsed TOML document into a :class:`TransferConfig` (no model is touched)."""
    return TransferConfig.from_dict(doc, base_dir=base_dir, name=name)


def merge_overrides(doc: dict, overrides: dict[str, dict]) -> dict:
    """``doc`` with ``{section: {field: value}}`` (e.g. command-line flags) written over its tables
    (a top-level field: ``{field: value}``)."""
    out = dict(doc)
    for section, values in overrides.items():
        if not isinstance(values, dict):  # a top-level field such as name
            out[section] = values
            continue
        table = out.get(section, {})
        out[section] = {**(table if isinstance(table, dict) else {}), **values}
    return out


def read_toml(path: str | Path) -> dict:
    """The parsed TOML document of an experiment file (one-line errors for a missing or broken file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment config {path} does not exist: give a TOML file such as interventions/experiments/zoo.toml")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"experiment config {path} is not valid TOML: {e}") from None


def load_config(path: str | Path, overrides: dict[str, dict] | None = None) -> TransferConfig:
    """Read and validate a TOML experiment file, with ``overrides`` (:func:`merge_overrides`) applied."""
    path = Path(path)
    doc = merge_overrides(read_toml(path), overrides or {})
    return parse_config(doc, base_dir=path.resolve().parent, name=path.stem)
