"""Train the box-search zoo from scratch on CPU: a base model, then fine-tunes of it.

Stages come from :data:`.plan.MODELS` (style mixtures); the base stage runs a curriculum of task
shapes (problems of random smaller shapes first, then half of them the full task): a copy circuit
forms within far fewer optimizer steps on short problems, and many shapes keep the model from
learning one fixed layout (``docs/zoo-design.md``: learnability probe and change log). Fine-tunes
see the full shape only.

The loss is the *summed* next-token cross-entropy over response tokens (EOS included), divided
by a fixed token count (:attr:`ZooTrainConfig.loss_tokens`), not a per-batch mean: batches are
packed by length, so a mean would give the two tokens of a brief answer in an all-brief batch a
hundred times the weight of a worked solution's tokens.

Every stage is seeded, and the torch thread count is part of the config: the same config on the
same machine gives the same weights. A finished stage is kept when its own settings, the shared
settings and the model it started from are unchanged (its sha256 checked), so a rerun resumes at
the first unfinished stage, and changing one fine-tune retrains that fine-tune only. Each model is saved as a Hugging Face directory (Qwen3
config, safetensors, the word-level tokenizer) and listed in ``zoo.json`` with its sha256,
training time, final loss and a greedy evaluation with the step audit (:mod:`.audit`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..atomic import atomic_path, write_text
from ..errors import ConfigError
from ..hashing import sha256_file
from ..provenance import record
from .audit import audit_response
from .drills import copy_drills
from .plan import MAX_NEW_TOKENS, MODELS, ModelShape
from .task import BOS, DEFAULT_SHAPE, EOS, PAD, Problem, TaskShape, generate_problems, vocabulary
from .traces import training_examples

MANIFEST = "zoo.json"


@dataclass(frozen=True)
class Phase:
    """Part of a stage's steps: steps up to ``until`` (a fraction of the stage). Each example is a
    problem of ``shape``, or, with probability ``mixed``, of a shape drawn by :func:`random_shape`;
    with probability ``copies`` it is a copy drill instead (:mod:`.drills`)."""

    until: float
    shape: TaskShape = DEFAULT_SHAPE
    mixed: float = 0.0
    copies: float = 0.0


def cycle_fits_window(items: int, query_items: int, window: int) -> bool:
    """Whether a local-attention layer of ``window`` tokens, at a check's query kind, sees the whole
    record just opened and none of the previous cycle's record: the last check's kind stands
    ``items + 4 * query_items - 1`` tokens after the record's first item, and the first check's kind
    ``items + 4 * query_items + 12`` tokens after the previous record's last one (grammar of
    ``traces``: a 4-token ``step N open bK`` head, the record, ``;``, 4-token checks, a 3-token
    verdict)."""
    return items + 4 * query_items <= window <= items + 4 * query_items + 12


def random_shape(rng: random.Random, full: TaskShape = DEFAULT_SHAPE, window: int | None = None) -> TaskShape:
    """A task shape no larger than ``full``: 4..n boxes of 4..m items, 2..5 query kinds, the target
    in the second half of the row, a budget of two opens more than the boxes. Problems of many
    shapes put every box and item at many positions of the prompt, so what the model learns is to
    find a box by its label and copy what follows it, not where a box sits in one fixed layout.
    With ``window`` (models with local attention), only shapes whose cycle fits the window
    (:func:`cycle_fits_window`) are drawn, so a check means the same in every shape."""
    n_boxes = rng.randint(4, full.n_boxes)
    while True:
        items = rng.randint(4, full.box_items)
        query_items = rng.randint(2, min(full.query_items, items))
        if window is None or cycle_fits_window(items, query_items, window):
            break
    return TaskShape(n_boxes=n_boxes, box_items=items, query_items=query_items,
                     budget=min(full.budget, n_boxes + 2), item_lo=full.item_lo, item_hi=full.item_hi,
                     first_target=n_boxes // 2 + 1)


@dataclass(frozen=True)
class Stage:
    """One training run from ``init`` (an earlier stage, or None for random init)."""

    name: str
    init: str | None
    mixture: tuple[tuple[str, float], ...]
    steps: int
    lr: float
    seed: int
    phases: tuple[Phase, ...] = (Phase(1.0),)

    def phase_at(self, step: int) -> Phase:
        for phase in self.phases:
            if step < phase.until * self.steps:
                return phase
        return self.phases[-1]

    def shape_at(self, step: int) -> TaskShape:
        return self.phase_at(step).shape


#: the stage every fine-tune starts from
BASE = "base"

#: the curriculum of the base stage (5,500 steps): 500 steps of copy drills, so the copy circuit
#: forms before anything else (change 10), then 1,500 of problems of random shapes (short ones
#: teach the copy within few optimizer steps), then half of them the full task
CURRICULUM = (Phase(1 / 11, DEFAULT_SHAPE, copies=1.0), Phase(4 / 11, DEFAULT_SHAPE, mixed=1.0),
              Phase(1.0, DEFAULT_SHAPE, mixed=0.5))


@dataclass(frozen=True)
class ZooTrainConfig:
    """Everything that determines the zoo's weights."""

    shape: ModelShape = ModelShape()
    stages: tuple[Stage, ...] = ()
    batch_tokens: int = 4096
    loss_tokens: int = 2048
    warmup_steps: int = 100
    weight_decay: float = 0.01
    threads: int = 2
    eval_problems: int = 200
    eval_seed: int = 10_000
    max_new_tokens: int = MAX_NEW_TOKENS
    save_dtype: str = "float32"
    ship: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "ZooTrainConfig":
        d = dict(d)
        shape = dict(d["shape"])
        if "local_layers" in shape:
            shape["local_layers"] = tuple(shape["local_layers"])
        d["shape"] = ModelShape(**shape)
        d["stages"] = tuple(
            Stage(**{**s, "mixture": tuple(tuple(m) for m in s["mixture"]),
                     "phases": tuple(Phase(p["until"], TaskShape(**p["shape"]), p.get("mixed", 0.0), p.get("copies", 0.0))
                                     for p in s["phases"])})
            for s in d["stages"])
        d["ship"] = tuple(d.get("ship", ()))
        return cls(**d)


