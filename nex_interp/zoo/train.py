"""Train the zoo from scratch on CPU: a base model, then fine-tunes of it on answer-style mixtures.

Stages (defaults in :func:`default_config`):

* ``base``: trained from random init on a 50/50 mix of brief answers and worked solutions;
* ``instruct`` (0% thinking) and ``thinking`` (100% thinking): the two fine-tunes the merge
  family interpolates between;
* ``mix25``, ``mix50``, ``mix75``: fine-tunes on 25/50/75% thinking data; with ``instruct`` and
  ``thinking`` they form the data-mixture family of the NEX paper's Figure 3.

The loss is next-token cross-entropy on response tokens only (EOS included). Every stage is
seeded: the same config gives the same weights. A finished stage is kept, so re-running resumes
at the first unfinished stage. Each model is saved as a Hugging Face directory (Qwen3 config,
safetensors, the word-level tokenizer) and listed with its sha256 in ``zoo.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..atomic import atomic_path, write_text
from ..errors import ConfigError
from ..hashing import sha256_file
from ..provenance import record
from .task import EOS, PAD, Problem, generate_problems, is_correct, training_examples, vocabulary

MANIFEST = "zoo.json"


@dataclass(frozen=True)
class ModelShape:
    """Architecture of the zoo models (a Hugging Face Qwen3 config)."""

    arch: str = "qwen3"
    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    n_kv_heads: int = 2
    d_mlp: int = 512
    max_positions: int = 256


@dataclass(frozen=True)
class Stage:
    """One training run: from ``init`` (a previous stage, or None for random init)."""

    name: str
    init: str | None
    thinking_fraction: float
    steps: int
    lr: float
    seed: int


@dataclass(frozen=True)
class ZooTrainConfig:
    """Everything that determines the zoo's weights."""

    shape: ModelShape = ModelShape()
    stages: tuple[Stage, ...] = ()
    batch_size: int = 64
    warmup_steps: int = 100
    weight_decay: float = 0.01
    levels: tuple[int, ...] = (1, 2, 3)
    eval_problems: int = 200
    eval_seed: int = 10_000
    save_dtype: str = "float32"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ZooTrainConfig":
        d = dict(d)
        d["shape"] = ModelShape(**d["shape"])
        d["stages"] = tuple(Stage(**s) for s in d["stages"])
        d["levels"] = tuple(d["levels"])
        return cls(**d)


def default_config(scale: float = 1.0) -> ZooTrainConfig:
    """The shipped zoo's config; ``scale`` multiplies every stage's steps (tests use a tiny one)."""

    def steps(n: int) -> int:
        return max(1, int(round(n * scale)))

    ft = dict(lr=1e-3)
    return ZooTrainConfig(
        stages=(
            Stage("base", None, 0.5, steps(1600), 3e-3, 1),
            Stage("instruct", "base", 0.0, steps(300), seed=2, **ft),
            Stage("thinking", "base", 1.0, steps(300), seed=3, **ft),
            Stage("mix25", "base", 0.25, steps(300), seed=4, **ft),
            Stage("mix50", "base", 0.5, steps(300), seed=5, **ft),
            Stage("mix75", "base", 0.75, steps(300), seed=6, **ft),
        )
    )


def hf_config(shape: ModelShape):
    """The ``transformers`` config of a zoo model."""
    from transformers import Qwen3Config

    if shape.arch != "qwen3":
        raise ConfigError(f"zoo architecture {shape.arch!r} is unknown; the zoo uses qwen3")
    vocab = vocabulary()
    return Qwen3Config(
        vocab_size=len(vocab),
        hidden_size=shape.d_model,
        intermediate_size=shape.d_mlp,
        num_hidden_layers=shape.n_layers,
        num_attention_heads=shape.n_heads,
        num_key_value_heads=shape.n_kv_heads,
        head_dim=shape.d_model // shape.n_heads,
        max_position_embeddings=shape.max_positions,
        tie_word_embeddings=True,
        pad_token_id=vocab.index(PAD),
        bos_token_id=vocab.index("<bos>"),
        eos_token_id=vocab.index(EOS),
    )


def _batches(stage: Stage, cfg: ZooTrainConfig, bucket: int = 8):
    """Yield (input_ids, attention_mask, labels) tensors, right-padded, loss on responses only.

    Examples are drawn ``bucket`` batches at a time and grouped by length (less padding), then
    the batches are shuffled; all of it seeded by the stage.
    """
    ids = {w: i for i, w in enumerate(vocabulary())}
    pad = ids[PAD]
    rng = random.Random(stage.seed)
    examples = training_examples(stage.steps * cfg.batch_size, stage.seed, stage.thinking_fraction, cfg.levels)
    left = stage.steps
    while left > 0:
        k = min(bucket, left)
        pool = sorted((next(examples) for _ in range(k * cfg.batch_size)), key=lambda e: len(e[0]) + len(e[1]))
        chunks = [pool[i * cfg.batch_size : (i + 1) * cfg.batch_size] for i in range(k)]
        rng.shuffle(chunks)
        left -= k
        for batch in chunks:
            yield padded_batch(batch, ids, pad)


