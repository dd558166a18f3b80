"""BERT (Devlin et al. 2018, §3): the Transformer's encoder alone, read in both directions, pre-trained by filling
in masked words.

    x = LN(tok_emb(ids) + pos_emb(positions) + seg_emb(token_type_ids))     §3 "Input/Output Representations"
    for each layer:  x = LN(x + SelfAttn(x, padding mask))                   post-LN, as the 2017 encoder
                     x = LN(x + W2 GELU(W1 x))                               exact (erf) GELU, FFN = 4H
    hidden = x                                                               [B, T, H]: what BertModel returns
    pooled = tanh(W_p hidden[:, 0])                                          the [CLS] vector, for NSP / classifiers
    MLM logits = LN(GELU(W_t hidden)) · tok_embᵀ + b                         decoder tied to the word embeddings
    NSP logits = W_s pooled                                                  IsNext / NotNext

HF modules: ``BertModel`` (embeddings, encoder, pooler) and ``BertForPreTraining`` (+ ``cls`` heads).
"""
from __future__ import annotations

import torch
from torch import nn

from .._checks import check, check_ids
from ..configs import ModelConfig
from ..layers import MLP, Attention, make_norm
from ..layers.ffn import ACTIVATIONS


class BertLayer(nn.Module):
    """Bidirectional self-attention and a GELU MLP, each followed by Add & LayerNorm (HF ``BertLayer``)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn = Attention(cfg.hidden_size, cfg.num_heads, head_dim=cfg.head_dim, bias=True, dropout=cfg.dropout)
        self.attn_norm = make_norm(cfg.norm, cfg.hidden_size, cfg.norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size, cfg.activation, bias=True)
        self.mlp_norm = make_norm(cfg.norm, cfg.hidden_size, cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # [B, T, H] -> [B, T, H]
        x = self.attn_norm(x + self.drop(self.attn(x, mask=mask, causal=False)))
        return self.mlp_norm(x + self.drop(self.mlp(x)))


class PreTrainingHeads(nn.Module):
    """The MLM head (transform, then a decoder tied to the word embeddings with its own bias) and the NSP
    classifier (HF ``BertPreTrainingHeads``). Not counted in ``count_params`` (the published sizes exclude it)."""

    def __init__(self, cfg: ModelConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.transform = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.act = ACTIVATIONS[cfg.activation]
        self.transform_norm = make_norm(cfg.norm, cfg.hidden_size, cfg.norm_eps)
        self.decoder = nn.Linear(cfg.hidden_size, cfg.vocab_size)
        self.decoder.weight = word_embeddings.weight  # one Parameter: logits = h · W_embᵀ + b
        self.nsp = nn.Linear(cfg.hidden_size, 2)


class Bert(nn.Module):
    """``bert(input_ids [B, T], attention_mask [B, T] or None, token_type_ids [B, T] or None) -> hidden [B, T, H]``;
    ``pool``, ``mlm_logits`` and ``nsp_logits`` give the pooler and the two pre-training heads."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        check(cfg.type_vocab_size >= 1, "type_vocab_size", cfg.type_vocab_size, "BERT needs >= 1 segment embedding")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.pos_embed = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.type_embed = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.embed_norm = make_norm(cfg.norm, cfg.hidden_size, cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_layers))
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.heads = PreTrainingHeads(cfg, self.embed)
        self.init_weights()

    def init_weights(self) -> "Bert":
        """HF ``BertPreTrainedModel._init_weights``: N(0, 0.02) matrices and embeddings, zero biases."""
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        check_ids(input_ids, "input_ids", self.cfg.vocab_size, self.cfg.max_position_embeddings)
        B, T = input_ids.shape
        for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            check(t is None or tuple(t.shape) == (B, T), f"{name}.shape", tuple(getattr(t, "shape", ())),
                  f"must equal input_ids.shape {(B, T)}")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)  # every token in segment A
        check_ids(token_type_ids, "token_type_ids", self.cfg.type_vocab_size)
        positions = torch.arange(T, device=input_ids.device)
        x = self.embed(input_ids) + self.pos_embed(positions) + self.type_embed(token_type_ids)
        x = self.drop(self.embed_norm(x))
        mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]  # hide padded keys
        for block in self.blocks:
            x = block(x, mask)
        return x

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """``tanh(W hidden[:, 0] + b)``: the [CLS] position, [B, H] (HF ``BertPooler``)."""
        return torch.tanh(self.pooler(hidden[:, 0]))

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, T, H] -> [B, T, vocab] (HF ``BertLMPredictionHead``)."""
        h = self.heads
        return h.decoder(h.transform_norm(h.act(h.transform(hidden))))

    def nsp_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """[B, H] -> [B, 2]: index 0 = "B follows A" (IsNext), 1 = random sentence (HF ``BertOnlyNSPHead``)."""
        return self.heads.nsp(pooled)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Sentence embedding of sentence-transformers (all-MiniLM-L6-v2): the mean of the token vectors over the real
    tokens (padding excluded), then L2-normalised. hidden [B, T, H], mask [B, T] -> [B, H]."""
    check(tuple(attention_mask.shape) == tuple(hidden.shape[:2]), "attention_mask.shape", tuple(attention_mask.shape),
          f"must be {tuple(hidden.shape[:2])}")
    m = attention_mask.to(hidden.dtype)[..., None]  # [B, T, 1]
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled
