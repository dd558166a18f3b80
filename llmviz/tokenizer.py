"""Byte-level BPE (Radford et al. 2019 §2.2; Qwen's BBPE): merges learned on top of the 256 bytes, so any text,
in any script, is encoded without an unknown token. Training uses the Rust ``tokenizers`` library (fast enough
to retrain in a notebook cell); what the notebooks teach is the effect of the vocabulary size."""
from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ._checks import check_int


def train_bpe(texts: Iterable[str], vocab_size: int, special_tokens: tuple[str, ...] = ()) -> Tokenizer:
    """A byte-level BPE tokenizer with ``vocab_size`` entries (256 bytes + specials + merges)."""
    check_int(vocab_size, "vocab_size", minimum=256 + len(special_tokens))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    return tok


def chars_per_token(tok: Tokenizer, text: str) -> float:
    """How many characters one token covers on ``text`` (higher = shorter sequences for the same text)."""
    return len(text) / max(1, len(tok.encode(text).ids))


def bytes_per_token(tok: Tokenizer, text: str) -> float:
    """UTF-8 bytes per token: fairer than characters across scripts (a Chinese character is 3 bytes)."""
    return len(text.encode("utf-8")) / max(1, len(tok.encode(text).ids))
