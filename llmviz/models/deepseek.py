"""DeepSeek-V2 / V3 (arXiv:2405.04434, 2412.19437): the Llama block with both halves replaced.

* attention: multi-head latent attention (:mod:`llmviz.layers.mla`): the cache holds one latent and one shared
  RoPE key per token;
* feed-forward: DeepSeekMoE (§2.1.2): the first ``first_k_dense_replace`` layers are dense SwiGLU, the rest have
  always-on shared experts plus fine-grained routed experts (V3: sigmoid router, group-limited top-8 of 256, the
  correction bias used only to choose; V2: softmax, group-limited greedy);
* multi-token prediction (V3 §2.2): :class:`MTP` predicts the token after next from the main model's hidden state
  and the next token's embedding, sharing the embedding and the output head.

    for each block:  x = x + MLA(rmsnorm(x));  x = x + (SwiGLU | shared + routed experts)(rmsnorm(x))

HF module: ``DeepseekV3ForCausalLM`` (which has no MTP module).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check
from ..configs import ModelConfig
from ..layers import SwiGLU, make_norm
from ..layers.mla import MLA
from ..layers.moe import SparseMoE
from .llama import Llama, LlamaBlock


class DeepSeekBlock(LlamaBlock):
    """Pre-RMSNorm block with MLA and, from layer ``first_k_dense_replace`` on, a DeepSeekMoE feed-forward."""

    @staticmethod
    def make_attention(cfg: ModelConfig) -> nn.Module:
        return MLA(cfg)

    @staticmethod
    def make_ffn(cfg: ModelConfig, layer: int) -> nn.Module:
        if cfg.is_moe_layer(layer):
            return SparseMoE(cfg)
        return SwiGLU(cfg.hidden_size, cfg.intermediate_size, activation=cfg.activation)


class DeepSeek(Llama):
    """Token embedding, DeepSeek blocks sharing one (interleaved, YaRN-scaled) RoPE table, RMSNorm, untied head."""

    block = DeepSeekBlock

    def __init__(self, cfg: ModelConfig) -> None:
        check(cfg.uses_mla, "kv_lora_rank", cfg.kv_lora_rank, "DeepSeek attention is MLA: kv_lora_rank >= 1")
        super().__init__(cfg)

    def set_absorb(self, absorb: bool) -> "DeepSeek":
        """Compute MLA the absorbed way (attention over the cached latents) or the naive way (expanded K, V)."""
        for b in self.blocks:
            b.attn.absorb = absorb
        return self

    def router_logits(self) -> list[torch.Tensor]:
        """The last forward's router logits, one [N, E] tensor per MoE layer."""
        return [b.mlp.router_logits for b in self.blocks if isinstance(b.mlp, SparseMoE)]


class MTP(nn.Module):
    """One multi-token-prediction module (DeepSeek-V3 §2.2, eq. 21-23), depth 1: from the main model's final hidden
    state h_i and the embedding of token i+1, predict token i+2.

        h'_i = TRM(M [RMSNorm(Emb(t_{i+1})); RMSNorm(h_i)])       M: [2H -> H]  (``eh_proj``)
        logits_i = OutHead(RMSNorm(h'_i))                          the embedding and OutHead are the main model's

    The concatenation order [embedding; hidden] is the official code's (``enorm``, ``hnorm``), the reverse of the
    paper's eq. 21 (a permutation of M's columns). ``model`` is the main :class:`DeepSeek`; its embedding and head are
    used, not copied."""

    def __init__(self, model: DeepSeek) -> None:
        super().__init__()
        cfg = model.cfg
        self.enorm = make_norm("rmsnorm", cfg.hidden_size, cfg.norm_eps)
        self.hnorm = make_norm("rmsnorm", cfg.hidden_size, cfg.norm_eps)
        self.eh_proj = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size, bias=False)
        self.block = DeepSeekBlock(cfg, cfg.num_layers)   # V3's MTP layer is the 62nd layer: an MoE block
        self.norm = make_norm("rmsnorm", cfg.hidden_size, cfg.norm_eps)
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)
        self.main = [model]  # a plain list: the main model is not a submodule (no double registration)

    def forward(self, input_ids: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """input_ids [B, T], the main model's ``hidden_states(input_ids)`` [B, T, H] -> logits [B, T-1, vocab]:
        row i predicts token i+2."""
        model = self.main[0]
        check(hidden.shape[:2] == input_ids.shape and input_ids.shape[1] >= 2, "hidden.shape", tuple(hidden.shape),
              f"must be [batch, seq_len >= 2, hidden] for input_ids {tuple(input_ids.shape)}")
        emb = model.embed(input_ids[:, 1:])                                    # Emb(t_{i+1})
        h = self.eh_proj(torch.cat([self.enorm(emb), self.hnorm(hidden[:, :-1])], dim=-1))
        positions = torch.arange(h.shape[1], device=h.device)
        h = self.block(h, rope=model.rope(positions, h.dtype))
        return model.lm_head(self.norm(h))

    def loss(self, input_ids: torch.Tensor, hidden: torch.Tensor, weight: float = 0.3) -> torch.Tensor:
        """``λ · CE(token i+2)`` (eq. 24-25 with D = 1; λ = 0.3 for V3's first 10T tokens, then 0.1)."""
        logits = self.forward(input_ids, hidden)[:, :-1]                       # rows 0 .. T-3 have a target
        return weight * F.cross_entropy(logits.flatten(0, 1), input_ids[:, 2:].flatten())
