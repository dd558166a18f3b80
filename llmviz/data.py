"""Offline training text and batching: everything the notebooks train on ships with Python or is made here.

``pydoc_corpus()`` is the ~465 KB of English help text in the standard library's ``pydoc_data.topics``.
``ByteTokenizer`` maps text to UTF-8 bytes (vocabulary 256), enough for the tiny presets; notebooks that teach
tokenisation use :mod:`llmviz.tokenizer` (byte-level BPE).
"""
from __future__ import annotations

import torch

from ._checks import check, check_int


def pydoc_corpus(max_chars: int | None = None) -> str:
    """The English prose of ``pydoc_data.topics`` (Python's own help pages), topics in sorted order."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    return text if max_chars is None else text[:max_chars]


class ByteTokenizer:
    """Text <-> UTF-8 bytes. Vocabulary 256; never an unknown token. (GPT-2's BPE starts from the same bytes.)"""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


def random_batches(ids: torch.Tensor, batch_size: int, block_size: int,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of ``batch_size`` random windows of a 1-D token tensor: inputs [B, T] and next-token targets [B, T]."""
    check_int(batch_size, "batch_size", minimum=1)
    check_int(block_size, "block_size", minimum=1)
    check(ids.dim() == 1 and len(ids) > block_size, "len(ids)", len(ids), f"must exceed block_size={block_size}")
    start = torch.randint(0, len(ids) - block_size, (batch_size,), generator=generator)
    window = start[:, None] + torch.arange(block_size + 1)[None, :]
    chunk = ids[window]
    return chunk[:, :-1], chunk[:, 1:]


def pack_documents(docs: list[list[int]], seq_len: int, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate documents, each followed by ``eos_id``, and cut into rows of ``seq_len`` tokens
    (Llama 3 §3.2 packing). Returns ids [rows, seq_len] and document ids [rows, seq_len] (the last, partial row
    is dropped); use ``llmviz.masks.document(doc_ids[r])`` for the mask that keeps documents apart."""
    check_int(seq_len, "seq_len", minimum=1)
    flat, owner = [], []
    for d, doc in enumerate(docs):
        flat += list(doc) + [eos_id]
        owner += [d] * (len(doc) + 1)
    rows = len(flat) // seq_len
    check(rows >= 1, "docs", f"{len(flat)} tokens", f"need at least seq_len={seq_len} tokens to fill one row")
    ids = torch.tensor(flat[: rows * seq_len]).view(rows, seq_len)
    doc_ids = torch.tensor(owner[: rows * seq_len]).view(rows, seq_len)
    return ids, doc_ids
