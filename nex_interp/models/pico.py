"""Pico models: tiny random Hugging Face models with a word-level tokenizer, saved to a directory.

They boot through :func:`nex_interp.models.loader.load_model` like a real checkpoint and need no
network, so tests and notebooks use them as fixtures. Two seeds of the same architecture make a
donor/recipient pair (same shapes, different weights).

>>> from nex_interp.models.pico import make_pico_model   # doctest: +SKIP
>>> make_pico_model(tmp / "pico", arch="qwen3", seed=0)   # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError

#: architectures :func:`make_pico_model` builds; gated MLPs (qwen3, llama) and a plain one (gpt2)
PICO_ARCHS = ("qwen3", "llama", "gpt2")

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")

#: a small vocabulary of everyday words, digits and punctuation, enough for arithmetic prompts
_WORDS = (
    "the a an is are was be to of and or not in on at for with by from as it this that these "
    "we you i he she they my your our so then if else because therefore thus first next now "
    "let us think step answer question problem solve compute find check result total sum "
    "number numbers plus minus times divided equals equal more less than add subtract multiply "
    "divide half double twice each every all some none many much how what which who why when "
    "apples oranges books coins cats dogs boxes cars days hours minutes price cost money "
    "has have had gets got gives gave buys bought sells sold left right wait hmm yes no maybe "
    "correct wrong again try another way final verify so: user assistant system"
).split()
_SYMBOLS = tuple("0123456789") + tuple(".,:;?!+-*/=()") + ("\n",)


def pico_vocab() -> list[str]:
    """The pico tokenizer's vocabulary, in id order (special tokens first)."""
    seen: dict[str, None] = {}
    for tok in (*SPECIAL_TOKENS, *_SYMBOLS, *_WORDS):
        seen.setdefault(tok, None)
    return list(seen)


_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)


def make_pico_tokenizer(vocab: list[str] | None = None):
    """A word-level ``PreTrainedTokenizerFast`` (built with ``tokenizers``), left padding, chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = vocab or pico_vocab()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    # split on whitespace, keeping digits and punctuation as their own tokens
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
            pre_tokenizers.Split(Regex(r"[ \t]+"), behavior="removed"),
            pre_tokenizers.Split(Regex(r"[0-9]|[.,:;?!+\-*/=()]"), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        padding_side="left",
    )
    fast.chat_template = _CHAT_TEMPLATE
    return fast


def pico_config(arch: str, n_layers: int, d_model: int, d_mlp: int, vocab_size: int, n_ctx: int = 512):
    """The HF config of a pico model of ``arch``."""
    from transformers import GPT2Config, LlamaConfig, Qwen3Config

    n_heads = 4
    common = dict(vocab_size=vocab_size, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    if arch == "qwen3":
        return Qwen3Config(
            hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=n_layers,
            num_attention_heads=n_heads, num_key_value_heads=2, head_dim=d_model // n_heads,
            max_position_embeddings=n_ctx, tie_word_embeddings=False, **common,
        )
    if arch == "llama":
        return LlamaConfig(
            hidden_size=d_model, intermediate_size=d_mlp, num_hidden_layers=n_layers,
            num_attention_heads=n_heads, num_key_value_heads=2, max_position_embeddings=n_ctx,
            tie_word_embeddings=False, **common,
        )
    if arch == "gpt2":
        return GPT2Config(
            n_embd=d_model, n_inner=d_mlp, n_layer=n_layers, n_head=n_heads, n_positions=n_ctx,
            activation_function="gelu_new", **common,
        )
    raise ConfigError(f"unknown pico architecture {arch!r}: use one of {', '.join(PICO_ARCHS)}")


def make_pico_model(
    directory: str | Path,
    arch: str = "qwen3",
    seed: int = 0,
    n_layers: int = 2,
    d_model: int = 64,
    d_mlp: int = 128,
    vocab: list[str] | None = None,
    n_ctx: int = 512,
) -> Path:
    """Build a tiny random ``arch`` model and save it (weights, config, tokenizer) to ``directory``.

    The same arguments give the same weights (``seed``); different seeds give a donor/recipient
    pair of identical shapes. Returns ``directory``. Builds on CPU in well under a second.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if arch not in PICO_ARCHS:
        raise ConfigError(f"unknown pico architecture {arch!r}: use one of {', '.join(PICO_ARCHS)}")
    directory = Path(directory)
    tokenizer = make_pico_tokenizer(vocab)
    config = pico_config(arch, n_layers, d_model, d_mlp, len(tokenizer), n_ctx)
    gen = torch.random.fork_rng(devices=[])
    with gen:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        # HF's default init (std 0.02) gives nearly uniform next-token distributions and tiny
        # activations; a wider init makes pico models behave more like trained ones (peaked
        # predictions, a spread of neuron activations) while staying deterministic.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() >= 2:
                    p.normal_(0.0, 1.0 / p.shape[-1] ** 0.5 * 1.5)
    model.eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "pico.json").write_text(
        json.dumps({"arch": arch, "seed": seed, "n_layers": n_layers, "d_model": d_model, "d_mlp": d_mlp}, indent=2) + "\n"
    )
    return directory
