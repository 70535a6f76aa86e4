"""Capture: teacher-forced forward passes over prompt + response, written as a sparse NEX cache.

For each response the model runs once over ``prompt + response``. Batches and padding: each
sequence is right-padded to its own *width*, its length rounded up to a multiple of
:data:`.batching.PAD_MULTIPLE` (16), and a batch only holds sequences of the same width. So real tokens keep
their positions, never attend to padding, and compute exactly what they compute alone: the cache is
byte-identical whatever the batch size and the order of the responses (on a CPU, where the kernels
do not depend on the number of sequences; tested). The batch size defaults by device
(:func:`.batching.default_batch_size`: 1 on a CPU, where batching buys nothing; 4 elsewhere). Within a
window of ``8 * batch_size`` responses, batches are formed in order of width; responses are still
written in input order. In the hook of every captured layer,
``blocks.{L}.mlp.out.hook_in`` (the input of the MLP's output projection, ``act(gate) * up`` for
gated MLPs), the activation rule (:mod:`.rules`) picks the active units of each *response* token on
the device; activations are summed per row of ``row_tokens`` consecutive response tokens and only
the sparse result (row, unit, mass) leaves the device. Prompt tokens and padding never enter a row.
The base vector of a response is the sum of its rows. Dense activations of at most one layer exist at
a time (the one the model itself just computed), processed in chunks of ``chunk_tokens`` tokens.

The pass runs through the HF modules the bridge wraps, attention with SDPA, the hook functions
attached by their bridge hook names to the modules those names map to (:mod:`nex_interp.models.hf_pass`): capture
hooks no attention, and TransformerLens's step-by-step eager attention is the costliest part of a
long sequence's pass. The same pass records per-token output statistics (:mod:`.token_stats`) from the final-norm
hidden states, so selection baselines need no second pass. When they are not wanted, the forward
pass stops after the last captured layer.

(Over 400 lines: the pass, its hooks, response assembly and the resumable driver share the
``_Item`` and ``CaptureConfig`` types; batching lives in :mod:`.batching`, attention and hook
placement in :mod:`nex_interp.models.hf_pass`, the statistics in :mod:`.token_stats`.)

Responses are committed one by one through :class:`nex_interp.cache.writer.CacheWriter`: an
interrupted capture leaves a valid cache of the finished responses and ``resume=True`` continues.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config_dict import DictConfig
from ..errors import ConfigError
from ..keys import KeyScheme
from ..models.hooks import NEURON_HOOK, StopForward, run_until_stopped
from ..models.prompts import encode_prompt, encode_response
from . import token_stats as ts
from .batching import default_batch_size, padded_width, plan_batches
from ..models.hf_pass import hf_pass
from .rules import DEFAULT_RULE, ActivationRule, QuantileCalibrator, parse_rule

if TYPE_CHECKING:  # pragma: no cover
    from jaxtyping import Float
    from torch import Tensor

    from ..models.loader import LoadedModel

FINAL_NORM_HOOK = "ln_final.hook_out"


@dataclass(frozen=True)
class CaptureConfig(DictConfig):
    """Capture settings (``layers=None``: all layers; ``chat_template=None``: each row's own
    ``chat_template`` field, as written by ``nex generate``; absent means raw prompt)."""

    rule: str = DEFAULT_RULE
    row_tokens: int = 32
    layers: tuple[int, ...] | None = None
    batch_size: int | None = None  # None: default_batch_size(device)
    max_responses: int | None = None
    token_stats: bool = True
    stats_topk: int = ts.DEFAULT_TOPK
    calib_responses: int = 16
    chat_template: bool | None = None
    chunk_tokens: int = 2048
    progress: bool = True
    #: the pass's attention: "sdpa" (fused, the default) or "eager" (same model, other float rounding;
    #: ``nex demo`` keeps "eager", with which its published numbers were captured)
    attention: str = "sdpa"

    def __post_init__(self) -> None:
        if self.row_tokens < 1:
            raise ConfigError(f"--row-tokens must be >= 1, got {self.row_tokens}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.max_responses is not None and self.max_responses < 1:
            raise ConfigError(f"--max-responses must be >= 1, got {self.max_responses}")
        if self.stats_topk < 1:
            raise ConfigError(f"stats_topk must be >= 1, got {self.stats_topk}")
        if self.chunk_tokens < 1:
            raise ConfigError(f"chunk_tokens must be >= 1, got {self.chunk_tokens}")
        if self.attention not in ("sdpa", "eager"):
            raise ConfigError(f"attention must be 'sdpa' or 'eager', got {self.attention!r}")
        parse_rule(self.rule, self.calib_responses)  # validates early



@dataclass
class CaptureReport:
    """What a capture did: counts, skips (with ids) and throughput."""

    path: Path
    n_input: int = 0
    n_captured: int = 0
    n_already_done: int = 0
    n_skipped_too_long: int = 0
    skipped_ids: list[str] = field(default_factory=list)
    n_tokens: int = 0
    n_rows: int = 0
    n_entries: int = 0
    seconds: float = 0.0
    rule: dict = field(default_factory=dict)

    @property
    def entries_per_row(self) -> float:
        return self.n_entries / self.n_rows if self.n_rows else 0.0

    def summary(self) -> str:
        rate = self.n_tokens / self.seconds if self.seconds > 0 else 0.0
        s = (
            f"captured {self.n_captured} responses ({self.n_tokens} tokens, {self.n_rows} rows, "
            f"{self.entries_per_row:.0f} entries/row, {rate:.0f} tokens/s) into {self.path}"
        )
        if self.n_already_done:
            s += f"; {self.n_already_done} already in the cache"
        if self.n_skipped_too_long:
            shown = ", ".join(self.skipped_ids[:5]) + (" ..." if len(self.skipped_ids) > 5 else "")
            s += f"; skipped {self.n_skipped_too_long} too long for the model's context ({shown})"
        return s


@dataclass
class _Item:
    """One response ready for the forward pass."""

    rid: str
    meta: dict
    prompt_ids: list[int]
    response_ids: list[int]

    @property
    def n_prompt(self) -> int:
        return len(self.prompt_ids)

    @property
    def n_response(self) -> int:
        return len(self.response_ids)

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


def parse_layers(text: str | None, n_layers: int) -> tuple[int, ...] | None:
    """``"all"``/None -> None; ``"0-3,8,10-11"`` -> (0, 1, 2, 3, 8, 10, 11); checked against ``n_layers``."""
    if text is None or text.strip().lower() in ("", "all"):
        return None
    out: set[int] = set()
    try:
        for part in text.split(","):
            a, _, b = part.strip().partition("-")
            lo, hi = int(a), int(b) if b else int(a)
            out.update(range(lo, hi + 1))
    except ValueError:
        raise ConfigError(f"--layers {text!r} is not a list like 0-3,8: use integers, ranges and commas") from None
    bad = sorted(x for x in out if not 0 <= x < n_layers)
    if bad or not out:
        raise ConfigError(f"--layers {text!r} names layers {bad} outside 0..{n_layers - 1}: the model has {n_layers} layers")
    return tuple(sorted(out))


def prepare_items(model: "LoadedModel", responses: list[dict], config: CaptureConfig) -> tuple[list[_Item], list[str]]:
    """Tokenize responses; returns (items, ids skipped as too long for the model's context)."""
    from ..generation import InputError

    items, skipped, seen = [], [], set()
    for i, row in enumerate(responses):
        line = row.get("_line", i + 1)
        if not isinstance(row.get("prompt"), str) or not isinstance(row.get("response"), str):
            raise InputError(f"responses line {line} needs string fields 'prompt' and 'response'")
        rid = str(row.get("id", i))
        if rid in seen:
            raise InputError(f"responses line {line} repeats id {rid!r}: give each response a unique 'id'")
        seen.add(rid)
        chat = config.chat_template if config.chat_template is not None else bool(row.get("chat_template", False))
        p_ids = encode_prompt(model.tokenizer, row["prompt"], chat)
        r_ids = encode_response(model.tokenizer, row["response"])
        meta = {k: v for k, v in row.items() if k not in ("prompt", "response", "_line")}
        meta["id"] = rid
        meta.update(n_prompt_tokens=len(p_ids), n_response_tokens=len(r_ids), chat_template=chat)
        if len(p_ids) + len(r_ids) > model.n_ctx:
            skipped.append(rid)
            continue
        items.append(_Item(rid, meta, p_ids, r_ids))
    return items, skipped


# ---------------------------------------------------------------------- the forward pass


def _input_batch(model: "LoadedModel", items: list[_Item]):
    """Right-padded input ids (to the batch's widest :func:`padded_width`): real tokens keep their
    positions and never attend to padding."""
    import torch

    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    width = max(padded_width(it.length) for it in items)
    ids = torch.full((len(items), width), int(pad), dtype=torch.long)
    for b, it in enumerate(items):
        ids[b, : it.length] = torch.tensor(it.prompt_ids + it.response_ids, dtype=torch.long)
    return ids.to(model.device)


def _forward(model: "LoadedModel", ids) -> None:
    import torch

    with torch.inference_mode():
        # logits of one position only: token statistics are computed in chunks from the hidden states
        run_until_stopped(lambda: model.hf_model(input_ids=ids, use_cache=False, logits_to_keep=1))


def sparse_rows(
    x: "Float[Tensor, 'tok d_mlp']", rule: ActivationRule, layer: int, row_tokens: int, chunk_tokens: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sparsify one response's activations of one layer, on their device.

    Returns ``(row, unit, mass)`` of every (row, unit) pair active on at least one of the row's
    tokens, with the mass summed over those tokens in token order (row-major order), and the base
    vector ``(unit, mass)`` summed over the whole response. Every rule gives active units a mass
    > 0 and inactive ones 0, so a row's active set is where its summed mass is > 0. A ``topk``
    rule is summed straight from the ``K`` indices and values per token (no dense mask).
    """
    import torch

    n, d = x.shape
    chunk = max(row_tokens, (chunk_tokens // row_tokens) * row_tokens)
    base_mass = torch.zeros(d, dtype=torch.float32, device=x.device)
    rows, units, masses = [], [], []
    for s in range(0, n, chunk):
        xc = x[s : s + chunk]
        m = xc.shape[0]
        r = -(-m // row_tokens)  # the last row of a response may be shorter
        tok_row = torch.arange(m, device=x.device) // row_tokens
        row_mass = torch.zeros(r * d, dtype=torch.float32, device=x.device)
        if rule.kind == "topk":
            units_k, mass_k = rule.select_topk(xc)
            keep = mass_k > 0
            flat = (tok_row[:, None] * d + units_k)[keep]
            row_mass.index_put_((flat,), mass_k[keep], accumulate=True)
            row_mass = row_mass.view(r, d)
        else:
            row_mass = row_mass.view(r, d).index_add_(0, tok_row, rule.select(xc, layer)[1])
        nz = row_mass.nonzero()
        rows.append((nz[:, 0] + s // row_tokens).cpu())
        units.append(nz[:, 1].cpu())
        masses.append(row_mass[nz[:, 0], nz[:, 1]].cpu())
        base_mass += row_mass.sum(0)
    if not rows:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32), empty, np.zeros(0, np.float32)
    bu = (base_mass > 0).nonzero()[:, 0]
    return (
        torch.cat(rows).numpy(),
        torch.cat(units).numpy(),
        torch.cat(masses).numpy(),
        bu.cpu().numpy(),
        base_mass[bu].cpu().numpy(),
    )


def capture_batch(
    model: "LoadedModel", items: list[_Item], rule: ActivationRule, layers: tuple[int, ...], config: CaptureConfig
) -> list[dict]:
    """One forward pass over ``items``; per item: per-layer sparse rows and base, and token stats."""
    import torch

    per_item: list[dict] = [{"layers": {}, "stats": None} for _ in items]
    last = max(layers)
    stop_early = not config.token_stats and last < model.n_layers - 1
    final_hidden = {}

    def layer_hook(layer: int):
        def hook(x, hook=None):
            for b, it in enumerate(items):
                if it.n_response:
                    xb = x[b, it.n_prompt : it.length]
                    per_item[b]["layers"][layer] = sparse_rows(xb, rule, layer, config.row_tokens, config.chunk_tokens)
            if stop_early and layer == last:
                raise StopForward
            return None

        return hook

    def norm_hook(x, hook=None):
        final_hidden["h"] = x
        return None

    hooks = [(model.hook_name(L), layer_hook(L)) for L in layers]
    if config.token_stats:
        hooks.append((FINAL_NORM_HOOK, norm_hook))
    ids = _input_batch(model, items)
    with hf_pass(model, hooks, config.attention):  # the plain HF modules; hooks by bridge hook name
        _forward(model, ids)
    if config.token_stats:
        h = final_hidden["h"]
        unembed = model.hf_model.get_output_embeddings()
        softcap = getattr(model.hf_model.config, "final_logit_softcapping", None)
        with torch.inference_mode():
            for b, it in enumerate(items):
                hb = h[b, it.n_prompt - 1 : it.length - 1]
                per_item[b]["stats"] = ts.token_stats(hb, ids[b, it.n_prompt : it.length], unembed, config.stats_topk, softcap)
    return per_item


def assemble_response(
    item: _Item, captured: dict, scheme: KeyScheme, row_tokens: int
) -> tuple[list[tuple[np.ndarray, np.ndarray, int]], np.ndarray, np.ndarray]:
    """Rows (keys sorted within each row) and the base vector of one response."""
    n = item.n_response
    n_rows = -(-n // row_tokens)
    layer_parts = sorted(captured["layers"].items())
    if layer_parts:
        row = np.concatenate([p[0] for _, p in layer_parts]).astype(np.int64)
        keys = np.concatenate([scheme.pack(np.full(len(p[1]), L), p[1]) for L, p in layer_parts])
        mass = np.concatenate([p[2] for _, p in layer_parts]).astype(np.float32)
        base_keys = np.concatenate([scheme.pack(np.full(len(p[3]), L), p[3]) for L, p in layer_parts])
        base_mass = np.concatenate([p[4] for _, p in layer_parts]).astype(np.float32)
    else:
        row = np.zeros(0, np.int64)
        keys, base_keys = np.zeros(0, scheme.key_dtype), np.zeros(0, scheme.key_dtype)
        mass, base_mass = np.zeros(0, np.float32), np.zeros(0, np.float32)
    order = np.lexsort((keys, row))
    row, keys, mass = row[order], keys[order], mass[order]
    bounds = np.searchsorted(row, np.arange(n_rows + 1))
    rows = [
        (keys[bounds[j] : bounds[j + 1]], mass[bounds[j] : bounds[j + 1]], min(row_tokens, n - j * row_tokens))
        for j in range(n_rows)
    ]
    border = np.argsort(base_keys, kind="stable")
    return rows, base_keys[border], base_mass[border]


# ---------------------------------------------------------------------- calibration


def calibrate_rule(model: "LoadedModel", items: list[_Item], rule: ActivationRule, layers: tuple[int, ...], config: CaptureConfig) -> ActivationRule:
    """Per-layer quantile thresholds from the first ``rule.calib_responses`` responses."""
    sample = [it for it in items if it.n_response][: rule.calib_responses]
    if not sample:
        raise ConfigError("quantile rule: no non-empty response to calibrate its thresholds on: give responses with text")
    calib = QuantileCalibrator(model.n_layers, rule.sign, model.device)
    last = max(layers)

    def layer_hook(layer: int):
        def hook(x, hook=None):
            for b, it in enumerate(batch):
                xb = x[b, it.n_prompt : it.length]
                for s in range(0, it.n_response, config.chunk_tokens):
                    calib.add(layer, xb[s : s + config.chunk_tokens])
            if layer == last:
                raise StopForward
            return None

        return hook

    hooks = [(model.hook_name(L), layer_hook(L)) for L in layers]
    batch_size = config.batch_size or default_batch_size(model.device)
    for batch_idx in (b for window in plan_batches(sample, batch_size) for b in window):
        batch = [sample[i] for i in batch_idx]
        with hf_pass(model, hooks, config.attention):
            _forward(model, _input_batch(model, batch))
    return rule.with_thresholds(calib.thresholds(rule.value))


# ---------------------------------------------------------------------- the driver


def capture_manifest(model: "LoadedModel", rule: ActivationRule, layers: tuple[int, ...], config: CaptureConfig) -> dict:
    """The fields capture records in the cache manifest."""
    m = {
        "model": model.identity,
        "rule": rule.to_dict(),
        "activation": NEURON_HOOK,
        "row_tokens": config.row_tokens,
        "n_layers": model.n_layers,
        "d_mlp": model.d_mlp,
        "layers": list(layers),
        "dtype": model.dtype,
        "device": model.device,
        "chat_template": config.chat_template,
    }
    if config.token_stats:
        m["token_stats"] = {"stream": ts.STREAM, "arrays": list(ts.ARRAYS), "topk": config.stats_topk, "vocab_size": model.identity.get("vocab_size")}
    return m


def _existing_rule(out: Path, rule: ActivationRule) -> ActivationRule:
    """A resumed quantile capture reuses the thresholds calibrated when the cache was started."""
    from ..cache.manifest import read_manifest

    if not (out / "manifest.json").is_file():
        return rule
    old = (read_manifest(out) or {}).get("rule")
    if isinstance(old, dict) and old.get("thresholds") is not None:
        prev = ActivationRule.from_dict(old)
        if (prev.kind, prev.value, prev.sign, prev.calib_responses) == (rule.kind, rule.value, rule.sign, rule.calib_responses):
            return prev
    return rule


def write_cache(
    model: "LoadedModel", responses: list[dict], out: str | os.PathLike, config: CaptureConfig | None = None, resume: bool = True,
    calibrated: ActivationRule | None = None,
) -> CaptureReport:
    """Capture ``responses`` (rows with ``id``, ``prompt``, ``response``) into the cache ``out``.

    With ``resume`` an existing cache of the same model and settings is continued (responses
    whose id it holds are skipped); without it an existing cache is an error. ``calibrated``: a
    quantile rule already calibrated (on the first responses of a larger set: a sharded capture
    calibrates once for all its shards), used instead of calibrating on ``responses``.
    """
    from tqdm.auto import tqdm

    from ..cache.writer import CacheWriter
    from ..provenance import record, write_sidecar

    config = config or CaptureConfig()
    batch_size = config.batch_size or default_batch_size(model.device)
    out = Path(out)
    t0 = time.perf_counter()
    rule = parse_rule(config.rule, config.calib_responses)
    layers = config.layers if config.layers is not None else tuple(range(model.n_layers))
    parse_layers(",".join(map(str, layers)), model.n_layers)  # range check
    if config.max_responses is not None:
        responses = responses[: config.max_responses]
    items, skipped = prepare_items(model, responses, config)
    report = CaptureReport(out, n_input=len(responses), n_skipped_too_long=len(skipped), skipped_ids=skipped)
    if calibrated is not None:
        if (calibrated.kind, calibrated.value, calibrated.sign) != (rule.kind, rule.value, rule.sign) or calibrated.needs_calibration:
            raise ConfigError(f"the calibrated rule {calibrated.spec} is not a calibrated form of {rule.spec}")
        rule = calibrated
    elif resume and rule.kind == "quantile":
        rule = _existing_rule(out, rule)
    if rule.needs_calibration:
        rule = calibrate_rule(model, items, rule, layers, config)
    report.rule = rule.to_dict()
    scheme = KeyScheme.for_model(model.n_layers, model.d_mlp)
    writer = CacheWriter(out, scheme, capture_manifest(model, rule, layers, config), resume=resume)
    done = writer.done_ids
    todo = [it for it in items if it.rid not in done]
    report.n_already_done = len(items) - len(todo)
    bar = tqdm(total=sum(it.length for it in todo), unit="tok", unit_scale=True, desc="capture", disable=not config.progress)
    try:
        for window in plan_batches(todo, batch_size):
            done_in_window: dict[int, dict] = {}
            next_i = min(b[0] for b in window) if window else 0
            for batch_idx in window:
                batch = [todo[i] for i in batch_idx]
                done_in_window.update(zip(batch_idx, capture_batch(model, batch, rule, layers, config)))
                bar.update(sum(it.length for it in batch))
                while next_i in done_in_window:  # commit in input order, as soon as possible
                    it, res = todo[next_i], done_in_window.pop(next_i)
                    rows, bk, bm = assemble_response(it, res, scheme, config.row_tokens)
                    streams = {ts.STREAM: res["stats"]} if res["stats"] is not None else None
                    writer.add_response(rows, bk, bm, it.meta, streams)
                    report.n_captured += 1
                    report.n_tokens += it.n_response
                    report.n_rows += len(rows)
                    report.n_entries += sum(len(r[0]) for r in rows)
                    next_i += 1
    except BaseException:
        writer.abandon()
        bar.close()
        raise
    bar.close()
    writer.close()
    report.seconds = time.perf_counter() - t0
    write_sidecar(
        out,
        record(
            "capture", config={**config.to_dict(), "batch_size": batch_size}, model=model.identity,
            inputs={"n_responses": len(responses)}, rule=rule.to_dict(),
            skipped_too_long=skipped, n_captured=report.n_captured,
        ),
    )
    return report


__all__ = ["CaptureConfig", "CaptureReport", "write_cache", "default_batch_size", "parse_layers", "sparse_rows"]
