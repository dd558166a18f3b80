"""Llama (Touvron et al. 2023, §2.2): GPT's decoder with three changes, plus GQA from Llama 2-70B on.

* pre-normalisation with RMSNorm (from GPT-3 / Zhang & Sennrich 2019),
* SwiGLU feed-forward with 2/3·4d hidden units (Shazeer 2020),
* rotary position embeddings in every attention layer instead of absolute positions (Su et al. 2021),
* no biases anywhere; an untied LM head.

HF module: ``LlamaForCausalLM``.

    x = tok_emb(ids)
    for each block:  x = x + attn(rmsnorm(x), RoPE);  x = x + swiglu(rmsnorm(x))
    logits = lm_head(rmsnorm(x))
"""
from __future__ import annotations

import torch
from torch import nn

from ..configs import ModelConfig
from ..layers import Attention, KVCache, RotaryEmbedding, SwiGLU, make_norm
from .base import DecoderLM


class LlamaBlock(nn.Module):
    """Pre-RMSNorm block. HF names: ``input_layernorm`` = attn_norm, ``post_attention_layernorm`` = mlp_norm
    (despite its name it normalises the MLP's input)."""

    def __init__(self, cfg: ModelConfig, layer: int = 0) -> None:
        super().__init__()
        self.attn_norm = make_norm(cfg.norm, cfg.hidden_size, cfg.norm_eps)
        self.attn = self.make_attention(cfg)
        self.mlp_norm = make_norm(cfg.norm, cfg.hidden_size, cfg.norm_eps)
        self.mlp = self.make_ffn(cfg, layer)
        self.rope_interleaved = cfg.rope_interleaved

    @staticmethod
    def make_attention(cfg: ModelConfig) -> nn.Module:
        return Attention(cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, bias=cfg.attention_bias,
                         qk_norm=cfg.qk_norm, norm_eps=cfg.norm_eps, sliding_window=cfg.sliding_window,
                         dropout=cfg.dropout)

    @staticmethod
    def make_ffn(cfg: ModelConfig, layer: int) -> nn.Module:
        return SwiGLU(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias, activation=cfg.activation)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), rope=rope, mask=mask, cache=cache, rope_interleaved=self.rope_interleaved)
        return x + self.mlp(self.mlp_norm(x))


class Llama(DecoderLM):
    """Token embedding, ``num_layers`` Llama blocks sharing one RoPE table, final RMSNorm, LM head."""

    block = LlamaBlock

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.rope = RotaryEmbedding(cfg.rope_dim, cfg.rope_theta, cfg.rope_scaling, cfg.max_position_embeddings,
                                    cfg.rope_interleaved)
        self.blocks = nn.ModuleList(self.block(cfg, i) for i in range(cfg.num_layers))
        self.init_weights()

    def _block_inputs(self, positions: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return x, {"rope": self.rope(positions, x.dtype)}
