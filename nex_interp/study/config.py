"""The study's configuration: a TOML file read into typed dataclasses.

Top level: ``name`` (default: the file's stem), ``models`` (a list), ``device``, ``dtype`` and
``keep_merged`` (default true; false removes a merge variant's checkpoint once its cache is written,
about 8 GB a variant for a 4B model in bfloat16); then the tables ``[prompts]``, ``[generation]``, ``[capture]`` and ``[compute]``. A ``models`` item is

* a string: a model spec (``zoo:NAME``, a Hugging Face directory, a hub name, a ``.gguf``); its
  name is the zoo name or the path's last part;
* a table ``{path = SPEC, name = NAME, responses = FILE}``: ``responses`` (a JSONL from any
  engine, rows with ``id``, ``problem_id``, ``prompt``, ``response``) replaces generation;
* a merge table ``{base = SPEC, other = SPEC, t = [..], method = "slerp", name = PREFIX}``: one
  variant per ``t`` (0 gives ``base``, 1 gives ``other``), built with :func:`nex_interp.merge.merge_models`
  and named ``PREFIX-tT`` (``slerp-t0.5``).

Every field is checked before any model is loaded; a problem is one :class:`ConfigError` line
naming the field. Relative paths are resolved against the TOML file's directory. See
``interventions/experiments/study_zoo.toml`` and ``docs/distributed.md``.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..capture.rules import DEFAULT_RULE, parse_rule
from ..core.params import NexParams
from ..errors import ConfigError
from ..interventions.fields import Section, check_keys, option

DTYPES = ("float32", "bfloat16", "float16")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_NEX = NexParams()


@dataclass(frozen=True)
class PromptsConfig(Section):
    """Where the problems come from: a prompts ``file`` (JSONL, a ``prompt`` per row) or a registered
    ``task`` (``n_problems`` problems drawn with ``seed``; its checker grades the responses)."""

    SECTION = "prompts"
    file: str | None = option(None, kind="str", optional=True, help="prompts JSONL, one {'id', 'prompt', ...} per line")
    task: str | None = option(None, kind="str", optional=True, help="a registered task (e.g. zoo) instead of a file")
    n_problems: int = option(100, kind="int", minimum=1, help="task problems")
    seed: int = option(0, kind="int", minimum=0, help="seed of the task's problems")
    task_options: dict = option({}, kind="table", help="the task's options")


@dataclass(frozen=True)
class GenerationSection(Section):
    """Sampling settings (:class:`nex_interp.generation.GenerationConfig`)."""

    SECTION = "generation"
    samples: int = option(4, kind="int", minimum=1, help="responses per prompt")
    temperature: float = option(0.7, kind="float", minimum=0.0, help="sampling temperature, 0 = greedy")
    top_p: float = option(0.95, kind="float", minimum=0.0, help="nucleus sampling mass")
    max_new_tokens: int = option(512, kind="int", minimum=1, help="response length cap")
    seed: int = option(0, kind="int", minimum=0, help="each problem's sampling RNG derives from it and the problem id")
    batch_size: int = option(8, kind="int", minimum=1, help="sequences per generate call")
    chat_template: bool = option(False, kind="bool", help="wrap prompts in the tokenizer's chat template")
    batch_problems: int = option(1, kind="int", minimum=1, help="problems per generate call, each row sampled from its own seeded generator")
    shard_size: int = option(16, kind="int", minimum=1, help="with --ray: prompts per shard")

    def generation_config(self):
        from ..generation import GenerationConfig

        return GenerationConfig(self.samples, self.temperature, self.top_p, self.max_new_tokens, self.seed,
                                self.batch_size, self.chat_template, self.batch_problems)


@dataclass(frozen=True)
class CaptureSection(Section):
    """Capture settings (:class:`nex_interp.capture.engine.CaptureConfig`)."""

    SECTION = "capture"
    rule: str = option(DEFAULT_RULE, kind="str", help="activation rule: abs:T, topk:K or quantile:Q")
    row_tokens: int = option(32, kind="int", minimum=1, help="response tokens per cache row")
    layers: str = option("all", kind="str", help="layers to capture, e.g. 0-11,20")
    batch_size: int | None = option(None, kind="int", optional=True, minimum=1, help="responses per forward pass")
    calib_responses: int = option(16, kind="int", minimum=1, help="responses that calibrate a quantile rule")
    token_stats: bool = option(True, kind="bool", help="per-token entropy/log-prob statistics (the baselines need them)")
    attention: str = option("sdpa", kind="str", choices=("sdpa", "eager"), help="the pass's attention")
    shard_size: int = option(64, kind="int", minimum=1, help="with --ray: responses per shard")

    def capture_config(self, n_layers: int | None = None, progress: bool = True):
        from ..capture.engine import CaptureConfig, parse_layers

        layers = parse_layers(self.layers, n_layers) if n_layers is not None else None
        return CaptureConfig(rule=self.rule, row_tokens=self.row_tokens, layers=layers, batch_size=self.batch_size,
                             token_stats=self.token_stats, calib_responses=self.calib_responses, attention=self.attention,
                             progress=progress)


@dataclass(frozen=True)
class ComputeSection(Section):
    """What to compute: per model ``weights`` (learned on its own cache) and ``scores`` (GMF per
    response with them); across models the ``ranking`` against accuracy; per model ``best_of_n``."""

    SECTION = "compute"
    weights: bool = option(True, kind="bool", help="learn NEX weights per model")
    scores: bool = option(True, kind="bool", help="score each model's responses with its weights (scores.csv)")
    ranking: bool = option(True, kind="bool", help="rank the models by NEX and the baselines against accuracy")
    best_of_n: bool = option(True, kind="bool", help="best-of-N selection per model")
    methods: tuple[str, ...] | None = option(None, kind="strs", optional=True, help="best-of-N methods (default: all the inputs allow)")
    rho: float = option(_NEX.rho, kind="float", minimum=0.0, help="NEX HMM stickiness (0 < rho < 1)")
    min_run: int = option(_NEX.min_run, kind="int", minimum=1, help="NEX shortest phase run")
    n_boot: int = option(2000, kind="int", minimum=1, help="bootstrap resamples of best-of-N intervals")
    seed: int = option(0, kind="int", minimum=0, help="seed of the bootstrap and the calibration split")

    def nex_params(self) -> NexParams:
        return NexParams(rho=self.rho, min_run=self.min_run)


@dataclass(frozen=True)
class MergeSpec:
    """One merge variant: ``base`` and ``other`` (specs) merged per tensor by ``method`` at ``t``."""

    base: str
    other: str
    method: str
    t: float


@dataclass(frozen=True)
class ModelEntry:
    """One model of the study: a spec to load, or a merge to build; ``responses`` replaces generation."""

    name: str
    spec: str | None = None
    merge: MergeSpec | None = None
    responses: str | None = None

    def to_dict(self) -> dict:
        d: dict = {"name": self.name}
        if self.spec is not None:
            d["spec"] = self.spec
        if self.merge is not None:
            d["merge"] = {"base": self.merge.base, "other": self.merge.other, "method": self.merge.method, "t": self.merge.t}
        if self.responses is not None:
            d["responses"] = self.responses
        return d


SECTIONS: tuple[type[Section], ...] = (PromptsConfig, GenerationSection, CaptureSection, ComputeSection)
TOP_LEVEL = ("name", "models", "device", "dtype", "keep_merged", *(c.SECTION for c in SECTIONS))


@dataclass(frozen=True)
class StudyConfig:
    """A whole study (see the module docstring)."""

    name: str
    models: tuple[ModelEntry, ...]
    prompts: PromptsConfig
    generation: GenerationSection
    capture: CaptureSection
    compute: ComputeSection
    device: str = "cpu"
    dtype: str = "float32"
    keep_merged: bool = True
    base_dir: str = "."

    def to_dict(self) -> dict:
        out: dict = {"name": self.name, "models": [m.to_dict() for m in self.models], "device": self.device, "dtype": self.dtype,
                     "keep_merged": self.keep_merged}
        for cls in SECTIONS:
            out[cls.SECTION] = getattr(self, cls.SECTION).to_dict()
        return out

    def path(self, value: str) -> Path:
        """``value`` resolved against the config file's directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def model_spec(self, spec: str) -> str:
        """A model spec with a relative local path resolved against the config's directory."""
        if spec.startswith("zoo:") or spec == "smollm2":
            return spec
        p = self.path(spec)
        return str(p) if p.exists() or spec.startswith((".", "/", "~")) else spec

    @property
    def needs_generation(self) -> bool:
        return any(m.responses is None for m in self.models)

    def task(self):
        """The task object (None with a prompts file)."""
        if self.prompts.task is None:
            return None
        from ..interventions.tasks import get_task

        return get_task(self.prompts.task, self.prompts.task_options)


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _default_name(spec: str) -> str:
    if spec.startswith("zoo:"):
        return spec[4:]
    return Path(spec.rstrip("/")).name.removesuffix(".gguf") or spec


def _model_entries(items) -> tuple[ModelEntry, ...]:
    from ..merge import MERGE_METHODS

    if not isinstance(items, list) or not items:
        raise ConfigError("config field models must be a non-empty list of model specs or merge tables")
    out: list[ModelEntry] = []
    for k, item in enumerate(items):
        where = f"models[{k}]"
        if isinstance(item, str):
            if not item.strip():
                raise ConfigError(f"config field {where} is an empty string: give a model spec such as zoo:thinking")
            out.append(ModelEntry(_default_name(item), spec=item))
            continue
        if not isinstance(item, dict):
            raise ConfigError(f"config field {where} must be a model spec (string) or a table, got {item!r}")
        if "base" in item or "other" in item or "t" in item:
            check_keys(item, where, ["base", "other", "t", "method", "name"])
            for key in ("base", "other"):
                if not isinstance(item.get(key), str) or not item[key].strip():
                    raise ConfigError(f"config field {where}.{key} must be a model spec (zoo:NAME or a Hugging Face directory)")
            method = item.get("method", "slerp")
            if method not in MERGE_METHODS:
                raise ConfigError(f"config field {where}.method: unknown merge method {method!r}; use one of {', '.join(sorted(MERGE_METHODS))}")
            ts = item.get("t")
            ts = [ts] if isinstance(ts, (int, float)) and not isinstance(ts, bool) else ts
            if not isinstance(ts, list) or not ts or any(isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1 for t in ts):
                raise ConfigError(f"config field {where}.t must be a non-empty list of numbers in [0, 1], got {item.get('t')!r}")
            if len(set(map(float, ts))) != len(ts):
                raise ConfigError(f"config field {where}.t lists a value twice: {ts!r}")
            prefix = item.get("name", method)
            if not isinstance(prefix, str):
                raise ConfigError(f"config field {where}.name must be a string (the variants' name prefix)")
            for t in ts:
                out.append(ModelEntry(f"{prefix}-t{float(t):g}", merge=MergeSpec(item["base"], item["other"], method, float(t))))
            continue
        check_keys(item, where, ["path", "name", "responses"])
        spec = item.get("path")
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigError(f"config field {where}.path must be a model spec (zoo:NAME, a directory, a hub name)")
        for key in ("name", "responses"):
            if key in item and (not isinstance(item[key], str) or not item[key].strip()):
                raise ConfigError(f"config field {where}.{key} must be a non-empty string")
        out.append(ModelEntry(item.get("name", _default_name(spec)), spec=spec, responses=item.get("responses")))
    seen: set[str] = set()
    for m in out:
        if not _NAME.match(m.name):
            raise ConfigError(f"model name {m.name!r} is not usable as a directory name: give the model a name of letters, digits, '.', '_' or '-'")
        if m.name in seen:
            raise ConfigError(f"two models are named {m.name!r}: give one of them another name (name = ...)")
        seen.add(m.name)
    return tuple(out)


