"""Byte-level BPE (Radford et al. 2019 §2.2; Qwen's BBPE): merges learned on top of the 256 bytes, so any text,
in any script, is encoded without an unknown token. Training uses the Rust ``tokenizers`` library (fast enough
to retrain in a notebook cell); what the notebooks teach is the effect of the vocabulary size."""
from __future__ import annotations

from collections.abc import Iterable

from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from ._checks import check, check_int


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


# llama.cpp's pre-tokenizer names (tokenizer.ggml.pre) whose text split is GPT-2's regex; "smollm" first splits
# every digit on its own, as SmolLM2's tokenizer.json does (Digits(individual_digits=True), then ByteLevel)
_GGUF_PRE = {"gpt2": False, "default": False, "smollm": True}


def from_gguf(path: str | Path) -> Tokenizer:
    """The byte-level BPE tokenizer stored in a GGUF header (``tokenizer.ggml.tokens`` / ``merges``, llama.cpp's
    ``gpt2`` model): vocabulary and merges as written, the control tokens (type 3, e.g. ``<|im_start|>``) matched
    whole as special tokens, no BOS added (``add_bos_token`` false in SmolLM2). Decoding round-trips any text."""
    from .hf import gguf_reader

    reader = gguf_reader(path)

    def field(key: str):
        check(key in reader.fields, "GGUF header", Path(path).name, f"the field {key!r} is missing")
        return reader.fields[key].contents()

    kind, pre = field("tokenizer.ggml.model"), reader.fields.get("tokenizer.ggml.pre")
    pre = pre.contents() if pre is not None else "default"
    check(kind == "gpt2", "tokenizer.ggml.model", kind, "only byte-level BPE ('gpt2') tokenizers are supported")
    check(pre in _GGUF_PRE, "tokenizer.ggml.pre", pre, f"supported pre-tokenizers: {sorted(_GGUF_PRE)}")
    tokens, types = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in field("tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if _GGUF_PRE[pre] else byte_level)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, kind in zip(tokens, types) if kind == 3])
    return tok


def gguf_chat_template(path: str | Path) -> str:
    """The Jinja chat template stored in a GGUF header (``tokenizer.chat_template``)."""
    from .hf import gguf_reader

    field = gguf_reader(path).fields.get("tokenizer.chat_template")
    check(field is not None, "GGUF header", Path(path).name, "has no tokenizer.chat_template")
    return field.contents()


def apply_chat_template(template: str, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """Render ``messages`` ([{"role": ..., "content": ...}]) with a model's Jinja chat template (the GGUF header's
    ``tokenizer.chat_template``; for SmolLM2 ChatML with ``<|im_start|>`` / ``<|im_end|>``)."""
    from jinja2 import Environment

    check(isinstance(messages, list) and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in messages)
          and len(messages) > 0, "messages", type(messages).__name__, "must be a non-empty list of {'role', 'content'}")
    return Environment().from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt)
