"""Size arithmetic from a config alone: parameters (total / active), KV-cache bytes, FLOPs per token.

The counts follow the module layout of the Hugging Face implementation of each architecture, so that
``count_params(cfg).total`` equals ``sum(p.numel() for p in build_model(cfg).parameters())`` for every
architecture llmviz builds (a test checks this), and the published totals of facts.md section 11 for the
real models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ._checks import check, check_config, check_int
from .configs import ModelConfig


@dataclass(frozen=True)
class ParamCount:
    """``total``: every parameter stored; ``active``: used per token (MoE: only the routed top-k and shared
    experts); ``embedding``: the embedding tables (token, position, segment) plus an untied LM head, so that
    ``non_embedding`` follows the model cards' convention (Qwen3-8B: 6.95B of 8.19B)."""

    total: int
    active: int
    embedding: int

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding


def _norm(cfg: ModelConfig, dim: int) -> int:
    return 2 * dim if cfg.norm == "layernorm" else dim


def _attention_matrices(cfg: ModelConfig) -> int:
    """The weight matrices of the q, k, v, o projections; MLA's down- and up-projections for DeepSeek (V2 eq. 9-14)."""
    h = cfg.hidden_size
    if cfg.uses_mla:
        nh, qk = cfg.num_heads, cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
        q = h * cfg.q_lora_rank + cfg.q_lora_rank * nh * qk if cfg.q_lora_rank else h * nh * qk
        kv = h * (cfg.kv_lora_rank + cfg.qk_rope_head_dim) + cfg.kv_lora_rank * nh * (cfg.qk_nope_head_dim +
                                                                                     cfg.v_head_dim)
        return q + kv + nh * cfg.v_head_dim * h
    return 2 * h * cfg.num_heads * cfg.head_dim + 2 * h * cfg.num_kv_heads * cfg.head_dim


def _attention(cfg: ModelConfig) -> int:
    """The attention matrices, plus biases and QK-Norm weights; for MLA its q_a / kv_a RMSNorm weights."""
    n = _attention_matrices(cfg)
    if cfg.uses_mla:
        return n + cfg.q_lora_rank + cfg.kv_lora_rank
    q_out, kv_out = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    if cfg.attention_bias:
        n += q_out + 2 * kv_out + cfg.hidden_size
    if cfg.qk_norm:
        n += 2 * cfg.head_dim
    return n


def _mlp_matrices(cfg: ModelConfig, inner: int) -> int:
    return (3 if cfg.gated_mlp else 2) * cfg.hidden_size * inner   # SwiGLU: gate, up, down; else up, down


def _mlp(cfg: ModelConfig, inner: int) -> int:
    biases = (2 * inner if cfg.gated_mlp else inner) + cfg.hidden_size if cfg.mlp_bias else 0
    return _mlp_matrices(cfg, inner) + biases


def _ffn(cfg: ModelConfig, layer: int) -> tuple[int, int]:
    """(total, active) parameters of the feed-forward part of one layer."""
    if not cfg.is_moe_layer(layer):
        n = _mlp(cfg, cfg.intermediate_size)
        return n, n
    expert = _mlp(cfg, cfg.moe_intermediate_size)
    router = cfg.num_experts * cfg.hidden_size + (cfg.num_experts if cfg.arch == "deepseek" and
                                                  cfg.scoring_func == "sigmoid" else 0)  # V3 correction bias
    shared = cfg.num_shared_experts * expert
    total = router + cfg.num_experts * expert + shared
    active = router + cfg.num_experts_per_tok * expert + shared
    return total, active


def count_params(cfg: ModelConfig) -> ParamCount:
    """Parameters of ``cfg``'s model (MTP modules and BERT's pre-training heads excluded).

    >>> from llmviz.configs import get_config
    >>> round(count_params(get_config("llama-3-8b")).total / 1e9, 2)
    8.03
    """
    check_config(cfg)
    h, v, L = cfg.hidden_size, cfg.vocab_size, cfg.num_layers
    emb = v * h
    if cfg.position == "learned":
        emb += cfg.max_position_embeddings * h
    if cfg.arch == "bert":
        emb += cfg.type_vocab_size * h
    head = 0 if cfg.tie_word_embeddings else v * h
    emb_and_head = emb + head
    attn, norms = _attention(cfg), 2 * _norm(cfg, h)  # MLA's inner q_a / kv_a norms are inside _attention
    total = active = emb + head
    for i in range(L):
        ffn_total, ffn_active = _ffn(cfg, i)
        total += attn + norms + ffn_total
        active += attn + norms + ffn_active
    if cfg.arch == "transformer":  # decoder layers: self-attn, cross-attn, FFN and three LayerNorms each
        dec = 2 * attn + _mlp(cfg, cfg.intermediate_size) + 3 * _norm(cfg, h)
        total += L * dec
        active += L * dec
    extra = 0
    if cfg.arch == "bert":
        extra = _norm(cfg, h) + h * h + h  # embedding LayerNorm + pooler
    elif cfg.pre_norm:
        extra = _norm(cfg, h)  # final norm (ln_f / model.norm)
    return ParamCount(total=total + extra, active=active + extra, embedding=emb_and_head)


