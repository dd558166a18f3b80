"""Qwen3 dense (Qwen3 Technical Report §2): the Llama block with two attention changes.

* QK-Norm: an RMSNorm over ``head_dim`` of every query and key head (one weight shared by the heads),
  applied before RoPE, for training stability; Qwen2's QKV biases are removed.
* an explicit ``head_dim`` (128) that need not equal hidden / heads (Qwen3-0.6B: 1024 / 16 = 64 ≠ 128).

RoPE base 1,000,000, GQA, SwiGLU, pre-RMSNorm and tied embeddings in the small models come from the config.
HF module: ``Qwen3ForCausalLM``.
"""
from __future__ import annotations

from .._checks import check
from ..configs import ModelConfig
from .llama import Llama


class Qwen3(Llama):
    """Llama with ``cfg.qk_norm`` on (the Attention module places the norm before RoPE)."""

    def __init__(self, cfg: ModelConfig) -> None:
        check(cfg.qk_norm, "qk_norm", cfg.qk_norm, "Qwen3 normalises q and k per head; set qk_norm=True")
        super().__init__(cfg)
