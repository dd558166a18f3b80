"""GPT-2 (Radford et al. 2019): learned positions and pre-LN blocks, LayerNorm, GELU MLP, tied LM head.

Also GPT-3's dense layers (Brown et al. 2020 §2.1: "the same model and architecture as GPT-2"). HF module:
``GPT2LMHeadModel``.

    x = tok_emb(ids) + pos_emb(positions)
    for each block:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
    logits = ln_f(x) @ tok_emb^T
"""
from __future__ import annotations

import torch
from torch import nn

from ..configs import ModelConfig
from ..layers import MLP, Attention, KVCache, make_norm
from .base import DecoderLM


class GPT2Block(nn.Module):
    """Pre-LN transformer block (GPT-2 §2.3: layer norm moved to the input of each sub-block)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = make_norm(cfg.norm, cfg.hidden_size, cfg.norm_eps)
        self.attn = Attention(cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, bias=cfg.attention_bias,
                              sliding_window=cfg.sliding_window, dropout=cfg.dropout)
        self.mlp_norm = make_norm(cfg.norm, cfg.hidden_size, cfg.norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size, cfg.activation, bias=cfg.mlp_bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.attn_norm(x), mask=mask, cache=cache))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


class GPT2(DecoderLM):
    """Token + learned position embeddings, ``num_layers`` pre-LN blocks, final LayerNorm, tied head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.pos_embed = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(GPT2Block(cfg) for _ in range(cfg.num_layers))
        self.init_weights()

    def _block_inputs(self, positions: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return self.drop(x + self.pos_embed(positions)), {}