def kv_cache_bytes(cfg: ModelConfig, seq_len: int, batch: int = 1, bytes_per_elem: int = 2) -> int:
    """Bytes of the decoder's self-attention cache after ``seq_len`` tokens of ``batch`` sequences.

    K and V: ``2 · layers · n_kv_heads · head_dim`` elements per token (algorithms.md §3). MLA caches the
    compressed latent and the shared RoPE key instead: ``layers · (kv_lora_rank + qk_rope_head_dim)``
    (DeepSeek-V2 Table 1). A layer with a sliding window of W keys (the query included; every layer, or the
    "local" ones of ``cfg.layer_types``) needs only the last ``W - 1`` tokens for the next one: a rolling buffer,
    what ``llmviz.layers.KVCache`` and HF's ``DynamicSlidingWindowLayer`` keep.
    """
    check_config(cfg)
    check_int(seq_len, "seq_len", minimum=0)
    check_int(batch, "batch", minimum=1)
    check_int(bytes_per_elem, "bytes_per_elem", minimum=1)
    check(cfg.arch != "bert", "cfg.arch", cfg.arch, "BERT is an encoder: it reads the whole input at once and keeps "
          "no KV cache")
    tokens = sum(_keys(cfg, i, seq_len, cached=True) for i in range(cfg.num_layers))   # summed over layers
    if cfg.uses_mla:
        per_token = cfg.kv_lora_rank + cfg.qk_rope_head_dim
    else:
        per_token = 2 * cfg.num_kv_heads * cfg.head_dim
    return per_token * tokens * batch * bytes_per_elem


def _keys(cfg: ModelConfig, layer: int, seq_len: int, cached: bool = False) -> int:
    """Keys layer ``layer`` attends to (or, ``cached``, keeps for the next token): all ``seq_len``, or its sliding
    window (GPT-3 / GPT-Neo's local layers, Mistral's every layer) of W keys, W - 1 of them kept."""
    window = cfg.layer_window(layer)
    return seq_len if window is None else min(seq_len, window - 1 if cached else window)


def _matmul_weights(cfg: ModelConfig) -> int:
    """Weights of the matrix products one token passes through: every projection, the routed top-k and shared
    experts with their router, and the LM head once (tied or not). Biases, norms and look-ups are not products.
    The Transformer counts an encoder and a decoder token; BERT has no LM head (its pre-training heads are not
    part of the encoder) and its pooler runs once per sequence."""
    h, attn = cfg.hidden_size, _attention_matrices(cfg)
    n = 0
    for i in range(cfg.num_layers):
        if cfg.is_moe_layer(i):
            used = cfg.num_experts_per_tok + cfg.num_shared_experts
            n += attn + cfg.num_experts * h + used * _mlp_matrices(cfg, cfg.moe_intermediate_size)
        else:
            n += attn + _mlp_matrices(cfg, cfg.intermediate_size)
    if cfg.arch == "transformer":  # decoder layers: self-attention, cross-attention, FFN
        n += cfg.num_layers * (2 * attn + _mlp_matrices(cfg, cfg.intermediate_size))
    return n + (0 if cfg.arch == "bert" else cfg.vocab_size * h)


def flops_per_token(cfg: ModelConfig, seq_len: int, absorbed: bool = False) -> int:
    """Forward-pass FLOPs for one token that attends to ``seq_len`` keys (Kaplan et al. 2020, Table 1).

    ``2 ·`` (weights of the matrix products, :func:`_matmul_weights`) for the projections, plus
    ``2 · layers · seq_len · n_heads · (d_qk + d_v)`` for the attention scores and the weighted sum (every
    query-key pair counted, as ``torch.utils.flop_counter`` does). The Transformer has three attention layers per
    layer pair (encoder, decoder, cross), source and target both ``seq_len`` long. ``absorbed`` (MLA only):
    DeepSeek's absorbed decoding attends over the cached latents, so each pair costs ``2 · kv_lora_rank +
    qk_rope_head_dim`` products instead of ``d_qk + d_v`` (the folded W_UK and W_UV cost what ``kv_b_proj`` did).
    Training costs about three times this (forward + backward).
    """
    check_config(cfg)
    check_int(seq_len, "seq_len", minimum=0)
    check(isinstance(absorbed, bool) and (cfg.uses_mla or not absorbed), "absorbed", absorbed,
          "must be a bool, and True only for MLA configs (kv_lora_rank > 0)")
    if cfg.uses_mla:
        pair = 2 * cfg.kv_lora_rank + cfg.qk_rope_head_dim if absorbed else \
            cfg.qk_nope_head_dim + cfg.qk_rope_head_dim + cfg.v_head_dim
    else:
        pair = 2 * cfg.head_dim
    keys = sum(_keys(cfg, i, seq_len) for i in range(cfg.num_layers))
    if cfg.arch == "transformer":
        keys *= 3
    return 2 * _matmul_weights(cfg) + 2 * keys * cfg.num_heads * pair


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args: Any, out_shape=None, **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def measure_flops(run: Callable[[], Any]) -> dict[str, int]:
    """FLOPs of the matrix products ``run()`` executes, counted by ``torch.utils.flop_counter``, per operator.

    The counter knows SDPA's CUDA kernels but not the CPU one; it is registered here with the same rule (every
    query-key pair, causal or not). Runs under ``torch.no_grad()``. ``sum(...values())`` is the total.
    """
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        run()
    return {str(op).removeprefix("aten."): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