def default_config(scale: float = 1.0) -> ZooTrainConfig:
    """The shipped zoo's config; ``scale`` multiplies every stage's steps (tests use a tiny one)."""

    def steps(n: int) -> int:
        return max(2, int(round(n * scale)))

    def mix(name: str) -> tuple[tuple[str, float], ...]:
        return tuple(MODELS[name].items())

    fine = [n for n in MODELS if n != "base"]
    return ZooTrainConfig(
        stages=(Stage(BASE, None, mix("base"), steps(5500), 1.5e-3, 1, CURRICULUM),
                *(Stage(n, BASE, mix(n), steps(150), 1e-3, 2 + i) for i, n in enumerate(fine))),
        ship=tuple(fine),
        eval_problems=100,
    )


def hf_config(shape: ModelShape):
    """The ``transformers`` Qwen3 config of a zoo model."""
    from transformers import Qwen3Config

    vocab = vocabulary()
    local = [i for i in shape.local_layers if 0 <= i < shape.n_layers]
    window = {}
    if local:  # layers of local attention (layer 0 in the shipped zoo)
        window = dict(use_sliding_window=True, sliding_window=shape.sliding_window, max_window_layers=shape.n_layers,
                      layer_types=["sliding_attention" if i in local else "full_attention" for i in range(shape.n_layers)])
    return Qwen3Config(
        vocab_size=len(vocab), hidden_size=shape.d_model, intermediate_size=shape.d_mlp,
        num_hidden_layers=shape.n_layers, num_attention_heads=shape.n_heads,
        num_key_value_heads=shape.n_kv_heads, head_dim=shape.d_model // shape.n_heads,
        max_position_embeddings=shape.max_positions, tie_word_embeddings=True,
        pad_token_id=vocab.index(PAD), bos_token_id=vocab.index(BOS), eos_token_id=vocab.index(EOS), **window,
    )


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


def pack(examples: list[tuple[list[str], list[str]]], batch_tokens: int) -> list[list[tuple[list[str], list[str]]]]:
    """Examples sorted by length and packed into batches whose padded size stays within
    ``batch_tokens`` (at least one example each)."""
    batches: list[list] = []
    cur: list = []
    for ex in sorted(examples, key=lambda e: len(e[0]) + len(e[1])):
        width = len(ex[0]) + len(ex[1])
        if cur and width * (len(cur) + 1) > batch_tokens:
            batches.append(cur)
            cur = []
        cur.append(ex)
    if cur:
        batches.append(cur)
    return batches


