"""Sample chains of thought: N responses per prompt with the HF model's own KV-cached ``generate``.

Prompts come as JSONL rows with a ``prompt`` string (and optionally ``id``/``problem_id`` and any
other fields, e.g. a reference answer used later for evaluation only). Each output row carries
``id`` (``"{problem_id}:{sample}"``), ``problem_id``, ``sample``, ``prompt``, ``response``, every
other field of its prompt row, and ``chat_template``, ``n_response_tokens`` and ``finish_reason``
(``stop`` or ``length``).

Generation is per problem by default: all samples of one problem are drawn (in batches of
``batch_size``) with the RNG seeded from ``(seed, problem_id)``, so a problem's samples do not
depend on which other problems are generated with it or on resuming. With ``batch_problems`` > 1,
one ``generate`` call holds the samples of that many problems (left-padded): far faster for small
models, whose decoding cost is per step, not per row. Each row then draws its tokens from its own
generator, seeded from ``(seed, problem_id, sample)`` (:class:`RowSampler`), so a row's tokens
still do not depend on its batch, up to the float rounding of batched logits (none when the
prompts have one length and the kernels do not depend on the batch). The two modes draw different
samples. :func:`generate_to_file` appends each finished problem to the output JSONL and skips
finished problems when run again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from . import decoding
from .config_dict import DictConfig
from .errors import ConfigError
from .jsonl import InputError
from .models.prompts import encode_prompt

if TYPE_CHECKING:  # pragma: no cover
    from .models.loader import LoadedModel

#: fields the generator writes (a prompt row's own fields of these names are overridden)
OUTPUT_FIELDS = ("id", "problem_id", "sample", "prompt", "response", "chat_template", "n_response_tokens", "finish_reason")


@dataclass(frozen=True)
class GenerationConfig(DictConfig):
    """Sampling settings. ``temperature`` 0 means greedy decoding."""

    samples: int = 4
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 512
    seed: int = 0
    batch_size: int = 8
    chat_template: bool = False
    batch_problems: int = 1

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError(f"--samples must be >= 1, got {self.samples}")
        if self.temperature < 0:
            raise ConfigError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.batch_problems < 1:
            raise ConfigError(f"--batch-problems must be >= 1, got {self.batch_problems}")



def normalise_prompts(rows: list[dict], source: str = "prompts") -> list[dict]:
    """Check prompt rows and give each a unique string ``problem_id`` (its ``problem_id``, ``id`` or line index)."""
    out, seen = [], set()
    for i, row in enumerate(rows):
        line = row.get("_line", i + 1)
        if not isinstance(row.get("prompt"), str):
            raise InputError(f"{source} line {line} has no string field 'prompt': each row needs one")
        pid = row.get("problem_id", row.get("id", i))
        pid = str(pid)
        if pid in seen:
            raise InputError(f"{source} line {line} repeats problem id {pid!r}: give each prompt a unique 'id'")
        seen.add(pid)
        clean = {k: v for k, v in row.items() if k not in ("_line", "id", "problem_id")}
        clean["problem_id"] = pid
        out.append(clean)
    return out


def _problem_seed(seed: int, problem_id: str) -> int:
    h = hashlib.sha256(f"{seed}\x00{problem_id}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def generate_problem(model: "LoadedModel", prompt_row: dict, config: GenerationConfig) -> list[dict]:
    """All ``config.samples`` responses to one normalised prompt row."""
    import torch

    ids = _encode_checked(model, prompt_row, config)
    eos_set, pad = _stop_tokens(model)
    device = model.device
    torch.manual_seed(_problem_seed(config.seed, prompt_row["problem_id"]))
    rows = []
    for start in range(0, config.samples, config.batch_size):
        n = min(config.batch_size, config.samples - start)
        input_ids = torch.tensor([ids] * n, dtype=torch.long, device=device)
        attn = torch.ones_like(input_ids)
        kwargs = dict(max_new_tokens=config.max_new_tokens, pad_token_id=pad, eos_token_id=sorted(eos_set) or None)
        if config.temperature > 0:
            kwargs.update(do_sample=True, temperature=config.temperature, top_p=config.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = model.hf_model.generate(input_ids=input_ids, attention_mask=attn, **kwargs)
        new = out[:, input_ids.shape[1]:].cpu().tolist()
        rows.extend(_response_row(model, prompt_row, start + j, seq, eos_set, config) for j, seq in enumerate(new))
    return rows


def _encode_checked(model: "LoadedModel", prompt_row: dict, config: GenerationConfig) -> list[int]:
    """The prompt's token ids; a one-line error when it and the new tokens exceed the context."""
    ids = encode_prompt(model.tokenizer, prompt_row["prompt"], config.chat_template)
    if len(ids) + config.max_new_tokens > model.n_ctx:
        raise ConfigError(
            f"prompt {prompt_row['problem_id']!r} has {len(ids)} tokens; with --max-new-tokens {config.max_new_tokens} "
            f"it exceeds the model's context of {model.n_ctx}: lower --max-new-tokens"
        )
    return ids


