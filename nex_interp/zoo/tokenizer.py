"""The zoo's word-level tokenizer: one token per whitespace-separated word of the task grammar.

Built with the ``tokenizers`` library (``WordLevel`` model, whitespace split) and wrapped as a
``PreTrainedTokenizerFast`` so zoo models load through the same code path as real checkpoints.
The tokenizer adds no special tokens: the BOS token is part of the prompt text
(``<bos> nums ...``). Decoding joins tokens with single spaces, so ``decode(encode(text)) == text``
for normalised text. Padding is on the left (batched generation).
"""

from __future__ import annotations

from .task import BOS, EOS, PAD, UNK, vocabulary


def make_tokenizer():
    """The zoo tokenizer (``transformers.PreTrainedTokenizerFast``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = vocabulary()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
    )
