"""Load Hugging Face checkpoints (``config.json`` + ``*.safetensors``) into llmviz models, without pickle.

``transformers`` is not needed: the config is read as JSON and the tensors with ``safetensors``. Each family
has a name map from HF's parameter names to ours, which doubles as a table of what corresponds to what.
"""
from __future__ import annotations

import json
import warnings
from functools import lru_cache
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ._checks import check
from .configs import ModelConfig
from .models import build_model

Transform = Callable[[torch.Tensor], torch.Tensor]
_SAME: Transform = lambda t: t  # noqa: E731


def _plain(names: dict[str, str]) -> dict[str, list[tuple[str, Transform]]]:
    """A one-to-one name map (no reshaping): ``{hf_name: our_name}`` -> the form ``load_state`` takes."""
    return {hf: [(us, _SAME)] for hf, us in names.items()}


ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu",
               "silu": "silu", "swish": "silu"}


def _activation(name: str) -> str:
    check(name in ACTIVATIONS, "hidden_act", name, f"supported activations: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _rope(c: dict) -> tuple[float, dict | None]:
    """(rope_theta, scaling) from transformers 5 ``rope_parameters`` or 4.x ``rope_theta`` + ``rope_scaling``."""
    params = dict(c.get("rope_parameters") or c.get("rope_scaling") or {})
    theta = float(params.pop("rope_theta", None) or c.get("rope_theta") or 10_000.0)
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return theta, None
    if kind in ("llama3", "yarn"):
        params.setdefault("original_max_position_embeddings",
                          c.get("original_max_position_embeddings", c["max_position_embeddings"]))
    return theta, params


def _gpt2_config(c: dict) -> ModelConfig:
    check(c.get("scale_attn_weights", True), "scale_attn_weights", c.get("scale_attn_weights"),
          "llmviz's GPT-2 scales scores by 1/sqrt(head_dim); a checkpoint without it is not supported")
    check(not c.get("scale_attn_by_inverse_layer_idx", False), "scale_attn_by_inverse_layer_idx", True,
          "not supported (no released GPT-2 uses it)")
    h = c["n_embd"]
    return ModelConfig(
        arch="gpt2", name=c.get("_name_or_path") or "gpt2", family="GPT-2", hidden_size=h, num_layers=c["n_layer"],
        num_heads=c["n_head"], intermediate_size=c.get("n_inner") or 4 * h, vocab_size=c["vocab_size"],
        max_position_embeddings=c["n_positions"], norm="layernorm", norm_eps=c.get("layer_norm_epsilon", 1e-5),
        position="learned", activation=_activation(c.get("activation_function", "gelu_new")), gated_mlp=False,
        attention_bias=True, mlp_bias=True, tie_word_embeddings=c.get("tie_word_embeddings", True))


def _openai_gpt_config(c: dict) -> ModelConfig:
    """HF ``OpenAIGPTConfig`` (GPT-1): post-LN, no final norm. Its ``afn="gelu"`` is the tanh approximation (HF's
    ``modeling_openai.ACT_FNS`` maps "gelu" to ``gelu_new``), unlike ``hidden_act="gelu"`` elsewhere (exact erf)."""
    afn = {"gelu": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu"}
    check(c.get("afn", "gelu") in afn, "afn", c.get("afn"), f"supported: {sorted(afn)}")
    h = c["n_embd"]
    return ModelConfig(
        arch="gpt", name=c.get("_name_or_path") or "openai-gpt", family="GPT", hidden_size=h, num_layers=c["n_layer"],
        num_heads=c["n_head"], intermediate_size=4 * h, vocab_size=c["vocab_size"],
        max_position_embeddings=c["n_positions"], norm="layernorm", norm_eps=c.get("layer_norm_epsilon", 1e-5),
        pre_norm=False, position="learned", activation=afn[c.get("afn", "gelu")], gated_mlp=False,
        attention_bias=True, mlp_bias=True, tie_word_embeddings=True)


def _gpt_neo_config(c: dict) -> ModelConfig:
    """HF ``GPTNeoConfig``: GPT-2's pre-LN block with global and local (window) attention layers, unscaled scores,
    q/k/v without bias, and Linear (not Conv1D) projections."""
    h = c["hidden_size"]
    layers = c.get("attention_layers") or [t for kinds, n in c["attention_types"] for _ in range(n) for t in kinds]
    return ModelConfig(
        arch="gpt2", name=c.get("_name_or_path") or "gpt-neo", family="GPT-Neo", hidden_size=h,
        num_layers=c["num_layers"], num_heads=c["num_heads"], intermediate_size=c.get("intermediate_size") or 4 * h,
        vocab_size=c["vocab_size"], max_position_embeddings=c["max_position_embeddings"], norm="layernorm",
        norm_eps=c.get("layer_norm_epsilon", 1e-5), position="learned",
        activation=_activation(c.get("activation_function", "gelu_new")), gated_mlp=False, attention_bias=False,
        attention_out_bias=True, attention_scale=1.0, mlp_bias=True, sliding_window=c.get("window_size", 256),
        layer_types=tuple(layers), tie_word_embeddings=c.get("tie_word_embeddings", True))


def _llama_fields(c: dict) -> dict:
    qwen3 = c["model_type"] in ("qwen3", "qwen3_moe")
    check(not c.get("use_sliding_window", False), "use_sliding_window", True,
          "Qwen3's per-layer sliding window (max_window_layers) is not supported; the released models do not use it")
    theta, scaling = _rope(c)
    heads = c["num_attention_heads"]
    return dict(
        arch=c["model_type"], name=c.get("_name_or_path") or c["model_type"], family="Qwen3" if qwen3 else "Llama",
        hidden_size=c["hidden_size"], num_layers=c["num_hidden_layers"], num_heads=heads,
        num_kv_heads=c.get("num_key_value_heads") or heads, head_dim=c.get("head_dim") or c["hidden_size"] // heads,
        intermediate_size=c["intermediate_size"], vocab_size=c["vocab_size"],
        max_position_embeddings=c["max_position_embeddings"], norm_eps=c.get("rms_norm_eps", 1e-6),
        rope_theta=theta, rope_scaling=scaling, activation=_activation(c.get("hidden_act", "silu")),
        attention_bias=c.get("attention_bias", False), mlp_bias=c.get("mlp_bias", False), qk_norm=qwen3,
        tie_word_embeddings=c.get("tie_word_embeddings", False))


def _llama_config(c: dict) -> ModelConfig:
    return ModelConfig(**_llama_fields(c))


def _qwen3_moe_config(c: dict) -> ModelConfig:
    return ModelConfig(**_llama_fields(c) | dict(
        family="Qwen3 MoE", num_experts=c.get("num_experts") or c.get("num_local_experts"),
        num_experts_per_tok=c["num_experts_per_tok"], moe_intermediate_size=c["moe_intermediate_size"],
        norm_topk_prob=bool(c.get("norm_topk_prob", False)), decoder_sparse_step=c.get("decoder_sparse_step", 1),
        mlp_only_layers=tuple(c.get("mlp_only_layers") or ())))


def _marian_config(c: dict) -> ModelConfig:
    """HF ``MarianConfig``: the 2017 encoder-decoder (post-LN, sinusoidal positions in [sin | cos] halves)."""
    for key, want in (("normalize_before", False), ("normalize_embedding", False), ("add_final_layer_norm", False),
                      ("share_encoder_decoder_embeddings", True), ("tie_word_embeddings", True)):
        check(c.get(key, want) == want, key, c.get(key), f"llmviz's Transformer supports only {key}={want} "
              "(the 2017 architecture: post-LN, one embedding matrix shared by encoder, decoder and output)")
    for enc, dec in (("encoder_layers", "decoder_layers"), ("encoder_ffn_dim", "decoder_ffn_dim"),
                     ("encoder_attention_heads", "decoder_attention_heads"), ("vocab_size", "decoder_vocab_size")):
        check(c.get(dec) in (None, c[enc]), dec, c.get(dec), f"must equal {enc}={c[enc]} (one size for both stacks)")
    return ModelConfig(
        arch="transformer", name=c.get("_name_or_path") or "marian", family="Transformer (Marian)",
        hidden_size=c["d_model"], num_layers=c["encoder_layers"], num_heads=c["encoder_attention_heads"],
        intermediate_size=c["encoder_ffn_dim"], vocab_size=c["vocab_size"],
        max_position_embeddings=c["max_position_embeddings"], norm="layernorm", norm_eps=1e-5, pre_norm=False,
        position="sinusoidal", sinusoid_layout="halves", scale_embedding=bool(c.get("scale_embedding", False)),
        activation=_activation(c.get("activation_function", "gelu")), gated_mlp=False, attention_bias=True,
        mlp_bias=True, tie_word_embeddings=True)


def _bert_config(c: dict) -> ModelConfig:
    """HF ``BertConfig`` (encoder only; absolute learned positions)."""
    check(c.get("position_embedding_type", "absolute") == "absolute", "position_embedding_type",
          c.get("position_embedding_type"), "only 'absolute' (learned) positions are supported, not relative_key(_query)")
    check(not c.get("is_decoder", False), "is_decoder", c.get("is_decoder"), "llmviz's BERT is the bidirectional encoder")
    check(not c.get("add_cross_attention", False), "add_cross_attention", True, "not supported (encoder only)")
    return ModelConfig(
        arch="bert", name=c.get("_name_or_path") or "bert", family="BERT", hidden_size=c["hidden_size"],
        num_layers=c["num_hidden_layers"], num_heads=c["num_attention_heads"], intermediate_size=c["intermediate_size"],
        vocab_size=c["vocab_size"], max_position_embeddings=c["max_position_embeddings"],
        type_vocab_size=c.get("type_vocab_size", 2), norm="layernorm", norm_eps=c.get("layer_norm_eps", 1e-12),
        pre_norm=False, position="learned", activation=_activation(c.get("hidden_act", "gelu")), gated_mlp=False,
        attention_bias=True, mlp_bias=True, tie_word_embeddings=True)


def _deepseek_v3_config(c: dict) -> ModelConfig:
    """HF ``DeepseekV3Config``: MLA (``q_lora_rank`` null = a plain q_proj), the sigmoid group-limited router,
    ``first_k_dense_replace`` dense layers, YaRN on the decoupled RoPE dimensions (interleaved unless
    ``rope_interleave`` is false)."""
    theta, scaling = _rope(c)
    heads = c["num_attention_heads"]
    return ModelConfig(
        arch="deepseek", name=c.get("_name_or_path") or "deepseek_v3", family="DeepSeek", hidden_size=c["hidden_size"],
        num_layers=c["num_hidden_layers"], num_heads=heads, num_kv_heads=c.get("num_key_value_heads") or heads,
        head_dim=c["qk_nope_head_dim"] + c["qk_rope_head_dim"], intermediate_size=c["intermediate_size"],
        vocab_size=c["vocab_size"], max_position_embeddings=c["max_position_embeddings"],
        norm_eps=c.get("rms_norm_eps", 1e-6), rope_theta=theta, rope_scaling=scaling,
        rope_interleaved=bool(c.get("rope_interleave", True)), activation=_activation(c.get("hidden_act", "silu")),
        attention_bias=c.get("attention_bias", False), tie_word_embeddings=c.get("tie_word_embeddings", False),
        num_experts=c.get("n_routed_experts") or c.get("num_local_experts"), num_experts_per_tok=c["num_experts_per_tok"],
        moe_intermediate_size=c["moe_intermediate_size"], norm_topk_prob=bool(c.get("norm_topk_prob", True)),
        num_shared_experts=c.get("n_shared_experts") or 0, first_k_dense_replace=c.get("first_k_dense_replace", 0),
        n_group=c.get("n_group") or 1, topk_group=c.get("topk_group") or 1,
        routed_scaling_factor=float(c.get("routed_scaling_factor", 1.0)), scoring_func="sigmoid",
        kv_lora_rank=c["kv_lora_rank"], q_lora_rank=c.get("q_lora_rank") or 0,
        qk_rope_head_dim=c["qk_rope_head_dim"], qk_nope_head_dim=c["qk_nope_head_dim"], v_head_dim=c["v_head_dim"])


CONFIG_READERS: dict[str, Callable[[dict], ModelConfig]] = {
    "marian": _marian_config, "bert": _bert_config, "openai-gpt": _openai_gpt_config, "gpt2": _gpt2_config,
    "gpt_neo": _gpt_neo_config, "llama": _llama_config, "qwen3": _llama_config, "qwen3_moe": _qwen3_moe_config,
    "deepseek_v3": _deepseek_v3_config}


def config_from_hf(c: dict) -> ModelConfig:
    """An llmviz config from the dict of an HF ``config.json``."""
    kind = c.get("model_type")
    check(kind in CONFIG_READERS, "model_type", kind, f"supported model types: {sorted(CONFIG_READERS)}")
    try:
        return CONFIG_READERS[kind](c)
    except KeyError as e:
        raise ValueError(f"config.json={kind!r} is not allowed: the field {e.args[0]!r} is missing "
                         f"(a {kind} config needs it)") from None


def _gpt2_names(cfg: ModelConfig, embed: str = "transformer.wte", positions: str = "transformer.wpe",
                final_norm: str | None = "transformer.ln_f") -> dict[str, list[tuple[str, Transform]]]:
    """HF GPT-2 (and GPT-1) use Conv1D, whose weight is [in, out]: transpose to nn.Linear's [out, in]. ``c_attn``
    holds q, k, v side by side."""
    h = cfg.hidden_size
    T: Transform = lambda t: t.t()  # noqa: E731

    def part(i: int, weight: bool) -> Transform:
        return (lambda t: t[:, i * h:(i + 1) * h].t()) if weight else (lambda t: t[i * h:(i + 1) * h])

    names = {f"{embed}.weight": [("embed.weight", _SAME)], f"{positions}.weight": [("pos_embed.weight", _SAME)],
             "lm_head.weight": [("lm_head.weight", _SAME)]}
    if final_norm:
        names |= {f"{final_norm}.{k}": [(f"norm.{k}", _SAME)] for k in ("weight", "bias")}
    for i in range(cfg.num_layers):
        hf, us = f"transformer.h.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            w = kind == "weight"
            names[hf + f"attn.c_attn.{kind}"] = [(us + f"attn.{p}_proj.{kind}", part(j, w)) for j, p in enumerate("qkv")]
            names[hf + f"attn.c_proj.{kind}"] = [(us + f"attn.o_proj.{kind}", T if w else _SAME)]
            names[hf + f"mlp.c_fc.{kind}"] = [(us + f"mlp.fc_in.{kind}", T if w else _SAME)]
            names[hf + f"mlp.c_proj.{kind}"] = [(us + f"mlp.fc_out.{kind}", T if w else _SAME)]
            names[hf + f"ln_1.{kind}"] = [(us + f"attn_norm.{kind}", _SAME)]
            names[hf + f"ln_2.{kind}"] = [(us + f"mlp_norm.{kind}", _SAME)]
    # the hub's own model.safetensors (openai-community/gpt2, openai-gpt) was saved from the base model: no prefix
    names |= {k.removeprefix("transformer."): v for k, v in names.items() if k.startswith("transformer.")}
    return names


def _openai_gpt_names(cfg: ModelConfig) -> dict[str, list[tuple[str, Transform]]]:
    """GPT-1: GPT-2's Conv1D layout under other embedding names, and no final LayerNorm."""
    return _gpt2_names(cfg, "transformer.tokens_embed", "transformer.positions_embed", final_norm=None)


def _gpt_neo_names(cfg: ModelConfig) -> dict[str, list[tuple[str, Transform]]]:
    """GPT-Neo: nn.Linear projections (no transpose) under ``attn.attention``; ``out_proj`` has the only bias."""
    names = {"transformer.wte.weight": "embed.weight", "transformer.wpe.weight": "pos_embed.weight",
             "transformer.ln_f.weight": "norm.weight", "transformer.ln_f.bias": "norm.bias",
             "lm_head.weight": "lm_head.weight"}
    for i in range(cfg.num_layers):
        hf, us = f"transformer.h.{i}.", f"blocks.{i}."
        names |= {hf + f"attn.attention.{p}_proj.weight": us + f"attn.{p}_proj.weight" for p in "qkv"}
        for kind in ("weight", "bias"):
            names[hf + f"attn.attention.out_proj.{kind}"] = us + f"attn.o_proj.{kind}"
            names[hf + f"mlp.c_fc.{kind}"] = us + f"mlp.fc_in.{kind}"
            names[hf + f"mlp.c_proj.{kind}"] = us + f"mlp.fc_out.{kind}"
            names[hf + f"ln_1.{kind}"] = us + f"attn_norm.{kind}"
            names[hf + f"ln_2.{kind}"] = us + f"mlp_norm.{kind}"
    return _plain(names)


def _llama_names(cfg: ModelConfig) -> dict[str, list[tuple[str, Transform]]]:
    """Llama and Qwen3 share HF's layout; the names differ from ours only in the prefixes."""
    names = {"model.embed_tokens.weight": [("embed.weight", _SAME)], "model.norm.weight": [("norm.weight", _SAME)],
             "lm_head.weight": [("lm_head.weight", _SAME)]}
    for i in range(cfg.num_layers):
        hf, us = f"model.layers.{i}.", f"blocks.{i}."
        pairs = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "mlp_norm.weight",
                 "self_attn.q_norm.weight": "attn.q_norm.weight", "self_attn.k_norm.weight": "attn.k_norm.weight"}
        for p in ("q", "k", "v", "o"):
            for kind in ("weight", "bias"):
                pairs[f"self_attn.{p}_proj.{kind}"] = f"attn.{p}_proj.{kind}"
        for p in ("gate", "up", "down"):
            for kind in ("weight", "bias"):
                pairs[f"mlp.{p}_proj.{kind}"] = f"mlp.{p}_proj.{kind}"
        names.update({hf + a: [(us + b, _SAME)] for a, b in pairs.items()})
    return names


def _moe_names(cfg: ModelConfig, names: dict[str, list[tuple[str, Transform]]]) -> dict:
    """On MoE layers: the router (HF ``mlp.gate``, with DeepSeek-V3's ``e_score_correction_bias``), the shared
    experts if any, and the routed experts: hub checkpoints store one tensor per expert; transformers 5 in memory
    fuses them (``gate_up_proj [E, 2I, H]``, gate first, and ``down_proj [E, H, I]``). Both are read."""
    I = cfg.moe_intermediate_size

    def pick(e: int, rows: slice | None = None) -> Transform:
        return (lambda t: t[e]) if rows is None else (lambda t: t[e, rows])

    for i in (i for i in range(cfg.num_layers) if cfg.is_moe_layer(i)):
        hf, us = f"model.layers.{i}.mlp.", f"blocks.{i}.mlp."
        for p in ("gate", "up", "down"):
            names.pop(f"model.layers.{i}.mlp.{p}_proj.weight", None)
            names[hf + f"shared_experts.{p}_proj.weight"] = [(us + f"shared_experts.{p}_proj.weight", _SAME)]
        names[hf + "gate.weight"] = [(us + "router.weight", _SAME)]
        names[hf + "gate.e_score_correction_bias"] = [(us + "router.e_score_correction_bias", _SAME)]
        for e in range(cfg.num_experts):
            for p in ("gate", "up", "down"):
                names[hf + f"experts.{e}.{p}_proj.weight"] = [(us + f"experts.{e}.{p}_proj.weight", _SAME)]
        names[hf + "experts.gate_up_proj"] = [(us + f"experts.{e}.{p}_proj.weight", pick(e, rows))
                                              for e in range(cfg.num_experts)
                                              for p, rows in (("gate", slice(0, I)), ("up", slice(I, 2 * I)))]
        names[hf + "experts.down_proj"] = [(us + f"experts.{e}.down_proj.weight", pick(e))
                                           for e in range(cfg.num_experts)]
    return names


def _qwen3_moe_names(cfg: ModelConfig) -> dict[str, list[tuple[str, Transform]]]:
    """Qwen3 names plus the MoE layers' router and experts."""
    return _moe_names(cfg, _llama_names(cfg))


def _deepseek_v3_names(cfg: ModelConfig) -> dict[str, list[tuple[str, Transform]]]:
    """Llama's layout with MLA's projections in place of q/k/v (the same leaf names as HF
    ``DeepseekV3Attention``) and DeepSeekMoE (shared + routed experts) from ``first_k_dense_replace`` on."""
    names = _llama_names(cfg)
    mla = ["q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"]
    for i in range(cfg.num_layers):
        hf, us = f"model.layers.{i}.self_attn.", f"blocks.{i}.attn."
        for p in ("q", "k", "v", "o"):
            for kind in ("weight", "bias"):
                names.pop(hf + f"{p}_proj.{kind}", None)
        names |= {hf + f"{p}.{kind}": [(us + f"{p}.{kind}", _SAME)] for p in mla for kind in ("weight", "bias")}
        names |= {hf + f"{n}.weight": [(us + f"{n}.weight", _SAME)] for n in ("q_a_layernorm", "kv_a_layernorm")}
    return _moe_names(cfg, names)


def _marian_names(cfg: ModelConfig) -> dict[str, list[tuple[str, Transform]]]:
    """HF ``MarianMTModel``: ``model.shared`` (also stored as the encoder's and decoder's ``embed_tokens`` and as
    ``lm_head``: one matrix), ``final_logits_bias`` [1, V], and per layer ``self_attn`` / ``encoder_attn`` with
    ``out_proj``, ``fc1`` / ``fc2``, and a LayerNorm after each sub-layer (post-LN)."""
    names = {k: "embed.weight" for k in ("model.shared.weight", "model.encoder.embed_tokens.weight",
                                         "model.decoder.embed_tokens.weight", "lm_head.weight")}
    proj = {"q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj", "out_proj": "o_proj"}
    layers = [("encoder", i, {"self_attn": "attn"}) for i in range(cfg.num_layers)]
    layers += [("decoder", i, {"self_attn": "self_attn", "encoder_attn": "cross_attn"}) for i in range(cfg.num_layers)]
    for stack, i, attentions in layers:
        hf, us = f"model.{stack}.layers.{i}.", f"{stack}.{i}."
        for kind in ("weight", "bias"):
            for hf_attn, our_attn in attentions.items():
                names |= {hf + f"{hf_attn}.{a}.{kind}": us + f"{our_attn}.{b}.{kind}" for a, b in proj.items()}
                names[hf + f"{hf_attn}_layer_norm.{kind}"] = us + f"{our_attn}_res.norm.{kind}"
            names[hf + f"fc1.{kind}"] = us + f"mlp.fc_in.{kind}"
            names[hf + f"fc2.{kind}"] = us + f"mlp.fc_out.{kind}"
            names[hf + f"final_layer_norm.{kind}"] = us + f"mlp_res.norm.{kind}"
    out = _plain(names)
    out["final_logits_bias"] = [("final_logits_bias", lambda t: t.reshape(-1))]  # [1, V] -> [V]
    return out


def _bert_names(cfg: ModelConfig) -> dict[str, list[tuple[str, Transform]]]:
    """HF ``BertModel`` (no prefix, as all-MiniLM-L6-v2 stores it) or ``BertForPreTraining`` (``bert.`` prefix and
    the ``cls`` heads). The MLM decoder weight is the word embedding; its bias is ``cls.predictions.bias``."""
    names = {"embeddings.word_embeddings.weight": "embed.weight",
             "embeddings.position_embeddings.weight": "pos_embed.weight",
             "embeddings.token_type_embeddings.weight": "type_embed.weight",
             "embeddings.LayerNorm.weight": "embed_norm.weight", "embeddings.LayerNorm.bias": "embed_norm.bias",
             "pooler.dense.weight": "pooler.weight", "pooler.dense.bias": "pooler.bias"}
    for i in range(cfg.num_layers):
        hf, us = f"encoder.layer.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            for a, b in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
                names[hf + f"attention.self.{a}.{kind}"] = us + f"attn.{b}.{kind}"
            names[hf + f"attention.output.dense.{kind}"] = us + f"attn.o_proj.{kind}"
            names[hf + f"attention.output.LayerNorm.{kind}"] = us + f"attn_norm.{kind}"
            names[hf + f"intermediate.dense.{kind}"] = us + f"mlp.fc_in.{kind}"
            names[hf + f"output.dense.{kind}"] = us + f"mlp.fc_out.{kind}"
            names[hf + f"output.LayerNorm.{kind}"] = us + f"mlp_norm.{kind}"
    names |= {"bert." + k: v for k, v in names.items()}
    for kind in ("weight", "bias"):
        names[f"cls.predictions.transform.dense.{kind}"] = f"heads.transform.{kind}"
        names[f"cls.predictions.transform.LayerNorm.{kind}"] = f"heads.transform_norm.{kind}"
        names[f"cls.seq_relationship.{kind}"] = f"heads.nsp.{kind}"
    names["cls.predictions.decoder.weight"] = "embed.weight"
    names["cls.predictions.bias"] = names["cls.predictions.decoder.bias"] = "heads.decoder.bias"
    return _plain(names)


# keyed by HF model_type, like CONFIG_READERS
NAME_MAPS = {"marian": _marian_names, "bert": _bert_names, "openai-gpt": _openai_gpt_names, "gpt2": _gpt2_names,
             "gpt_neo": _gpt_neo_names, "llama": _llama_names, "qwen3": _llama_names, "qwen3_moe": _qwen3_moe_names,
             "deepseek_v3": _deepseek_v3_names}
# parameters a checkpoint may lack: BertModel has no pre-training heads; Marian may omit its zero logits bias
OPTIONAL = {"bert": ("heads.",), "marian": ("final_logits_bias",)}
# buffers some exporters write that carry no weights: causal-mask tables, position ids, fixed sinusoid tables and
# RoPE frequencies
_IGNORED = (".attn.bias", ".attn.masked_bias", ".attn.attention.bias", ".attn.attention.masked_bias",
            "rotary_emb.inv_freq", "embeddings.position_ids",
            "embed_positions.weight")


def read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory: ``model.safetensors`` or the shards named by its index."""
    index = directory / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [directory / s for s in shards]
    else:
        files = [directory / "model.safetensors"]
    missing = [str(f.name) for f in files if not f.exists()]
    check(not missing, "checkpoint", str(directory), f"missing safetensors file(s) {missing}; llmviz reads only "
          "safetensors (no pickle). Convert .bin files with transformers' save_pretrained(safe_serialization=True)")
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        tensors.update(load_file(f))
    return tensors


def _aliases(model: nn.Module) -> dict[str, str]:
    """State-dict names that are another name's tensor (tied weights), each mapped to the first name."""
    first: dict[int, str] = {}
    alias = {}
    for name, t in model.state_dict(keep_vars=True).items():
        key = t.data_ptr()
        if key in first:
            alias[name] = first[key]
        else:
            first[key] = name
    return alias


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor], names: dict[str, list[tuple[str, Transform]]],
               dtype: torch.dtype = torch.float32, optional: tuple[str, ...] = ()) -> None:
    """Copy HF ``tensors`` into ``model`` through ``names``; name every unexpected, missing or mis-shaped one.

    Tied weights (one tensor under several names, e.g. a tied LM head) are filled once; a checkpoint that stores
    a tied tensor twice must store equal values. Parameters whose names start with one of ``optional`` may be
    absent (they keep their initial values)."""
    ours = model.state_dict()
    alias = _aliases(model)
    unexpected = sorted(k for k in tensors if k not in names and not k.endswith(_IGNORED))
    check(not unexpected, "checkpoint tensors", unexpected[:5], f"{len(unexpected)} tensor(s) have no place in "
          f"llmviz's {type(model).__name__}")
    filled: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    for hf_name, targets in names.items():
        if hf_name not in tensors:
            continue
        for our_name, transform in targets:
            check(our_name in ours, "checkpoint tensor", hf_name, f"this config has no {our_name} (bias or norm "
                  "switched off?)")
            t = transform(tensors[hf_name])
            check(t.shape == ours[our_name].shape, f"shape of {hf_name}", tuple(t.shape),
                  f"{our_name} needs {tuple(ours[our_name].shape)}; config.json and the weights disagree")
            target = alias.get(our_name, our_name)
            if target in filled:  # a tied tensor stored twice must be one tensor
                check(torch.equal(filled[target], t.to(dtype)), hf_name, "differs",
                      f"config.json ties it to {source[target]} (tie_word_embeddings / shared embeddings), "
                      "so the two must be equal")
            filled[target], source[target] = t.to(dtype), hf_name
    missing = sorted(k for k in ours if k not in filled and k not in alias and not k.startswith(optional))
    check(not missing, "missing tensors", missing[:5], f"{len(missing)} parameter(s) of the model are not in "
          "the checkpoint")
    model.load_state_dict(filled, strict=False)