def padded_batch(batch: list[tuple[list[str], list[str]]], ids: dict[str, int], pad: int):
    """``(input_ids, attention_mask, labels)`` of ``(prompt tokens, response tokens)`` pairs,
    right-padded with ``pad``; labels are -100 except on response tokens (loss on responses only)."""
    import torch

    width = max(len(p) + len(r) for p, r in batch)
    x = torch.full((len(batch), width), pad, dtype=torch.long)
    y = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (prompt, response) in enumerate(batch):
        seq = [ids[t] for t in prompt + response]
        x[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        y[i, len(prompt) : len(seq)] = torch.tensor(seq[len(prompt) :])
    return x, mask, y


def _lr_at(step: int, stage: Stage, warmup: int) -> float:
    warm = min(warmup, max(1, stage.steps // 10))
    if step < warm:
        return stage.lr * (step + 1) / warm
    progress = (step - warm) / max(1, stage.steps - warm)
    return stage.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_stage(stage: Stage, cfg: ZooTrainConfig, init_dir: Path | None, progress: bool = True):
    """Train one stage; returns the trained model (float32, eval mode)."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM

    torch.manual_seed(stage.seed)
    if init_dir is None:
        model = AutoModelForCausalLM.from_config(hf_config(cfg.shape), dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(init_dir, dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=stage.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    bar = tqdm(_batches(stage, cfg), total=stage.steps, desc=f"zoo train {stage.name}", disable=not progress)
    ema = None
    for step, (x, mask, y) in enumerate(bar):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, stage, cfg.warmup_steps)
        loss = model(input_ids=x, attention_mask=mask, labels=y).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{ema:.3f}")
    model.eval()
    return model, float(ema if ema is not None else float("nan"))


def greedy_accuracy(model, problems: list[Problem], max_new_tokens: int = 192, batch_size: int = 100) -> dict:
    """Greedy-decoding accuracy and mean response length of ``model`` on ``problems``."""
    import torch

    from .tokenizer import make_tokenizer

    tok = make_tokenizer()
    correct, lengths, thinking = 0, [], 0
    for start in range(0, len(problems), batch_size):
        chunk = problems[start : start + batch_size]
        enc = tok([p.prompt() for p in chunk], return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            )
        for p, row in zip(chunk, out[:, enc["input_ids"].shape[1] :]):
            text = tok.decode(row, skip_special_tokens=True)
            correct += is_correct(p, text)
            lengths.append(len(text.split()))
            thinking += text.startswith("try")
    n = len(problems)
    return {"accuracy": correct / n, "mean_tokens": sum(lengths) / n, "thinking_share": thinking / n, "n": n}


def _save(model, out_dir: Path, dtype: str) -> None:
    import torch

    from .tokenizer import make_tokenizer

    with atomic_path(out_dir) as tmp:
        model.to(getattr(torch, dtype)).save_pretrained(tmp, safe_serialization=True)
        model.to(torch.float32)
        make_tokenizer().save_pretrained(tmp)


def train_zoo(out: Path, cfg: ZooTrainConfig | None = None, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Train every stage of ``cfg`` into ``out/<stage>/``; resume finished stages; write ``zoo.json``.

    Returns the manifest: config, per-model sha256 of the weights, final loss, greedy accuracy
    on held-out problems, and wall time per stage.
    """
    import torch

    cfg = cfg or default_config()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    if manifest.get("config") not in (None, json.loads(json.dumps(cfg.to_dict()))):
        log(f"zoo train: {manifest_path} was trained with another config; starting over")
        manifest = {}
    manifest["config"] = cfg.to_dict()
    models = manifest.setdefault("models", {})
    eval_set = generate_problems(cfg.eval_problems, cfg.eval_seed, cfg.levels, prefix="eval")
    names = [s.name for s in cfg.stages]
    for stage in cfg.stages:
        if stage.init is not None and stage.init not in names[: names.index(stage.name)]:
            raise ConfigError(f"zoo stage {stage.name!r} starts from {stage.init!r}, which is not an earlier stage")
        target = out / stage.name
        done = models.get(stage.name)
        if done and (target / "model.safetensors").exists() and sha256_file(target / "model.safetensors") == done["sha256"]:
            log(f"zoo train: {stage.name} already trained, kept")
            continue
        t0 = time.perf_counter()
        model, loss = train_stage(stage, cfg, out / stage.init if stage.init else None, progress)
        seconds = time.perf_counter() - t0
        _save(model, target, cfg.save_dtype)
        if cfg.save_dtype != "float32":
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
        acc = greedy_accuracy(model, eval_set, max_new_tokens=min(192, cfg.shape.max_positions - 20))
        models[stage.name] = {
            "sha256": sha256_file(target / "model.safetensors"),
            "thinking_fraction": stage.thinking_fraction,
            "final_loss": round(loss, 4),
            "train_seconds": round(seconds, 1),
            "greedy_eval": acc,
        }
        log(f"zoo train: {stage.name} done in {seconds:.0f} s, loss {loss:.3f}, greedy accuracy {acc['accuracy']:.3f}, thinking {acc['thinking_share']:.2f}")
        manifest["provenance"] = record("nex zoo train", config=cfg, model={"arch": cfg.shape.arch})
        write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    manifest["total_train_seconds"] = round(sum(m["train_seconds"] for m in models.values()), 1)
    write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def verify_zoo(directory: Path) -> list[str]:
    """Names of models in ``directory`` whose weights do not match the hashes in ``zoo.json``."""
    manifest = json.loads((Path(directory) / MANIFEST).read_text())
    bad = []
    for name, entry in manifest["models"].items():
        path = Path(directory) / name / "model.safetensors"
        if not path.exists() or sha256_file(path) != entry["sha256"]:
            bad.append(name)
    return bad
