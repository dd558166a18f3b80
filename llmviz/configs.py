"""Model configurations: one dataclass for every architecture in the series, real presets and tiny ones.

Real presets are read from ``llmviz/data/model_configs.json``, a verbatim copy of the project's verified
facts (``shared/facts/model_configs.json``; a test keeps the two identical). Their names are that file's
keys. Tiny presets (``tiny-gpt2``, ``tiny-llama``, ``tiny-qwen3``, ``tiny-transformer``, ``tiny-bert``, ``tiny-deepseek``)
are small enough to train in seconds.

>>> cfg = get_config("qwen3-0.6b")
>>> cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
(16, 8, 128)
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from ._checks import check, check_int

ARCHS = ("transformer", "bert", "gpt", "gpt2", "llama", "qwen3", "qwen3_moe", "deepseek")
ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")


@dataclass(frozen=True)
class ModelConfig:
    """Every architecture hyper-parameter the series needs, with Hugging Face meanings.

    ``arch`` picks the model file: ``gpt2`` (pre-LN GPT-2 and GPT-3), ``llama``, ``qwen3``, ``qwen3_moe``,
    ``deepseek``, ``bert``, ``gpt`` (GPT-1, post-LN) or ``transformer`` (encoder-decoder). Fields that an
    architecture does not use keep their neutral defaults. ``facts`` carries the published numbers that are
    not architecture (parameter counts, training tokens, sources) exactly as the facts file gives them.
    """

    arch: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    name: str = "custom"
    family: str = ""
    num_kv_heads: int | None = None  # None -> num_heads (MHA)
    head_dim: int | None = None  # None -> hidden_size // num_heads
    context_length: int | None = None  # trained / advertised context; None -> max_position_embeddings
    # normalisation, positions, feed-forward
    norm: str = "rmsnorm"  # "rmsnorm" | "layernorm"
    norm_eps: float = 1e-6
    pre_norm: bool = True  # False = post-LN (Transformer, BERT, GPT-1)
    position: str = "rope"  # "rope" | "learned" | "sinusoidal"
    sinusoid_layout: str = "interleaved"  # paper: sin, cos, sin, cos ...; "halves" = HF Marian: [sin ... | cos ...]
    scale_embedding: bool = False  # Transformer §3.4: token embeddings multiplied by sqrt(hidden_size)
    rope_theta: float = 10_000.0
    rope_scaling: dict | None = None  # HF rope_scaling / rope_parameters, with a "rope_type" key
    rope_interleaved: bool = False  # True = RoFormer / GPT-J / DeepSeek pairing (x_2i, x_2i+1)
    activation: str = "silu"
    gated_mlp: bool = True  # SwiGLU (gate, up, down) vs a 2-layer MLP
    attention_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False  # Qwen3: RMSNorm over head_dim of q and k, before RoPE
    tie_word_embeddings: bool = False
    sliding_window: int | None = None  # W keys including the query itself (every layer, or the "local" ones)
    layer_types: tuple[str, ...] = ()  # per layer "global" (dense causal) or "local" (window); () = all alike
    attention_scale: float | None = None  # score scale; None = 1/sqrt(head_dim); GPT-Neo: 1.0 (no scaling)
    attention_out_bias: bool | None = None  # bias on the output projection; None = attention_bias
    dropout: float = 0.0
    # mixture of experts (Qwen3-MoE, DeepSeek)
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    norm_topk_prob: bool = False
    num_shared_experts: int = 0
    decoder_sparse_step: int = 1
    mlp_only_layers: tuple[int, ...] = ()
    first_k_dense_replace: int = 0
    n_group: int = 1
    topk_group: int = 1
    routed_scaling_factor: float = 1.0
    scoring_func: str = "softmax"
    # multi-head latent attention (DeepSeek)
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    # BERT
    type_vocab_size: int = 0
    facts: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.num_kv_heads is None:
            object.__setattr__(self, "num_kv_heads", self.num_heads)
        if self.head_dim is None and isinstance(self.num_heads, int) and self.num_heads > 0:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        if self.rope_scaling is not None:
            object.__setattr__(self, "rope_scaling", normalize_rope_scaling(self.rope_scaling))
        object.__setattr__(self, "mlp_only_layers", tuple(self.mlp_only_layers))
        object.__setattr__(self, "layer_types", tuple(self.layer_types))
        validate(self)

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (validated again). An MHA config stays MHA: changing ``num_heads``
        without ``num_kv_heads`` moves the KV heads along (``head_dim`` is kept unless given)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        check(not unknown, "field", unknown[0] if unknown else None,
              f"ModelConfig has no such field; close names: {_close(unknown[0], _FIELDS) if unknown else ''}")
        if "num_heads" in changes and "num_kv_heads" not in changes and self.num_kv_heads == self.num_heads:
            changes["num_kv_heads"] = None
        return dataclasses.replace(self, **changes)

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def uses_mla(self) -> bool:
        return self.kv_lora_rank > 0

    def is_moe_layer(self, i: int) -> bool:
        """HF rule: Qwen3-MoE ``(i+1) % decoder_sparse_step == 0`` and not in ``mlp_only_layers``;
        DeepSeek: every layer from ``first_k_dense_replace`` on."""
        if not self.is_moe:
            return False
        if self.arch == "deepseek":
            return i >= self.first_k_dense_replace
        return i not in self.mlp_only_layers and (i + 1) % self.decoder_sparse_step == 0

    def layer_window(self, i: int) -> int | None:
        """The sliding window of layer ``i``: ``sliding_window`` unless ``layer_types[i]`` is "global"."""
        return None if self.layer_types and self.layer_types[i] == "global" else self.sliding_window

    @property
    def rope_dim(self) -> int:
        """Dimensions per head that RoPE rotates (DeepSeek: only the decoupled ``qk_rope_head_dim``)."""
        return self.qk_rope_head_dim if self.uses_mla else int(self.head_dim)


_FIELDS = [f.name for f in dataclasses.fields(ModelConfig)]


def _close(name: str, options: list[str]) -> str:
    near = difflib.get_close_matches(name, options, n=5, cutoff=0.4)
    return ", ".join(near) if near else "(none)"


def normalize_rope_scaling(scaling: dict) -> dict:
    """Accept HF's ``rope_scaling`` ({"type"|"rope_type": ...}) and return a dict keyed by ``rope_type``."""
    check(isinstance(scaling, dict), "rope_scaling", scaling, "must be a dict like {'rope_type': 'yarn', 'factor': 4.0}")
    out = dict(scaling)
    kind = out.pop("rope_type", None) or out.pop("type", None) or "default"
    out.pop("type", None)
    out.pop("rope_theta", None)
    check(kind in ROPE_TYPES, "rope_scaling['rope_type']", kind, f"must be one of {ROPE_TYPES}")
    out["rope_type"] = kind
    if kind != "default":
        factor = out.get("factor")
        check(factor is None or (isinstance(factor, (int, float)) and factor >= 1), "rope_scaling['factor']",
              factor, "the context-extension factor must be a number >= 1")
        check(kind == "yarn" or factor is not None, "rope_scaling['factor']", factor, f"{kind} scaling needs a factor")
    if kind == "llama3":
        for key in ("low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
            check(key in out, f"rope_scaling['{key}']", None, "llama3 scaling needs it (see HF _compute_llama3_parameters)")
        check(out["high_freq_factor"] > out["low_freq_factor"], "rope_scaling['high_freq_factor']",
              out["high_freq_factor"], "must be larger than low_freq_factor")
    return out


_BOOLS = ("pre_norm", "scale_embedding", "rope_interleaved", "gated_mlp", "attention_bias", "mlp_bias", "qk_norm", "tie_word_embeddings",
          "norm_topk_prob")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate(cfg: ModelConfig) -> None:
    """Reject impossible configurations with a message that names the field, the value and the rule."""
    check(cfg.arch in ARCHS, "arch", cfg.arch, f"must be one of {ARCHS}")
    for name in _BOOLS:
        check(isinstance(getattr(cfg, name), bool), name, getattr(cfg, name), "must be True or False")
    for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings"):
        check_int(getattr(cfg, name), name, minimum=1)
    check_int(cfg.vocab_size, "vocab_size", minimum=1)
    check_int(cfg.num_kv_heads, "num_kv_heads", minimum=1)
    check(cfg.num_heads % cfg.num_kv_heads == 0, "num_kv_heads", cfg.num_kv_heads,
          f"num_heads={cfg.num_heads} must be divisible by num_kv_heads (each KV head serves a whole group)")
    check_int(cfg.head_dim, "head_dim", minimum=1)
    check(cfg.norm in ("rmsnorm", "layernorm"), "norm", cfg.norm, "must be 'rmsnorm' or 'layernorm'")
    check(_is_number(cfg.norm_eps) and cfg.norm_eps > 0, "norm_eps", cfg.norm_eps, "must be > 0")
    check(cfg.position in ("rope", "learned", "sinusoidal"), "position", cfg.position,
          "must be 'rope', 'learned' or 'sinusoidal'")
    check(cfg.sinusoid_layout in ("interleaved", "halves"), "sinusoid_layout", cfg.sinusoid_layout,
          "must be 'interleaved' (the paper's sin, cos, sin, ...) or 'halves' (HF Marian's [sin | cos])")
    check(cfg.activation in ACTIVATIONS, "activation", cfg.activation, f"must be one of {ACTIVATIONS}")
    check(_is_number(cfg.dropout) and 0.0 <= cfg.dropout < 1.0, "dropout", cfg.dropout,
          "must be in [0, 1)")
    if cfg.position == "rope":
        check(_is_number(cfg.rope_theta) and cfg.rope_theta > 1, "rope_theta", cfg.rope_theta,
              "the RoPE base must be > 1")
        check(cfg.rope_dim % 2 == 0, "head_dim" if not cfg.uses_mla else "qk_rope_head_dim", cfg.rope_dim,
              "RoPE rotates pairs of dimensions, so it must be even")
    if cfg.sliding_window is not None:
        check_int(cfg.sliding_window, "sliding_window", minimum=1)
    if cfg.layer_types:
        check(len(cfg.layer_types) == cfg.num_layers and set(cfg.layer_types) <= {"global", "local"}, "layer_types",
              cfg.layer_types, f"one of 'global' / 'local' per layer ({cfg.num_layers} layers)")
        check("local" not in cfg.layer_types or cfg.sliding_window is not None, "sliding_window", None,
              "local layers need a window")
    check(cfg.attention_scale is None or (_is_number(cfg.attention_scale) and cfg.attention_scale > 0),
          "attention_scale", cfg.attention_scale, "must be None (1/sqrt(head_dim)) or a number > 0")
    check(cfg.attention_out_bias in (None, True, False), "attention_out_bias", cfg.attention_out_bias,
          "must be None, True or False")
    if cfg.context_length is not None:
        check_int(cfg.context_length, "context_length", minimum=1)
    if cfg.is_moe:
        check_int(cfg.num_experts_per_tok, "num_experts_per_tok", minimum=1)
        check(cfg.num_experts_per_tok <= cfg.num_experts, "num_experts_per_tok", cfg.num_experts_per_tok,
              f"top-k cannot exceed num_experts={cfg.num_experts}")
        check_int(cfg.moe_intermediate_size, "moe_intermediate_size", minimum=1)
        check_int(cfg.decoder_sparse_step, "decoder_sparse_step", minimum=1)
        check_int(cfg.num_shared_experts, "num_shared_experts", minimum=0)
        check(cfg.scoring_func in ("softmax", "sigmoid"), "scoring_func", cfg.scoring_func,
              "must be 'softmax' or 'sigmoid'")
        check_int(cfg.n_group, "n_group", minimum=1)
        check(cfg.num_experts % cfg.n_group == 0, "n_group", cfg.n_group,
              f"num_experts={cfg.num_experts} must split into equal groups")
        check(1 <= cfg.topk_group <= cfg.n_group, "topk_group", cfg.topk_group, f"must be in [1, n_group={cfg.n_group}]")
        for i in cfg.mlp_only_layers:
            check(isinstance(i, int) and 0 <= i < cfg.num_layers, "mlp_only_layers", cfg.mlp_only_layers,
                  f"layer indices must be in [0, {cfg.num_layers})")
    else:
        check(cfg.num_experts == 0, "num_experts", cfg.num_experts, "must be an integer >= 0")
        check(cfg.num_experts_per_tok == 0, "num_experts_per_tok", cfg.num_experts_per_tok,
              "a dense model (num_experts=0) routes to no experts; set num_experts too")
        check(cfg.arch not in ("qwen3_moe",), "num_experts", cfg.num_experts, "qwen3_moe needs num_experts >= 1")
    if cfg.uses_mla:
        for name in ("q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"):
            check_int(getattr(cfg, name), name, minimum=0 if name == "q_lora_rank" else 1)


# ---------------------------------------------------------------------------------------------------------
# Real presets: built from the verified facts file, one converter per family.

def _context(report: str | None) -> int | None:
    return {"32K": 32_768, "128K": 131_072}.get(report) if report else None


def _gpt3_heads(name: str, f: dict) -> tuple[int, int]:
    """(heads, head_dim) of a GPT-3 size. Table 2.1 prints XL as 24 heads x 128 = 3,072 != d_model 2,048, which no
    whole head size reconciles; its published 1.3B (and the 12·L·d² cross-check) needs attention as wide as
    d_model, so the preset takes the 16 heads of 128 of GPT-Neo 1.3B, EleutherAI's replica of this size."""
    if f["n_heads"] * f["d_head"] != f["d_model"] and name == "gpt3-xl":
        return 16, f["d_model"] // 16
    return f["n_heads"], f["d_head"]


def _gpt3(name: str, f: dict) -> ModelConfig:
    heads, head_dim = _gpt3_heads(name, f)
    return ModelConfig(
        arch="gpt2", name=name, family=f["family"], hidden_size=f["d_model"], num_layers=f["n_layers"],
        num_heads=heads, head_dim=head_dim, intermediate_size=f["d_ff"], vocab_size=f["vocab_size"],
        max_position_embeddings=f["n_ctx"], norm="layernorm", norm_eps=1e-5, position="learned",
        activation="gelu_tanh", gated_mlp=False, attention_bias=True, mlp_bias=True, tie_word_embeddings=True,
        facts=f)


def _from_facts(name: str, f: dict, table: dict) -> ModelConfig:
    fam = f["family"]
    if fam == "Transformer":
        return ModelConfig(
            arch="transformer", name=name, family=fam, hidden_size=f["d_model"], num_layers=f["N"],
            num_heads=f["h"], head_dim=f["d_k"], intermediate_size=f["d_ff"], vocab_size=f["vocab_size"],
            max_position_embeddings=512, norm="layernorm", norm_eps=1e-6, pre_norm=False, position="sinusoidal",
            scale_embedding=True, activation="relu", gated_mlp=False, attention_bias=True, mlp_bias=True,
            tie_word_embeddings=True, dropout=f["P_drop"], facts=f)
    if fam == "BERT":
        return ModelConfig(
            arch="bert", name=name, family=fam, hidden_size=f["hidden_size"], num_layers=f["num_hidden_layers"],
            num_heads=f["num_attention_heads"], intermediate_size=f["intermediate_size"], vocab_size=f["vocab_size"],
            max_position_embeddings=f["max_position_embeddings"], type_vocab_size=f["type_vocab_size"],
            norm="layernorm", norm_eps=1e-12, pre_norm=False, position="learned", activation="gelu",
            gated_mlp=False, attention_bias=True, mlp_bias=True, tie_word_embeddings=True, facts=f)
    if fam in ("GPT", "GPT-2"):
        return ModelConfig(
            arch="gpt" if fam == "GPT" else "gpt2", name=name, family=fam, hidden_size=f["n_embd"],
            num_layers=f["n_layer"], num_heads=f["n_head"], intermediate_size=f.get("n_inner") or 4 * f["n_embd"],
            vocab_size=f["vocab_size"], max_position_embeddings=f["n_ctx"], norm="layernorm", norm_eps=1e-5,
            pre_norm=fam == "GPT-2", position="learned", activation="gelu_tanh", gated_mlp=False,
            attention_bias=True, mlp_bias=True, tie_word_embeddings=True, facts=f)
    if fam == "GPT-3":
        return _gpt3(name, f)
    if fam == "InstructGPT":  # the largest InstructGPT model has the GPT-3 175B architecture (IGPT §3)
        return dataclasses.replace(_gpt3(name, table["gpt3-175b"]), family=fam, facts=f)
    if fam.startswith("Llama"):
        ctx = f.get("context_length") or f["max_position_embeddings"]
        return ModelConfig(
            arch="llama", name=name, family=fam, hidden_size=f["hidden_size"], num_layers=f["num_hidden_layers"],
            num_heads=f["num_attention_heads"], num_kv_heads=f["num_key_value_heads"],
            intermediate_size=f["intermediate_size"], vocab_size=f["vocab_size"], max_position_embeddings=ctx,
            norm_eps=1e-5, rope_theta=float(f["rope_theta"]), rope_scaling=f["rope_scaling"], facts=f)
    if fam.startswith("Qwen3"):
        moe = fam == "Qwen3 MoE"
        return ModelConfig(
            arch="qwen3_moe" if moe else "qwen3", name=name, family=fam, hidden_size=f["hidden_size"],
            num_layers=f["num_hidden_layers"], num_heads=f["num_attention_heads"],
            num_kv_heads=f["num_key_value_heads"], head_dim=f["head_dim"], intermediate_size=f["intermediate_size"],
            vocab_size=f["vocab_size"], max_position_embeddings=f["max_position_embeddings"],
            context_length=_context(f["report_context_length"]), rope_theta=float(f["rope_theta"]), qk_norm=True,
            attention_bias=f["attention_bias"], tie_word_embeddings=f["tie_word_embeddings"],
            num_experts=f["num_experts"] or 0, num_experts_per_tok=f["num_experts_per_tok"] or 0,
            moe_intermediate_size=f["moe_intermediate_size"] or 0, norm_topk_prob=bool(f["norm_topk_prob"]),
            num_shared_experts=f.get("shared_experts") or 0, decoder_sparse_step=f.get("decoder_sparse_step") or 1,
            facts=f)
    if fam == "DeepSeek":
        return ModelConfig(
            arch="deepseek", name=name, family=fam, hidden_size=f["hidden_size"], num_layers=f["num_hidden_layers"],
            num_heads=f["num_attention_heads"], num_kv_heads=f["num_key_value_heads"],
            head_dim=f["qk_nope_head_dim"] + f["qk_rope_head_dim"], intermediate_size=f["intermediate_size"],
            vocab_size=f["vocab_size"], max_position_embeddings=f["max_position_embeddings"],
            context_length=f["context_length"], rope_theta=float(f["rope_theta"]), rope_scaling=f["rope_scaling"],
            rope_interleaved=True, num_experts=f["n_routed_experts"], num_experts_per_tok=f["num_experts_per_tok"],
            moe_intermediate_size=f["moe_intermediate_size"], norm_topk_prob=f["norm_topk_prob"],
            num_shared_experts=f["n_shared_experts"], first_k_dense_replace=f["first_k_dense_replace"],
            n_group=f["n_group"], topk_group=f["topk_group"], routed_scaling_factor=f["routed_scaling_factor"],
            scoring_func=f["scoring_func"], kv_lora_rank=f["kv_lora_rank"], q_lora_rank=f["q_lora_rank"],
            qk_rope_head_dim=f["qk_rope_head_dim"], qk_nope_head_dim=f["qk_nope_head_dim"],
            v_head_dim=f["v_head_dim"], facts=f)
    raise ValueError(f"family={fam!r} of preset {name!r} has no converter")  # pragma: no cover


def _tiny() -> dict[str, ModelConfig]:
    """Teaching presets: a few hundred thousand parameters, trainable on a laptop CPU in seconds."""
    gpt2 = ModelConfig(
        arch="gpt2", name="tiny-gpt2", family="GPT-2 (tiny)", hidden_size=64, num_layers=2, num_heads=4,
        intermediate_size=256, vocab_size=256, max_position_embeddings=128, norm="layernorm", norm_eps=1e-5,
        position="learned", activation="gelu_tanh", gated_mlp=False, attention_bias=True, mlp_bias=True,
        tie_word_embeddings=True)
    llama = ModelConfig(
        arch="llama", name="tiny-llama", family="Llama (tiny)", hidden_size=64, num_layers=2, num_heads=4,
        num_kv_heads=2, intermediate_size=172, vocab_size=256, max_position_embeddings=128, norm_eps=1e-5,
        rope_theta=500_000.0)
    qwen3 = ModelConfig(
        arch="qwen3", name="tiny-qwen3", family="Qwen3 (tiny)", hidden_size=64, num_layers=2, num_heads=4,
        num_kv_heads=2, head_dim=32, intermediate_size=192, vocab_size=256, max_position_embeddings=128,
        rope_theta=1_000_000.0, qk_norm=True, tie_word_embeddings=True)
    transformer = ModelConfig(
        arch="transformer", name="tiny-transformer", family="Transformer (tiny)", hidden_size=64, num_layers=2,
        num_heads=4, intermediate_size=256, vocab_size=64, max_position_embeddings=64, norm="layernorm",
        norm_eps=1e-6, pre_norm=False, position="sinusoidal", scale_embedding=True, activation="relu",
        gated_mlp=False, attention_bias=True, mlp_bias=True, tie_word_embeddings=True)
    bert = ModelConfig(
        arch="bert", name="tiny-bert", family="BERT (tiny)", hidden_size=64, num_layers=2, num_heads=4,
        intermediate_size=256, vocab_size=512, max_position_embeddings=128, type_vocab_size=2, norm="layernorm",
        norm_eps=1e-12, pre_norm=False, position="learned", activation="gelu", gated_mlp=False,
        attention_bias=True, mlp_bias=True, tie_word_embeddings=True)
    deepseek = ModelConfig(
        arch="deepseek", name="tiny-deepseek", family="DeepSeek (tiny)", hidden_size=32, num_layers=2, num_heads=2,
        head_dim=12, intermediate_size=48, vocab_size=256, max_position_embeddings=128, rope_interleaved=True,
        num_experts=4, num_experts_per_tok=2, moe_intermediate_size=8, norm_topk_prob=True, num_shared_experts=1,
        first_k_dense_replace=1, routed_scaling_factor=2.5, scoring_func="sigmoid", kv_lora_rank=8, q_lora_rank=0,
        qk_rope_head_dim=4, qk_nope_head_dim=8, v_head_dim=8)
    return {c.name: c for c in (gpt2, llama, qwen3, transformer, bert, deepseek)}


@lru_cache(maxsize=None)
def _facts_table() -> dict[str, dict]:
    text = resources.files("llmviz").joinpath("data/model_configs.json").read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=None)
def _presets() -> dict[str, ModelConfig]:
    table = _facts_table()
    real = {name.lower(): _from_facts(name.lower(), f, table) for name, f in table.items()}
    return {**real, **_tiny()}


def list_configs(family: str | None = None) -> list[str]:
    """Preset names (real models in the facts file's order, then the tiny ones), optionally by family
    (a case-insensitive substring of ``cfg.family``, e.g. ``"qwen3"``)."""
    names = list(_presets())
    if family is None:
        return names
    return [n for n in names if family.lower() in _presets()[n].family.lower()]


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The preset called ``name`` (case-insensitive), with optional field ``overrides``.

    An unknown name raises ``ValueError`` listing the closest preset names.
    """
    check(isinstance(name, str), "name", name, "must be a preset name string; see list_configs()")
    presets = _presets()
    key = name.strip().lower()
    check(key in presets, "name", name, f"no such preset; closest: {_close(key, list(presets))}")
    cfg = presets[key]
    return cfg.replace(**overrides) if overrides else cfg
