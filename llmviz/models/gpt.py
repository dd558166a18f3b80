"""GPT-1 and GPT-2 (Radford et al. 2018, 2019): a stack of Transformer decoder blocks without cross-attention,
learned positions, LayerNorm, a GELU MLP and an LM head tied to the token embedding.

    x = tok_emb(ids) + pos_emb(positions)
    GPT-2 (pre-LN):   x = x + attn(ln_1(x));   x = x + mlp(ln_2(x));    then a final ln_f    (GPT-2 §2.3)
    GPT-1 (post-LN):  x = ln_1(x + attn(x));   x = ln_2(x + mlp(x));    no final norm        (the 2017 layer)
    logits = x @ tok_emb^T

Also GPT-3 (Brown et al. 2020 §2.1: GPT-2's model "with the exception that we use alternating dense and locally
banded sparse attention patterns") and GPT-Neo (EleutherAI's open replica): ``cfg.layer_types`` makes some layers
"local" (a causal window of ``cfg.sliding_window`` keys), and GPT-Neo's unscaled scores (``attention_scale=1``) and
bias-free q/k/v are config fields. HF modules: ``OpenAIGPTLMHeadModel``, ``GPT2LMHeadModel``, ``GPTNeoForCausalLM``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..configs import ModelConfig
from ..layers import MLP, Attention, KVCache, make_norm
from .base import DecoderLM


class GPT2Block(nn.Module):
    """A decoder block: pre-LN (GPT-2 §2.3: "layer normalization was moved to the input of each sub-block") or, with
    ``cfg.pre_norm=False``, GPT-1's post-LN (the norm after each residual add)."""

    def __init__(self, cfg: ModelConfig, layer: int = 0) -> None:
        super().__init__()
        self.pre_norm = cfg.pre_norm
        self.attn_norm = make_norm(cfg.norm, cfg.hidden_size, cfg.norm_eps)
        self.attn = Attention(cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, bias=cfg.attention_bias,
                              scale=cfg.attention_scale, sliding_window=cfg.layer_window(layer), dropout=cfg.dropout,
                              out_bias=cfg.attention_out_bias)
        self.mlp_norm = make_norm(cfg.norm, cfg.hidden_size, cfg.norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size, cfg.activation, bias=cfg.mlp_bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.drop(self.attn(self.attn_norm(x), mask=mask, cache=cache))
            return x + self.drop(self.mlp(self.mlp_norm(x)))
        x = self.attn_norm(x + self.drop(self.attn(x, mask=mask, cache=cache)))
        return self.mlp_norm(x + self.drop(self.mlp(x)))


class GPT2(DecoderLM):
    """Token + learned position embeddings, ``num_layers`` blocks, final LayerNorm, tied head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.pos_embed = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(GPT2Block(cfg, i) for i in range(cfg.num_layers))
        self.init_weights()

    def _block_inputs(self, positions: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        return self.drop(x + self.pos_embed(positions)), {}


class GPT1(GPT2):
    """GPT-1 (Radford et al. 2018 §4.1): post-LN blocks and no final LayerNorm (each block already ends in one);
    N(0, 0.02) initialisation without GPT-2's residual scaling."""

    residual_scaling = False

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.norm = nn.Identity()