def _stop_tokens(model: "LoadedModel") -> tuple[set[int], int]:
    """(EOS ids, pad id) of the model's generation config and tokenizer."""
    tok = model.tokenizer
    eos = model.hf_model.generation_config.eos_token_id
    if eos is None:
        eos = tok.eos_token_id
    eos_set = set(eos if isinstance(eos, list) else [eos]) - {None}
    pad = tok.pad_token_id if tok.pad_token_id is not None else next(iter(eos_set), 0)
    return eos_set, pad


def _response_row(model: "LoadedModel", prompt_row: dict, sample: int, seq: list[int], eos_set: set[int],
                  config: GenerationConfig) -> dict:
    """One output row: the new tokens up to the first EOS, decoded, with the prompt row's fields."""
    finish = "length"
    for k, t in enumerate(seq):
        if t in eos_set:
            seq, finish = seq[:k], "stop"
            break
    extra = {k: v for k, v in prompt_row.items() if k not in OUTPUT_FIELDS}
    return {"id": f"{prompt_row['problem_id']}:{sample}", "problem_id": prompt_row["problem_id"], "sample": sample,
            "prompt": prompt_row["prompt"], "response": model.tokenizer.decode(seq, skip_special_tokens=True), **extra,
            "chat_template": config.chat_template, "n_response_tokens": len(seq), "finish_reason": finish}


class RowSampler:
    """A ``transformers`` logits processor that samples each row with its own generator.

    It applies the temperature and the top-p filter itself, draws one token per row from that
    row's ``torch.Generator``, and returns scores that are 0 at the drawn token and -inf elsewhere,
    so ``generate`` run greedily emits exactly the drawn tokens.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float) -> None:
        import torch

        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature, self.top_p = temperature, top_p

    def _probs(self, scores):
        import torch

        probs = torch.softmax(scores.float().cpu() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p >= self.top_p  # keep the smallest prefix reaching top_p
            sorted_p[drop] = 0.0
            probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
        return probs

    def draw(self, scores, rows: list[int]) -> list[int]:
        """One token for each of ``rows`` (row numbers), from ``scores`` (one line per row)."""
        import torch

        probs = self._probs(scores)
        return [int(torch.multinomial(probs[i], 1, generator=self.generators[r])) for i, r in enumerate(rows)]

    def __call__(self, input_ids, scores):
        import torch

        out = torch.full_like(scores, float("-inf"))
        for i, t in enumerate(self.draw(scores, list(range(len(self.generators))))):
            out[i, t] = 0.0
        return out


def generate_group(model: "LoadedModel", prompt_rows: list[dict], config: GenerationConfig) -> list[dict]:
    """All ``config.samples`` responses to each of several normalised prompt rows, in one batch
    (rows sampled by :class:`RowSampler`, or greedily): by :func:`nex_interp.decoding.decode`
    for the models it supports (Qwen3, the zoo's), else one left-padded ``generate`` call."""
    import torch
    from transformers import LogitsProcessorList

    encoded = [_encode_checked(model, r, config) for r in prompt_rows]
    eos_set, pad = _stop_tokens(model)
    width = max(len(ids) for ids in encoded)
    jobs = [(r, ids, s) for r, ids in zip(prompt_rows, encoded) for s in range(config.samples)]
    seeds = [_problem_seed(config.seed, f"{r['problem_id']}\x00{s}") for r, _, s in jobs]
    if decoding.supported(model.hf_model):
        pick = RowSampler(seeds, config.temperature, config.top_p).draw if config.temperature > 0 else decoding.greedy
        seqs = decoding.decode(model.hf_model, encoded, config.samples, config.max_new_tokens, eos_set, pick, pad)
        return [_response_row(model, r, sample, seq, eos_set, config) for (r, _, sample), seq in zip(jobs, seqs)]
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for _, ids, _ in jobs], dtype=torch.long, device=model.device)
    attn = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for _, ids, _ in jobs], dtype=torch.long, device=model.device)
    kwargs = dict(max_new_tokens=config.max_new_tokens, pad_token_id=pad, eos_token_id=sorted(eos_set) or None,
                  do_sample=False, temperature=None, top_p=None, top_k=None)
    if config.temperature > 0:
        kwargs["logits_processor"] = LogitsProcessorList([RowSampler(seeds, config.temperature, config.top_p)])
    with torch.inference_mode():
        out = model.hf_model.generate(input_ids=input_ids, attention_mask=attn, **kwargs)
    return [_response_row(model, r, sample, seq, eos_set, config)
            for (r, _, sample), seq in zip(jobs, out[:, width:].cpu().tolist())]


