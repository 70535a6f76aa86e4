"""Turning a prompt into model input ids, the same way for generation and for capture.

With ``chat_template=True`` the prompt becomes the single user message of the tokenizer's chat
template (with the generation prompt appended), whose text already holds any special tokens;
otherwise the raw prompt is tokenized with the tokenizer's usual special tokens (e.g. BOS).
"""

from __future__ import annotations

from ..errors import ConfigError


def prompt_text(tokenizer, prompt: str, chat_template: bool) -> str:
    """The exact text the model sees before its response."""
    if not chat_template:
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("--chat-template was asked for but the model's tokenizer has no chat template: drop --chat-template")
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer, prompt: str, chat_template: bool) -> list[int]:
    """Input ids of the prompt; never empty (a BOS or EOS token stands in for an empty prompt)."""
    text = prompt_text(tokenizer, prompt, chat_template)
    ids = list(tokenizer(text, add_special_tokens=not chat_template)["input_ids"])
    if not ids:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise ConfigError("empty prompt and the tokenizer has no BOS/EOS token to start from: give a non-empty prompt")
        ids = [int(start)]
    return ids


def encode_response(tokenizer, response: str) -> list[int]:
    """Input ids of a response, teacher-forced after the prompt (no special tokens added)."""
    return list(tokenizer(response, add_special_tokens=False)["input_ids"])