def non_trivial_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give ``model`` (ours or HF's) weights a trained checkpoint could have, for equivalence checks: every
    parameter N(0, 0.1), norm weights 1 ± 0.3 and norm biases non-zero. Freshly initialised norms are all ones,
    which hides a norm on the wrong axis or applied in the wrong place (e.g. QK-Norm after RoPE). Frozen
    parameters (``requires_grad=False``: Marian's sinusoid tables, which a checkpoint does not store) are left alone."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name.lower() or "ln_" in name:
                p.copy_(1.0 + 0.3 * noise if name.endswith("weight") else 0.1 * noise)
            else:
                p.copy_(0.1 * noise)
    return model


def load_hf(path: str | Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The llmviz model for an HF checkpoint directory, in eval mode (weights cast to ``dtype``).

    Supported ``model_type``: bert, marian, openai-gpt, gpt2, gpt_neo, llama, qwen3, qwen3_moe, deepseek_v3. Reads single
    or sharded safetensors; never unpickles. Tensors it skips (DeepSeek-V3's MTP layer) are warned about and listed
    in ``model.skipped_tensors``.
    """
    directory = Path(path)
    check((directory / "config.json").exists(), "path", str(path), "must be a directory with config.json and "
          "*.safetensors (as written by save_pretrained)")
    try:
        hf_config = json.loads((directory / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"config.json={str(directory / 'config.json')!r} is not allowed: not valid JSON ({e})") from None
    cfg = config_from_hf(hf_config)
    model = build_model(cfg).to(dtype)
    kind = hf_config["model_type"]
    tensors = read_safetensors(directory)
    model.skipped_tensors = sorted(k for k in tensors if _skipped(kind, cfg, k))
    if model.skipped_tensors:
        warnings.warn(f"load_hf: skipped {len(model.skipped_tensors)} tensor(s) that llmviz's {type(model).__name__} "
                      f"has no place for: DeepSeek-V3's multi-token-prediction layer (e.g. {model.skipped_tensors[0]}); "
                      "they are listed in model.skipped_tensors", stacklevel=2)
        tensors = {k: t for k, t in tensors.items() if k not in set(model.skipped_tensors)}
    load_state(model, tensors, NAME_MAPS[kind](cfg), dtype, OPTIONAL.get(kind, ()))
    return model.eval()


def _skipped(kind: str, cfg: ModelConfig, name: str) -> bool:
    """Tensors reported and skipped rather than refused: the MTP layer that DeepSeek-V3 checkpoints store as
    ``model.layers.{num_hidden_layers}`` (HF's DeepseekV3ForCausalLM has no place for it either)."""
    return kind == "deepseek_v3" and name.startswith(f"model.layers.{cfg.num_layers}.")


# ------------------------------------------------------------------------------------------------------------ GGUF

GGUF_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K")
_GGUF_NAMES = {"token_embd.weight": "embed.weight", "output_norm.weight": "norm.weight", "output.weight": "lm_head.weight"}
_GGUF_BLOCK = {"attn_norm": "attn_norm", "attn_q": "attn.q_proj", "attn_k": "attn.k_proj", "attn_v": "attn.v_proj",
               "attn_output": "attn.o_proj", "ffn_norm": "mlp_norm", "ffn_gate": "mlp.gate_proj",
               "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def unpermute_qk(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row permutation. Its converter reorders each head's rows from HF's rotate-half layout
    (pairs (i, i + d/2)) to the interleaved one (pairs (2i, 2i + 1)) that its RoPE kernel uses (algorithms.md §2.2):
    rows ``[x_0 … x_{d/2-1}, x_{d/2} …]`` are stored as ``[x_0, x_{d/2}, x_1, x_{d/2+1}, …]``. w [heads·d, in]."""
    d = w.shape[0] // n_heads
    return w.reshape(n_heads, d // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_reader(path: str | Path):
    """A ``gguf.GGUFReader`` for ``path``, cached while the file is unchanged: parsing SmolLM2's header (49,152
    tokens, 48,900 merges) takes seconds, and the model, the tokenizer and the chat template all read it."""
    path = Path(path).resolve()
    check(path.is_file(), "path", str(path), "must be a .gguf file")
    stat = path.stat()
    return _gguf_reader(str(path), stat.st_mtime_ns, stat.st_size)



def clear_gguf_cache() -> None:
    """Forget the parsed GGUF headers (and unmap their files) once a model and its tokenizer are loaded."""
    _gguf_reader.cache_clear()


@lru_cache(maxsize=2)
def _gguf_reader(path: str, mtime_ns: int, size: int):
    from gguf import GGUFReader

    try:
        return GGUFReader(path)
    except (ValueError, OSError) as e:
        raise ValueError(f"path={path!r} is not allowed: not a readable GGUF file ({e})") from None


def _gguf_field(reader, key: str, path: Path, default=None):
    field = reader.fields.get(key)
    if field is None:
        check(default is not None, "GGUF header", str(path.name), f"the field {key!r} is missing")
        return default
    return field.contents()


def load_gguf(path: str | Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A llama-architecture GGUF file (llama.cpp's format) as an llmviz :class:`~llmviz.models.Llama`, eval mode.

    The config comes from the header (``llama.*`` fields); the tensors are dequantized with the ``gguf`` package
    (types in ``GGUF_TYPES``), never unpickled; q and k rows are un-permuted (:func:`unpermute_qk`); a file without
    ``output.weight`` has a tied head. Unsupported architectures, tensor types and missing tensors are named.
    """
    from gguf.quants import dequantize

    path = Path(path)
    reader = gguf_reader(path)
    arch = _gguf_field(reader, "general.architecture", path)
    check(arch == "llama", "general.architecture", arch, "load_gguf reads llama-architecture files only")
    f = lambda key, default=None: _gguf_field(reader, f"llama.{key}", path, default)  # noqa: E731
    heads, kv_heads = f("attention.head_count"), f("attention.head_count_kv", f("attention.head_count"))
    hidden = f("embedding_length")
    scaling = f("rope.scaling.type", "none")
    check(scaling in ("none", ""), "llama.rope.scaling.type", scaling, "only files without RoPE scaling are supported")
    names = {t.name for t in reader.tensors}
    tokens = _gguf_field(reader, "tokenizer.ggml.tokens", path, [])
    cfg = ModelConfig(
        arch="llama", name=str(_gguf_field(reader, "general.name", path, path.stem)), family="Llama (GGUF)",
        hidden_size=hidden, num_layers=f("block_count"), num_heads=heads, num_kv_heads=kv_heads,
        head_dim=f("rope.dimension_count", hidden // heads), intermediate_size=f("feed_forward_length"),
        vocab_size=f("vocab_size", len(tokens)), max_position_embeddings=f("context_length"),
        norm_eps=float(f("attention.layer_norm_rms_epsilon")), rope_theta=float(f("rope.freq_base", 10_000.0)),
        tie_word_embeddings="output.weight" not in names)
    model = build_model(cfg).to(dtype)
    ours = model.state_dict()   # views of the parameters: each tensor is copied straight in (one at a time in memory)
    filled = set()
    for t in reader.tensors:
        if t.name.startswith("blk."):
            _, i, part, kind = t.name.split(".")
            check(part in _GGUF_BLOCK, "GGUF tensor", t.name, f"llmviz's Llama has no place for {part!r}")
            our = f"blocks.{i}.{_GGUF_BLOCK[part]}.{kind}"
        else:
            check(t.name in _GGUF_NAMES, "GGUF tensor", t.name, "llmviz's Llama has no place for it")
            our = _GGUF_NAMES[t.name]
        check(t.tensor_type.name in GGUF_TYPES, f"type of {t.name}", t.tensor_type.name, f"supported: {GGUF_TYPES}")
        shape = tuple(int(n) for n in reversed(t.shape))                # GGUF lists dims innermost first
        check(our in ours and shape == tuple(ours[our].shape), f"shape of {t.name}", shape,
              f"{our} needs {tuple(ours[our].shape) if our in ours else 'nothing'}; the header and the tensors disagree")
        target = ours[our].view(-1, shape[-1])                             # [rows, cols] (a norm: [1, dim])
        rows = t.data.reshape(target.shape[0], -1)                         # the raw rows (blocks of quantized bytes)
        with torch.no_grad():
            if t.name.endswith(("attn_q.weight", "attn_k.weight")):        # rows permuted for llama.cpp's RoPE
                w = torch.from_numpy(dequantize(rows, t.tensor_type).copy())
                target.copy_(unpermute_qk(w, heads if t.name.endswith("attn_q.weight") else kv_heads))
            else:
                for i in range(0, len(rows), 4096):                       # in slices: a small transient copy
                    target[i:i + 4096].copy_(torch.from_numpy(dequantize(rows[i:i + 4096], t.tensor_type).copy()))
        filled.add(our)
    missing = sorted(k for k in ours if k not in filled and not (cfg.tie_word_embeddings and k == "lm_head.weight"))
    check(not missing, "missing tensors", missing[:5], f"{len(missing)} parameter(s) are not in {path.name}")
    return model.eval()
