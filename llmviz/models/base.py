"""What every decoder-only language model here shares: token embedding, a stack of blocks, a final norm,
an LM head (optionally tied to the embedding), a KV cache per block, and the padding mask."""
from __future__ import annotations

import torch
from torch import nn

from .._checks import check, check_ids
from ..configs import ModelConfig
from ..layers import KVCache, make_norm


class DecoderLM(nn.Module):
    """Base class: ``forward(input_ids [B, T]) -> logits [B, T, vocab]``. Subclasses define ``blocks`` and
    ``_block_inputs`` (what each block needs besides the hidden states: positions, RoPE tables)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.blocks = nn.ModuleList()
        self.norm = make_norm(cfg.norm, cfg.hidden_size, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.embed.weight  # one Parameter: logits = h @ W_emb^T

    residual_scaling = True  # GPT-2's 1/sqrt(2N) on the residual projections (GPT-1 has none)

    def init_weights(self, residual_scaling: bool | None = None) -> "DecoderLM":
        """GPT-2 initialisation (§2.3): N(0, 0.02) weights, zero biases, and the projections that write into
        the residual stream scaled by 1/sqrt(2·layers) (unless ``residual_scaling`` is False; default: the class's
        ``residual_scaling``). Subclasses call it after building ``blocks``."""
        residual = ("o_proj.weight", "fc_out.weight", "down_proj.weight")
        std = 0.02
        scaled = self.residual_scaling if residual_scaling is None else residual_scaling
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                scale = (2 * self.cfg.num_layers) ** -0.5 if scaled and name.endswith(residual) else 1.0
                nn.init.normal_(p, mean=0.0, std=std * scale)
        return self

    def new_cache(self) -> list[KVCache]:
        """An empty KV cache, one entry per block, for ``forward(..., cache=...)``."""
        return [KVCache() for _ in self.blocks]

    def _block_inputs(self, positions: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, cache: list[KVCache] | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids LongTensor [B, T] -> logits [B, T, vocab].

        cache: from ``new_cache()``; the new tokens continue the cached ones (positions offset accordingly).
        attention_mask: [B, T_cached + T] with 1 for real tokens and 0 for padding (HF convention), or a bool
        [B, T, T_cached + T] of allowed query-key pairs (e.g. ``llmviz.masks.document``), combined with causality.
        """
        return self.lm_head(self.hidden_states(input_ids, cache, attention_mask))

    def hidden_states(self, input_ids: torch.Tensor, cache: list[KVCache] | None = None,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The last layer's output after the final norm, [B, T, hidden] (what the LM head and a reward head read)."""
        check_ids(input_ids, "input_ids", self.cfg.vocab_size)
        start = len(cache[0]) if cache else 0
        B, T = input_ids.shape
        check(start + T <= self.cfg.max_position_embeddings or self.cfg.position == "rope", "seq_len", start + T,
              f"learned positions stop at max_position_embeddings={self.cfg.max_position_embeddings}")
        positions = torch.arange(start, start + T, device=input_ids.device)
        mask = None
        if attention_mask is not None:
            shapes = ((B, start + T), (B, T, start + T))
            check(tuple(attention_mask.shape) in shapes, "attention_mask.shape", tuple(attention_mask.shape),
                  f"must be {shapes[0]} (padding) or {shapes[1]} (allowed pairs)")
            if attention_mask.dim() == 2:
                mask = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, T_keys]: hide padded keys
            else:
                mask = attention_mask.bool()[:, None]  # [B, 1, T, T_keys]
        x, extra = self._block_inputs(positions, self.embed(input_ids))
        for i, block in enumerate(self.blocks):
            x = block(x, mask=mask, cache=cache[i] if cache else None, **extra)
        return self.norm(x)