def parse_study(doc: dict, base_dir: str | Path = ".", name: str = "study") -> StudyConfig:
    """Validate a parsed TOML document into a :class:`StudyConfig` (no model is touched)."""
    if not isinstance(doc, dict):
        raise ConfigError("a study config must be a TOML document of tables")
    check_keys(doc, "top level", TOP_LEVEL)
    if "models" not in doc:
        raise ConfigError("config field models is missing: list the models to study (models = [\"zoo:thinking\", ...])")
    study_name = doc.get("name", name)
    if not isinstance(study_name, str) or not study_name.strip():
        raise ConfigError(f"config field name must be a non-empty string, got {study_name!r}")
    device = doc.get("device", "cpu")
    if not isinstance(device, str) or not device.strip():
        raise ConfigError(f"config field device must be a torch device such as cpu or cuda, got {device!r}")
    dtype = doc.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ConfigError(f"config field dtype: unknown value {dtype!r}; use one of {', '.join(DTYPES)}")
    keep = doc.get("keep_merged", True)
    if not isinstance(keep, bool):
        raise ConfigError(f"config field keep_merged must be true or false, got {keep!r}")
    parts = {cls.SECTION: cls.from_dict(doc.get(cls.SECTION, {})) for cls in SECTIONS}
    cfg = StudyConfig(study_name, _model_entries(doc["models"]), device=device, dtype=dtype, keep_merged=keep,
                      base_dir=str(base_dir), **parts)
    _check(cfg)
    return cfg


def _check(cfg: StudyConfig) -> None:
    """Rules that span fields."""
    p, g, c, k = cfg.prompts, cfg.generation, cfg.capture, cfg.compute
    if p.file and p.task:
        raise ConfigError("config fields prompts.file and prompts.task are both set: give one source of problems")
    if cfg.needs_generation and not (p.file or p.task):
        raise ConfigError("config table [prompts] needs file (a prompts JSONL) or task (e.g. \"zoo\"): some models have no responses file to use")
    if p.file and not cfg.path(p.file).is_file():
        raise ConfigError(f"config field prompts.file: {cfg.path(p.file)} does not exist; give a prompts JSONL file")
    for m in cfg.models:
        if m.responses is not None and not cfg.path(m.responses).is_file():
            raise ConfigError(f"model {m.name}: responses file {cfg.path(m.responses)} does not exist")
    cfg.task()  # validates the task name and options
    if not 0 < g.top_p <= 1:
        raise ConfigError(f"config field generation.top_p must lie in (0, 1], got {g.top_p}")
    parse_rule(c.rule, c.calib_responses)
    if c.layers.strip().lower() != "all":
        from ..capture.engine import parse_layers

        parse_layers(c.layers, 10**6)  # the syntax now; the range once the model is known
    if not 0.0 < k.rho < 1.0:
        raise ConfigError(f"config field compute.rho must lie strictly between 0 and 1, got {k.rho}")
    if k.scores and not k.weights:
        raise ConfigError("config field compute.scores needs compute.weights = true (scores use each model's own weights)")
    if k.methods:
        from ..selection import get_method

        for m in k.methods:
            get_method(m)


def read_study(path: str | Path, overrides: dict[str, dict] | None = None) -> StudyConfig:
    """Read and validate a study TOML file (one-line errors for a missing or broken file), with
    ``overrides`` (``{table: {field: value}}``, e.g. ``nex study``'s ``--generation-samples 2``) applied."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study config {path} does not exist: give a TOML file such as interventions/experiments/study_zoo.toml")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"study config {path} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"study config {path} is not UTF-8 text: give a TOML file") from None
    if overrides:
        from ..interventions.config import merge_overrides

        doc = merge_overrides(doc, overrides)
    return parse_study(doc, base_dir=path.resolve().parent, name=path.stem)


__all__ = ["StudyConfig", "ModelEntry", "MergeSpec", "PromptsConfig", "GenerationSection", "CaptureSection",
           "ComputeSection", "parse_study", "read_study"]
