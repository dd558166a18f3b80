"""Qwen3-MoE (Qwen3 Technical Report §2): the Qwen3 block with its feed-forward layer replaced by a mixture of
experts: 128 fine-grained experts, 8 per token, softmax → top-k → renormalised gates, no shared expert, and a
global-batch load-balancing loss in training. HF module: ``Qwen3MoeForCausalLM``.

    for each block:  x = x + attn(rmsnorm(x));  x = x + MoE(rmsnorm(x))   (dense SwiGLU where the config says)
"""
from __future__ import annotations

import torch
from torch import nn

from ..configs import ModelConfig
from ..layers.moe import SparseMoE, load_balancing_loss
from .llama import LlamaBlock
from .qwen3 import Qwen3


class Qwen3MoeBlock(LlamaBlock):
    """A Qwen3 block whose MLP is a :class:`SparseMoE` on the layers ``cfg.is_moe_layer`` selects
    (HF: ``(i+1) % decoder_sparse_step == 0`` and ``i`` not in ``mlp_only_layers``)."""

    @staticmethod
    def make_ffn(cfg: ModelConfig, layer: int) -> nn.Module:
        return SparseMoE(cfg) if cfg.is_moe_layer(layer) else LlamaBlock.make_ffn(cfg, layer)


class Qwen3Moe(Qwen3):
    """Qwen3 with MoE blocks. After a forward pass, :meth:`aux_loss` gives HF's load-balancing loss."""

    block = Qwen3MoeBlock

    def router_logits(self) -> list[torch.Tensor]:
        """The last forward's router logits, one [N, E] tensor per MoE layer."""
        return [b.mlp.router_logits for b in self.blocks if isinstance(b.mlp, SparseMoE)]

    def aux_loss(self, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """HF ``load_balancing_loss_func`` over all MoE layers of the last forward (= k at perfect balance)."""
        return load_balancing_loss(self.router_logits(), self.cfg.num_experts, self.cfg.num_experts_per_tok,
                                   attention_mask)
