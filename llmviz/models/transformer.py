"""The Transformer (Vaswani et al. 2017, "Attention Is All You Need", §3 and Figure 1): an encoder-decoder.

    src = Drop(Emb(src_ids)·√d + PE)                                    §3.4, §3.5
    encoder layer:  x = LN(x + Drop(SelfAttn(x, padding mask)))          §3.1 (post-LN: the norm after the add)
                    x = LN(x + Drop(FFN(x)))                             FFN(x) = max(0, xW1 + b1)W2 + b2 (§3.3)
    tgt = Drop(Emb(tgt_ids)·√d + PE)
    decoder layer:  y = LN(y + Drop(SelfAttn(y, causal mask)))
                    y = LN(y + Drop(CrossAttn(y, memory, padding mask)))  queries from y, keys and values from memory
                    y = LN(y + Drop(FFN(y)))
    logits = y · Embᵀ (+ bias)                                           one matrix for both embeddings and the output

No final LayerNorm on either stack: the paper's post-LN layers already end in one (``torch.nn.Transformer`` adds
another by default; the Annotated Transformer is pre-LN). ``cfg.pre_norm=True`` gives the pre-LN variant
(``x = x + Drop(Sublayer(LN(x)))``, then a final LayerNorm per stack), for the comparison of Xiong et al. 2020.
HF module: ``MarianMTModel`` (post-LN, scaled shared embeddings, sinusoids stored as [sin | cos] halves).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import check, check_ids
from ..configs import ModelConfig
from ..layers import MLP, Attention, KVCache, make_norm, sinusoidal_positions


class Residual(nn.Module):
    """One sub-layer connection: post-LN ``LN(x + Drop(f(x)))`` or pre-LN ``x + Drop(f(LN(x)))`` (§5.4)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm = make_norm(cfg.norm, cfg.hidden_size, cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.pre_norm = cfg.pre_norm

    def forward(self, x: torch.Tensor, sublayer) -> torch.Tensor:
        if self.pre_norm:
            return x + self.drop(sublayer(self.norm(x)))
        return self.norm(x + self.drop(sublayer(x)))


def _attention(cfg: ModelConfig) -> Attention:
    return Attention(cfg.hidden_size, cfg.num_heads, head_dim=cfg.head_dim, bias=cfg.attention_bias,
                     dropout=cfg.dropout)


class EncoderLayer(nn.Module):
    """Self-attention over the whole source (no causal mask), then the FFN; each in a :class:`Residual`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn, self.attn_res = _attention(cfg), Residual(cfg)
        self.mlp, self.mlp_res = MLP(cfg.hidden_size, cfg.intermediate_size, cfg.activation, cfg.mlp_bias), Residual(cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:  # [B, S, H] -> [B, S, H]
        x = self.attn_res(x, lambda h: self.attn(h, mask=mask, causal=False))
        return self.mlp_res(x, self.mlp)


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the encoder output ("memory"), FFN (§3.1, "Decoder")."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.self_attn, self.self_attn_res = _attention(cfg), Residual(cfg)
        self.cross_attn, self.cross_attn_res = _attention(cfg), Residual(cfg)
        self.mlp, self.mlp_res = MLP(cfg.hidden_size, cfg.intermediate_size, cfg.activation, cfg.mlp_bias), Residual(cfg)

    def forward(self, y: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None,
                cache: tuple[KVCache, KVCache] | None = None, causal: bool = True) -> torch.Tensor:
        self_cache, cross_cache = cache if cache is not None else (None, None)
        y = self.self_attn_res(y, lambda h: self.self_attn(h, cache=self_cache, causal=causal))
        y = self.cross_attn_res(y, lambda h: self.cross_attn(h, kv=memory, mask=memory_mask, cache=cross_cache,
                                                             causal=False))
        return self.mlp_res(y, self.mlp)


class Transformer(nn.Module):
    """Encoder-decoder with one embedding matrix shared by source, target and output (§3.4).

    ``model(input_ids [B, S], decoder_input_ids [B, T], attention_mask [B, S] or None) -> logits [B, T, vocab]``;
    ``encode`` / ``decode`` split it so that decoding runs the encoder once and caches the decoder's keys and values.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        check(cfg.position == "sinusoidal", "position", cfg.position, "the 2017 Transformer uses sinusoidal positions")
        check(cfg.tie_word_embeddings, "tie_word_embeddings", cfg.tie_word_embeddings,
              "the Transformer shares one embedding matrix between encoder, decoder and output (§3.4)")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        pe = sinusoidal_positions(cfg.max_position_embeddings, cfg.hidden_size, layout=cfg.sinusoid_layout)
        self.register_buffer("pe", pe, persistent=False)  # [max_positions, H]: fixed, not learned
        self.embed_scale = math.sqrt(cfg.hidden_size) if cfg.scale_embedding else 1.0
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        # pre-LN needs a last norm per stack (the residual stream is never normalised otherwise)
        self.encoder_norm = make_norm(cfg.norm, cfg.hidden_size, cfg.norm_eps) if cfg.pre_norm else nn.Identity()
        self.decoder_norm = make_norm(cfg.norm, cfg.hidden_size, cfg.norm_eps) if cfg.pre_norm else nn.Identity()
        self.register_buffer("final_logits_bias", torch.zeros(cfg.vocab_size))  # 0 in the paper; Marian learns one
        self.init_weights()

    def init_weights(self) -> "Transformer":
        """Xavier-uniform matrices and zero biases (the tensor2tensor / Annotated Transformer choice), the
        embedding N(0, d^-1/2) so that after the ×√d scaling the tokens have unit variance, like PE."""
        for name, p in self.named_parameters():
            if name == "embed.weight":
                nn.init.normal_(p, std=self.cfg.hidden_size ** -0.5 if self.cfg.scale_embedding else 0.02)
            elif p.dim() >= 2:
                nn.init.xavier_uniform_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        return self

    def embed_tokens(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """``Drop(Emb(ids)·√d + PE[start : start + T])``: ids [B, T] -> [B, T, H] (§3.4, §3.5)."""
        return self.drop(self.embed(ids) * self.embed_scale + self.pe[start:start + ids.shape[1]])

    def _source_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        if attention_mask is None:
            return None
        check(tuple(attention_mask.shape) == tuple(input_ids.shape), "attention_mask.shape",
              tuple(attention_mask.shape), f"must equal input_ids.shape {tuple(input_ids.shape)} (1 = token, 0 = pad)")
        return attention_mask.bool()[:, None, None, :]  # [B, 1, 1, S]: hide padded source keys

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Source ids [B, S] (+ padding mask [B, S], 1 = token) -> memory [B, S, H]."""
        check_ids(input_ids, "input_ids", self.cfg.vocab_size, self.cfg.max_position_embeddings)
        mask = self._source_mask(input_ids, attention_mask)
        x = self.embed_tokens(input_ids)
        for layer in self.encoder:
            x = layer(x, mask)
        return self.encoder_norm(x)

    def new_cache(self) -> list[tuple[KVCache, KVCache]]:
        """An empty decoder cache: per layer, (self-attention keys/values, cross-attention keys/values)."""
        return [(KVCache(), KVCache()) for _ in self.decoder]

    def decode(self, decoder_input_ids: torch.Tensor, memory: torch.Tensor, attention_mask: torch.Tensor | None = None,
               cache: list[tuple[KVCache, KVCache]] | None = None, causal: bool = True) -> torch.Tensor:
        """Target ids [B, T] attending to ``memory`` [B, S, H] -> logits [B, T, vocab].

        attention_mask: the source padding mask [B, S] given to ``encode``. cache: from ``new_cache()``; the ids
        continue the cached ones. ``causal=False`` lets every target token see the later ones, which is wrong for
        a language model (notebook 01 shows what training without the mask learns).
        """
        start = len(cache[0][0]) if cache else 0
        check_ids(decoder_input_ids, "decoder_input_ids", self.cfg.vocab_size,
                  self.cfg.max_position_embeddings - start)
        check(memory.dim() == 3 and memory.shape[0] == decoder_input_ids.shape[0], "decoder_input_ids.shape[0]",
              decoder_input_ids.shape[0], f"the batch size must equal the source's, {memory.shape[0]}")
        mask = None
        if attention_mask is not None:
            check(tuple(attention_mask.shape) == tuple(memory.shape[:2]), "attention_mask.shape",
                  tuple(attention_mask.shape), f"must be [batch, source_len] = {tuple(memory.shape[:2])}")
            mask = attention_mask.bool()[:, None, None, :]
        y = self.embed_tokens(decoder_input_ids, start)
        for i, layer in enumerate(self.decoder):
            y = layer(y, memory, mask, cache[i] if cache else None, causal)
        return self.decoder_norm(y) @ self.embed.weight.T + self.final_logits_bias

    def forward(self, input_ids: torch.Tensor, decoder_input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Source ids [B, S], target ids [B, T] (shifted right: BOS first), source padding mask -> [B, T, vocab]."""
        check(isinstance(decoder_input_ids, torch.Tensor) and isinstance(input_ids, torch.Tensor)
              and decoder_input_ids.shape[:1] == input_ids.shape[:1], "decoder_input_ids.shape",
              tuple(getattr(decoder_input_ids, "shape", ())),
              f"the batch size must equal input_ids' ({tuple(getattr(input_ids, 'shape', ()))})")
        return self.decode(decoder_input_ids, self.encode(input_ids, attention_mask), attention_mask)
