"""Word-level tokenizer of the box-search task: one token per whitespace-separated word.

Same construction as the first zoo's (``tokenizers`` ``WordLevel`` with whitespace split, wrapped
as ``PreTrainedTokenizerFast``, no special tokens added: BOS is written in the prompt text,
padding on the left). The vocabulary (:func:`.task.vocabulary`) has one token per item number
(600 by default), box label and step number, so every new item on the page is a new token.
"""

from __future__ import annotations

from .task import BOS, DEFAULT_SHAPE, EOS, PAD, UNK, TaskShape, vocabulary


def make_tokenizer(shape: TaskShape = DEFAULT_SHAPE):
    """The box-search tokenizer (``transformers.PreTrainedTokenizerFast``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = vocabulary(shape)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   unk_token=UNK, padding_side="left")
