"""A decode loop for many sampled rows of a small Qwen3 model: a preallocated KV cache, each prompt
prefilled once for all of its samples, and finished rows dropped from the batch.

``transformers``' ``generate`` grows its KV cache by concatenation, so each step copies the whole
cache: for the zoo's 1.9M-parameter models at 192 rows and 500 cached tokens, that copy is about
two thirds of a decode step on CPU (measured in ``benchmarks/decode_speed.py``). This loop writes
each new key and value in place, attends over the filled part only (over the last
``sliding_window`` slots in a sliding-window layer), runs the forward of a prompt once however
many samples it has, and stops computing a row once it has emitted EOS.

It calls the model's own modules (norms, projections, rotary embedding, MLP), so its logits are the
model's, up to float rounding. It applies to Qwen3 models with the default rotary embedding
(:func:`supported`); :mod:`nex_interp.generation` falls back to ``generate`` for every other model.
Tokens are picked by a caller's function, so the per-row seeded sampling of
:class:`~nex_interp.generation.RowSampler` draws the same tokens here as under ``generate``.
"""

from __future__ import annotations

from typing import Callable, Sequence

#: drop finished rows once this share of the active rows has finished
COMPACT_SHARE = 0.25


def supported(hf_model) -> bool:
    """Whether :func:`decode` can run ``hf_model`` (a Qwen3 causal LM with plain rotary embedding)."""
    cfg = getattr(hf_model, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "qwen3":
        return False
    rope = getattr(cfg, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    return rope_type == "default" and hasattr(hf_model, "model") and hasattr(hf_model.model, "rotary_emb")


class _Cache:
    """Per-layer key/value buffers ``(rows, kv_heads, slots, head_dim)`` and which slots hold a token."""

    def __init__(self, hf_model, rows: int, slots: int, device, dtype) -> None:
        import torch

        cfg = hf_model.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        shape = (rows, cfg.num_key_value_heads, slots, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.num_hidden_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.num_hidden_layers)]
        self.valid = torch.zeros((rows, slots), dtype=torch.bool, device=device)

    def select(self, index) -> None:
        """Keep the rows in ``index`` (a long tensor), in that order."""
        self.k = [k.index_select(0, index) for k in self.k]
        self.v = [v.index_select(0, index) for v in self.v]
        self.valid = self.valid.index_select(0, index)


def greedy(logits, rows: list[int]) -> list[int]:
    """A ``pick`` for :func:`decode`: the most likely token of each row."""
    return logits.argmax(dim=-1).tolist()


def _windows(hf_model) -> list[int | None]:
    return [getattr(layer.self_attn, "sliding_window", None) for layer in hf_model.model.layers]


def _attention_mask(valid, start: int, t: int, window: int | None):
    """``(lo, allowed)``: the first cache slot a layer with ``window`` attends to, and which of the
    slots ``lo..start+t-1`` each of the ``t`` new tokens may see ``(rows, t, keys)``: filled slots,
    causally, within the window."""
    import torch

    end = start + t
    lo = 0 if window is None else max(0, start - window + 1)
    slot = torch.arange(lo, end, device=valid.device)
    qslot = start + torch.arange(t, device=valid.device)
    allowed = valid[:, None, lo:end] & (slot[None, :] <= qslot[:, None])[None]
    if window is not None:
        allowed = allowed & ((qslot[:, None] - slot[None, :]) < window)[None]
    # a padding position sees itself, so its (unused) state stays finite: a NaN there would reach
    # real rows through probability 0 x value NaN
    return lo, allowed | (qslot[:, None] == slot[None, :])[None]


def _forward(hf_model, cache: _Cache, ids, positions, start: int, windows: list[int | None]):
    """Run tokens ``ids`` ``(rows, T)`` at cache slots ``start..start+T-1`` (their rotary positions
    ``positions``); store their keys and values; return the last position's logits ``(rows, vocab)``."""
    import torch
    from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb

    model = hf_model.model
    rows, t = ids.shape
    end = start + t
    h = model.embed_tokens(ids)
    cos, sin = model.rotary_emb(h, positions)
    masks = {w: _attention_mask(cache.valid, start, t, w) for w in set(windows)}  # one per window size
    for li, layer in enumerate(model.layers):
        attn = layer.self_attn
        x = layer.input_layernorm(h)
        hd = attn.head_dim
        q = attn.q_norm(attn.q_proj(x).view(rows, t, -1, hd)).transpose(1, 2)
        k = attn.k_norm(attn.k_proj(x).view(rows, t, -1, hd)).transpose(1, 2)
        v = attn.v_proj(x).view(rows, t, -1, hd).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        cache.k[li][:, :, start:end] = k
        cache.v[li][:, :, start:end] = v
        lo, allowed = masks[windows[li]]
        keys, values = cache.k[li][:, :, lo:end], cache.v[li][:, :, lo:end]
        n_kv = keys.shape[1]
        group = q.shape[1] // n_kv
        qg = q.reshape(rows, n_kv, group * t, hd)
        scores = torch.matmul(qg, keys.transpose(-1, -2)) * attn.scaling  # (rows, kv, group*T, keys)
        mask = allowed[:, None, None].expand(rows, 1, group, t, end - lo).reshape(rows, 1, group * t, end - lo)
        scores = scores.masked_fill(~mask, float("-inf"))
        probs = torch.softmax(scores.float(), dim=-1).to(values.dtype)
        out = torch.matmul(probs, values).reshape(rows, n_kv, group, t, hd)
        out = out.permute(0, 3, 1, 2, 4).reshape(rows, t, -1)
        h = h + attn.o_proj(out)
        h = h + layer.mlp(layer.post_attention_layernorm(h))
    h = model.norm(h[:, -1])
    return hf_model.lm_head(h).float()


def decode(hf_model, prompts: Sequence[Sequence[int]], samples: int, max_new_tokens: int, eos: set[int],
           pick: Callable, pad: int = 0) -> list[list[int]]:
    """New tokens of ``samples`` rows per prompt (rows ``p * samples + s``), each ending at its first
    EOS (included) or after ``max_new_tokens``.

    ``pick(logits, rows)`` returns the next token of each active row: ``logits`` is float32
    ``(len(rows), vocab)`` and ``rows`` the row numbers (in the order above) it belongs to.
    """
    import torch

    device = next(hf_model.parameters()).device
    dtype = next(hf_model.parameters()).dtype
    width = max(len(p) for p in prompts)
    n_prompts, n_rows = len(prompts), len(prompts) * samples
    windows = _windows(hf_model)
    out: list[list[int]] = [[] for _ in range(n_rows)]
    with torch.inference_mode():
        ids = torch.full((n_prompts, width), pad, dtype=torch.long, device=device)
        mask = torch.zeros((n_prompts, width), dtype=torch.bool, device=device)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
            mask[i, width - len(p):] = True
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        cache = _Cache(hf_model, n_prompts, width + max_new_tokens, device, dtype)
        cache.valid[:, :width] = mask
        logits = _forward(hf_model, cache, ids, positions, 0, windows)
        rows = torch.arange(n_rows, device=device)
        cache.select(rows // samples)
        logits = logits.index_select(0, rows // samples)
        next_pos = positions[:, -1].index_select(0, rows // samples) + 1
        alive = torch.ones(n_rows, dtype=torch.bool, device=device)
        stop = torch.tensor(sorted(eos), dtype=torch.long, device=device)
        for step in range(max_new_tokens):
            tokens = pick(logits, rows.tolist())
            tok = torch.as_tensor(tokens, dtype=torch.long, device=device)
            for r, t, a in zip(rows.tolist(), tokens, alive.tolist()):
                if a:
                    out[r].append(int(t))
            alive &= ~torch.isin(tok, stop)
            if step == max_new_tokens - 1 or not bool(alive.any()):
                break
            if int((~alive).sum()) >= max(1, COMPACT_SHARE * len(tokens)):
                keep = alive.nonzero().squeeze(1)
                cache.select(keep)
                rows, tok, next_pos, alive = rows[keep], tok[keep], next_pos[keep], alive[keep]
            slot = width + step
            cache.valid[:, slot] = True
            logits = _forward(hf_model, cache, tok[:, None], next_pos[:, None], slot, windows)
            next_pos = next_pos + 1
    return out