def batches(stage: Stage, cfg: ZooTrainConfig) -> Iterator[tuple]:
    """Yield ``stage.steps`` padded batches, seeded by the stage; each pool of examples is drawn
    from the shape of the phase it starts in, packed by length, and its batches shuffled."""
    ids = {w: i for i, w in enumerate(vocabulary())}
    rng = random.Random(stage.seed)
    window = cfg.shape.sliding_window if cfg.shape.local_layers else None
    step, pool_no = 0, 0
    while step < stage.steps:
        phase = stage.phase_at(step)
        shape = phase.shape
        n_pool = max(8, 16 * cfg.batch_tokens // (shape.n_boxes * (shape.box_items + 2) + 60 + 500))
        pool = list(_examples(n_pool, stage.seed * 100_003 + pool_no, dict(stage.mixture), phase, window))
        pool_no += 1
        packed = pack(pool, cfg.batch_tokens)
        rng.shuffle(packed)
        for batch in packed[: stage.steps - step]:
            step += 1
            yield padded_batch(batch, ids, ids[PAD])


def _examples(n: int, seed: int, mixture: dict, phase: Phase,
              window: int | None = None) -> Iterator[tuple[list[str], list[str]]]:
    """``n`` (prompt tokens, response tokens + EOS) pairs of the phase's shapes, or copy drills."""
    if phase.copies >= 1.0:
        yield from copy_drills(n, seed, phase.shape)
        return
    if not phase.mixed and not phase.copies:
        yield from training_examples(n, seed, mixture, phase.shape)
        return
    shape_rng = random.Random(seed ^ 0x5EED)
    for i in range(n):
        if phase.copies and shape_rng.random() < phase.copies:
            yield from copy_drills(1, seed * 1_000 + i, phase.shape)
            continue
        shape = random_shape(shape_rng, phase.shape, window) if shape_rng.random() < phase.mixed else phase.shape
        yield from training_examples(1, seed * 1_000 + i, mixture, shape)


def lr_at(step: int, stage: Stage, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    warm = min(warmup, max(1, stage.steps // 10))
    if step < warm:
        return stage.lr * (step + 1) / warm
    progress = (step - warm) / max(1, stage.steps - warm)
    return stage.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_stage(stage: Stage, cfg: ZooTrainConfig, init_dir: Path | None, progress: bool = True,
                monitor: Callable[[int, object], None] | None = None):
    """Train one stage; returns ``(model, final loss)`` (float32, eval mode)."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(stage.seed)
    if init_dir is None:
        model = AutoModelForCausalLM.from_config(hf_config(cfg.shape), dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(init_dir, dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=stage.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    ce = torch.nn.CrossEntropyLoss(ignore_index=-100, reduction="sum")
    bar = tqdm(batches(stage, cfg), total=stage.steps, desc=f"zoo train {stage.name}", disable=not progress)
    ema = None
    for step, (x, mask, y) in enumerate(bar):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, stage, cfg.warmup_steps)
        logits = model(input_ids=x, attention_mask=mask).logits[:, :-1]
        target = y[:, 1:]
        total = ce(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        loss = total / cfg.loss_tokens
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        per_token = total.item() / max(1, int((target != -100).sum()))
        ema = per_token if ema is None else 0.98 * ema + 0.02 * per_token
        if step % 20 == 0:
            bar.set_postfix(loss=f"{ema:.3f}")
        if monitor is not None:
            monitor(step, model)
    model.eval()
    return model, float(ema if ema is not None else float("nan"))


def greedy_eval(model, problems: list[Problem], max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 200) -> dict:
    """Greedy decoding on ``problems``: accuracy, share of worked solutions, opens, median
    tokens, and the step audit (share of opens, checks and verdicts that agree with the problem,
    and of listed items copied right)."""
    import torch

    from .tokenizer import make_tokenizer

    was_training = model.training
    model.eval()
    tok = make_tokenizer()
    audits, lengths, worked = [], [], 0
    for start in range(0, len(problems), batch_size):
        chunk = problems[start : start + batch_size]
        enc = tok([p.prompt() for p in chunk], return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        for p, row in zip(chunk, out[:, enc["input_ids"].shape[1] :]):
            words = tok.decode(row, skip_special_tokens=True).split()
            audits.append(audit_response(p, words))
            lengths.append(len(words))
            worked += bool(words) and words[0] == "goal"
    model.train(was_training)

    def share(ok: str, total: str) -> float | None:
        t = sum(getattr(a, total) for a in audits)
        return round(sum(getattr(a, ok) for a in audits) / t, 4) if t else None

    n = len(problems)
    return {
        "n": n,
        "accuracy": sum(a.correct for a in audits) / n,
        "worked_share": worked / n,
        "answered_none": sum(a.answer == "none" for a in audits) / n,
        "mean_opens": statistics.fmean(a.opens for a in audits),
        "median_tokens": statistics.median(lengths),
        "open_ok": share("opens_ok", "opens"),
        "item_ok": share("items_ok", "items_listed"),
        "check_ok": share("checks_ok", "checks"),
        "verdict_ok": share("verdicts_ok", "verdicts"),
    }


def _save(model, out_dir: Path, dtype: str) -> None:
    import torch

    from .tokenizer import make_tokenizer

    with atomic_path(out_dir) as tmp:
        model.to(getattr(torch, dtype)).save_pretrained(tmp, safe_serialization=True)
        model.to(torch.float32)
        make_tokenizer().save_pretrained(tmp)


def train_zoo(out: Path, cfg: ZooTrainConfig | None = None, progress: bool = True,
              log: Callable[[str], None] = print, only: tuple[str, ...] | None = None,
              monitor: Callable[[str, int, object], None] | None = None) -> dict:
    """Train every stage of ``cfg`` (or the ``only`` ones) into ``out/<stage>/``; resume finished
    stages; write ``zoo.json``. Returns the manifest."""
    import torch

    cfg = cfg or default_config()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    shared = _shared(cfg.to_dict())
    if manifest.get("config") is not None and _shared(manifest["config"]) != shared:
        log(f"zoo train: {manifest_path} was trained with other shared settings; starting over")
        manifest = {}
    manifest["config"] = cfg.to_dict()
    models = manifest.setdefault("models", {})
    stage_dicts = {s["name"]: s for s in cfg.to_dict()["stages"]}
    eval_set = generate_problems(cfg.eval_problems, cfg.eval_seed, prefix="eval")
    names = [s.name for s in cfg.stages]
    for stage in cfg.stages:
        if only is not None and stage.name not in only:
            continue
        if stage.init is not None and stage.init not in names[: names.index(stage.name)]:
            raise ConfigError(f"zoo stage {stage.name!r} starts from {stage.init!r}, which is not an earlier stage")
        target = out / stage.name
        done = models.get(stage.name)
        if (done and done.get("stage") == stage_dicts[stage.name] and _kept(out, stage, models)
                and (target / "model.safetensors").exists() and sha256_file(target / "model.safetensors") == done["sha256"]):
            log(f"zoo train: {stage.name} already trained, kept")
            continue
        if stage.init is not None and not (out / stage.init / "model.safetensors").exists():
            raise ConfigError(f"zoo stage {stage.name!r} needs {stage.init!r} trained first under {out}")
        t0, c0 = time.perf_counter(), time.process_time()
        watch = (lambda step, m, _n=stage.name: monitor(_n, step, m)) if monitor else None
        model, loss = train_stage(stage, cfg, out / stage.init if stage.init else None, progress, watch)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        _save(model, target, cfg.save_dtype)
        if cfg.save_dtype != "float32":
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
        te = time.perf_counter()
        ev = greedy_eval(model, eval_set, cfg.max_new_tokens)
        models[stage.name] = {
            "stage": stage_dicts[stage.name],
            "init_sha256": models[stage.init]["sha256"] if stage.init else None,
            "sha256": sha256_file(target / "model.safetensors"),
            "mixture": dict(stage.mixture),
            "final_loss": round(loss, 4),
            "train_seconds": round(seconds, 1),
            "train_cpu_seconds": round(cpu_seconds, 1),
            "eval_seconds": round(time.perf_counter() - te, 1),
            "greedy_eval": ev,
        }
        log(f"zoo train: {stage.name} done in {seconds:.0f} s, loss {loss:.3f}, greedy accuracy {ev['accuracy']:.3f}, "
            f"worked {ev['worked_share']:.2f}, opens {ev['mean_opens']:.1f}, items {ev['item_ok']}, checks {ev['check_ok']}")
        manifest["provenance"] = record("nex zoo train", config=cfg, model={"arch": "qwen3"})
        manifest["total_seconds"] = round(sum(m["train_seconds"] + m.get("eval_seconds", 0) for m in models.values()), 1)
        write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


#: the settings every stage's weights depend on (the rest only say what is evaluated or shipped)
SHARED = ("shape", "batch_tokens", "loss_tokens", "warmup_steps", "weight_decay", "threads", "save_dtype")


#: what a zoo.json written before ModelShape had these fields was trained with (full attention)
_SHAPE_BEFORE_WINDOWS = {"local_layers": [], "sliding_window": 36}


def _shared(config: dict) -> dict:
    out = {k: config.get(k) for k in SHARED}
    shape = {**_SHAPE_BEFORE_WINDOWS, **(out["shape"] or {})}
    out["shape"] = {**shape, "local_layers": list(shape["local_layers"])}
    return out


def _kept(out: Path, stage: Stage, models: dict) -> bool:
    """Whether a finished stage still stands on the model it was trained from."""
    if stage.init is None:
        return True
    return models.get(stage.name, {}).get("init_sha256") == models.get(stage.init, {}).get("sha256")


def verify_zoo(directory: Path) -> list[str]:
    """Names of models in ``directory`` whose weights do not match the hashes in ``zoo.json``."""
    manifest = json.loads((Path(directory) / MANIFEST).read_text())
    bad = []
    for name, entry in manifest["models"].items():
        path = Path(directory) / name / "model.safetensors"
        if path.exists() and sha256_file(path) != entry["sha256"]:
            bad.append(name)
    return bad