def _generate_rows(model: "LoadedModel", rows: list[dict], config: GenerationConfig, progress: bool) -> Iterator[list[dict]]:
    """The responses of ``rows``, one list per problem, in prompt order (per problem, or in groups
    of ``config.batch_problems``)."""
    if config.batch_problems == 1:
        for row in _progress(rows, progress, config.samples):
            yield generate_problem(model, row, config)
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=len(rows), desc="generate", unit="problem", disable=not progress)
    for start in range(0, len(rows), config.batch_problems):
        group = rows[start : start + config.batch_problems]
        out = generate_group(model, group, config)
        bar.update(len(group))
        for k in range(len(group)):
            yield out[k * config.samples : (k + 1) * config.samples]
    bar.close()


def generate_responses(
    model: "LoadedModel", prompts: list[dict], samples: int = 4, *, temperature: float = 0.7, top_p: float = 0.95,
    max_new_tokens: int = 512, seed: int = 0, batch_size: int = 8, chat_template: bool = False, progress: bool = False,
    batch_problems: int = 1,
) -> list[dict]:
    """``samples`` responses to every prompt row, in prompt order (settings: see :class:`GenerationConfig`)."""
    config = GenerationConfig(samples, temperature, top_p, max_new_tokens, seed, batch_size, chat_template, batch_problems)
    out = []
    for rows in _generate_rows(model, normalise_prompts(prompts), config, progress):
        out.extend(rows)
    return out


def _progress(rows: list[dict], enabled: bool, samples: int) -> Iterator[dict]:
    from tqdm.auto import tqdm

    bar = tqdm(rows, desc="generate", unit="problem", disable=not enabled)
    for row in bar:
        yield row
        bar.set_postfix(responses=(bar.n + 1) * samples)


def _done_problems(path: Path, samples: int) -> set[str]:
    """Problem ids already complete in an output file; drops a torn last line left by a kill."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep != len(data):  # an interrupted write: cut it off
        with open(path, "r+b") as f:
            f.truncate(keep)
        data = data[:keep]
    counts: dict[str, set[int]] = {}
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            counts.setdefault(str(row["problem_id"]), set()).add(int(row["sample"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise InputError(f"existing output {path} line {n} is not a response row: choose a new output file") from None
    done = set()
    for pid, got in counts.items():
        if got != set(range(samples)):
            raise InputError(
                f"existing output {path} has samples {sorted(got)[:5]} of problem {pid!r}, not 0..{samples - 1}: "
                "use the same --samples as before or a new output file"
            )
        done.add(pid)
    return done


@dataclass
class GenerationReport:
    n_problems: int
    n_skipped_done: int
    n_generated: int
    output: Path


def generate_to_file(model: "LoadedModel", prompts: list[dict], out: str | os.PathLike, config: GenerationConfig, progress: bool = True) -> GenerationReport:
    """Generate to ``out`` (JSONL), appending each finished problem; finished problems are skipped."""
    from .provenance import record, write_sidecar

    out = Path(out)
    rows = normalise_prompts(prompts)
    done = _done_problems(out, config.samples)
    todo = [r for r in rows if r["problem_id"] not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    n_new = 0
    with open(out, "a", encoding="utf-8") as f:
        for problem_rows in _generate_rows(model, todo, config, progress):
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in problem_rows)
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
            n_new += config.samples
    write_sidecar(out, record("generate", config=config.to_dict(), model=model.identity, inputs={"n_prompts": len(rows)}))
    return GenerationReport(len(rows), len(rows) - len(todo), n_new, out)
