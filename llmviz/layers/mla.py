"""Multi-head latent attention (MLA; DeepSeek-V2 §2.1, eq. 9-19; DeepSeek-V3 §2.1.1; HF ``DeepseekV3Attention``).

Keys and values are rebuilt from one small latent per token, so the cache holds only that latent and one shared
RoPE key, instead of K and V for every head:

    c_KV = RMSNorm(W_DKV h)                  [kv_lora_rank]          the latent that is cached       (eq. 9)
    k_R  = RoPE(W_KR h)                      [qk_rope_head_dim]      one decoupled RoPE key, all heads (eq. 14)
    k_C  = W_UK c_KV,   v = W_UV c_KV        per head                                               (eq. 10-11)
    q    = W_UQ RMSNorm(W_DQ h)  (or W_Q h when q_lora_rank = 0), split into q_C and q_R = RoPE(·)  (eq. 12-13)
    score = (q_C·k_C + q_R·k_R) / sqrt(qk_nope + qk_rope)                                            (eq. 16)

Two equal ways to compute it: **naive** (expand c_KV to per-head K and V, then ordinary attention) and
**absorbed** (q_C·(W_UK c) = (W_UKᵀ q_C)·c: fold W_UK into the query and W_UV into the output, then attend
directly over the cached latents, one "KV head" shared by all heads like MQA). Absorption is why RoPE is
decoupled: a position-dependent rotation between W_UK and the query would not commute with the fold.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .._checks import check
from .attention import KVCache, _additive, causal_mask
from .norm import RMSNorm
from .position import apply_rope


def mla_scale(cfg) -> float:
    """``1/sqrt(qk_nope + qk_rope)`` (192 for V3, not the 576 of the cached width), times YaRN's ``mscale²`` when
    the scaling sets ``mscale_all_dim`` (HF ``yarn_apply_mscale``)."""
    scale = (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim) ** -0.5
    s = cfg.rope_scaling or {}
    if s.get("rope_type", "default") != "default" and s.get("mscale_all_dim"):
        m = 0.1 * s["mscale_all_dim"] * math.log(s["factor"]) + 1.0 if s["factor"] > 1 else 1.0
        scale *= m * m
    return scale


class MLA(nn.Module):
    """MLA with HF's parameter names. ``absorb=True`` selects the absorbed computation (same result).

    The cache (a :class:`KVCache`) stores ``c_KV`` [B, 1, S, kv_lora_rank] as its keys and ``k_R`` [B, 1, S,
    qk_rope_head_dim] as its values: ``kv_lora_rank + qk_rope_head_dim`` numbers per token and layer (576 for V3).
    """

    def __init__(self, cfg, absorb: bool = False) -> None:
        super().__init__()
        check(cfg.uses_mla, "kv_lora_rank", cfg.kv_lora_rank, "MLA needs a latent: kv_lora_rank >= 1")
        H, h = cfg.num_heads, cfg.hidden_size
        self.num_heads, self.kv_lora_rank = H, cfg.kv_lora_rank
        self.d_nope, self.d_rope, self.d_v = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
        d_q = self.d_nope + self.d_rope
        if cfg.q_lora_rank:
            self.q_a_proj = nn.Linear(h, cfg.q_lora_rank, bias=cfg.attention_bias)       # W_DQ
            self.q_a_layernorm = RMSNorm(cfg.q_lora_rank)                                  # eps 1e-6, as HF
            self.q_b_proj = nn.Linear(cfg.q_lora_rank, H * d_q, bias=False)              # W_UQ and W_QR
        else:
            self.q_proj = nn.Linear(h, H * d_q, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(h, self.kv_lora_rank + self.d_rope, bias=cfg.attention_bias)  # W_DKV, W_KR
        self.kv_a_layernorm = RMSNorm(self.kv_lora_rank)                                   # on c_KV only
        self.kv_b_proj = nn.Linear(self.kv_lora_rank, H * (self.d_nope + self.d_v), bias=False)  # W_UK and W_UV
        self.o_proj = nn.Linear(H * self.d_v, h, bias=cfg.attention_bias)
        self.scale = mla_scale(cfg)
        self.absorb = absorb

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))) if hasattr(self, "q_b_proj") else self.q_proj(x)
        return rearrange(q, "b t (h d) -> b h t d", h=self.num_heads)                     # [B, H, T, d_nope + d_rope]

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None = None,
                cache: KVCache | None = None, rope_interleaved: bool = True) -> torch.Tensor:
        """x [B, T, hidden] -> [B, T, hidden]; rope: (cos, sin) [T, d_rope] for the new positions; mask: bool or
        additive, broadcastable to [B, H, T, S], combined with causality."""
        q_nope, q_rope = self._query(x).split([self.d_nope, self.d_rope], dim=-1)
        c, k_rope = self.kv_a_proj_with_mqa(x).split([self.kv_lora_rank, self.d_rope], dim=-1)
        c = self.kv_a_layernorm(c)[:, None]                                             # [B, 1, T, r]
        q_rope = apply_rope(q_rope, *rope, rope_interleaved)
        k_rope = apply_rope(k_rope[:, None], *rope, rope_interleaved)                  # [B, 1, T, d_rope]
        if cache is not None:
            c, k_rope = cache.append(c, k_rope)                                         # the cache: latents only
        T, S = q_nope.shape[2], c.shape[2]
        bias = _additive(causal_mask(T, S, device=x.device), q_nope.dtype)
        if mask is not None:
            bias = (bias + _additive(mask, q_nope.dtype)).clamp(min=torch.finfo(q_nope.dtype).min)
        w = self.kv_b_proj.weight.view(self.num_heads, self.d_nope + self.d_v, self.kv_lora_rank)
        w_uk, w_uv = w[:, :self.d_nope], w[:, self.d_nope:]                            # [H, d_nope, r], [H, d_v, r]
        if self.absorb:  # plain matmuls: one latent "KV head" shared by all heads (SDPA's GQA path is slow here)
            q_lat = torch.einsum("bhtd,hdr->bhtr", q_nope, w_uk)                       # W_UKᵀ folded into q
            scores = q_lat @ c.transpose(-1, -2) + q_rope @ k_rope.transpose(-1, -2)   # [B, H, T, S]
            probs = torch.softmax(scores * self.scale + bias, dim=-1)
            out = torch.einsum("bhts,bzsr,hvr->bhtv", probs, c, w_uv)                  # Σ over the latents, then W_UV
        else:
            k_nope = torch.einsum("bzsr,hdr->bhsd", c, w_uk)                           # [B, H, S, d_nope]
            v = torch.einsum("bzsr,hvr->bhsv", c, w_uv)                                # [B, H, S, d_v]
            k = torch.cat([k_nope, k_rope.expand(-1, self.num_heads, -1, -1)], dim=-1)
            q = torch.cat([q_nope, q_rope], dim=-1)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        empty = (bias <= torch.finfo(bias.dtype).min / 2).all(dim=-1, keepdim=True)   # rows with no key: 0, not NaN
        return self.o_proj(rearrange(out.masked_fill(empty, 0.0), "b h t d -> b t (h d)"))
