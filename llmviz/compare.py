"""Models side by side (notebook 09): an architecture row read from each config, the published sizes, and a
roofline estimate of what serving a model costs on an accelerator.

Nothing here is typed per model: every row is computed from a :class:`~llmviz.configs.ModelConfig` and its
``facts`` (the verified facts file), so a corrected config corrects every table and figure.
"""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from functools import lru_cache

from ._checks import check, check_config, check_int
from .configs import ModelConfig, get_config
from .stats import count_params, flops_per_token, kv_cache_bytes

ACTIVATION_NAMES = {"relu": "ReLU", "gelu": "GELU", "gelu_tanh": "GELU (tanh)", "silu": "SiLU"}


def context_label(n: int) -> str:
    """A token count as the model cards write it: 131072 -> "128K", 2048 -> "2K", 512 -> "512"."""
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else f"{n:,}"


def _theta(x: float) -> str:
    return f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}K"


def structure(cfg: ModelConfig) -> str:
    return {"transformer": "encoder-decoder", "bert": "encoder"}.get(cfg.arch, "decoder")


def positions(cfg: ModelConfig) -> str:
    """Sinusoidal, learned (table size) or RoPE (base, scaling, and how many dims it rotates)."""
    if cfg.position == "sinusoidal":
        return "sinusoidal"
    if cfg.position == "learned":
        return f"learned ({context_label(cfg.max_position_embeddings)})"
    text = f"RoPE θ={_theta(cfg.rope_theta)}"
    if cfg.rope_scaling:
        text += f", {cfg.rope_scaling['rope_type']} ×{cfg.rope_scaling.get('factor', 1):g}"
    if cfg.uses_mla:
        text += f", {cfg.qk_rope_head_dim} of {cfg.qk_nope_head_dim + cfg.qk_rope_head_dim} dims"
    return text


def attention_kind(cfg: ModelConfig) -> str:
    """MHA (every head its own K and V), GQA (groups share), MQA (one K/V head) or MLA (a latent)."""
    if cfg.uses_mla:
        return "MLA"
    if cfg.num_kv_heads == cfg.num_heads:
        return "MHA"
    return "MQA" if cfg.num_kv_heads == 1 else "GQA"


def attention(cfg: ModelConfig) -> str:
    """The attention column: kind, query / KV heads, latent width, QK-Norm, windows."""
    if cfg.uses_mla:
        text = f"MLA {cfg.num_heads} heads, latent {cfg.kv_lora_rank}+{cfg.qk_rope_head_dim}"
    else:
        text = f"{attention_kind(cfg)} {cfg.num_heads}/{cfg.num_kv_heads}"
    if cfg.qk_norm:
        text += ", QK-Norm"
    if cfg.sliding_window:
        local = cfg.layer_types.count("local") if cfg.layer_types else cfg.num_layers
        text += f", window {cfg.sliding_window} in {local} of {cfg.num_layers} layers"
    elif cfg.family in ("GPT-3", "InstructGPT"):   # GPT-3 §2.1; the band width is not published (presets: dense)
        text += ", alternating dense / banded"
    return text


def ffn(cfg: ModelConfig) -> str:
    """Activation (gated or not), inner width; for MoE the routed experts, top-k, shared experts, dense layers."""
    act = "SwiGLU" if cfg.gated_mlp and cfg.activation == "silu" else ACTIVATION_NAMES[cfg.activation]
    if not cfg.is_moe:
        return f"{act} {cfg.intermediate_size:,}"
    text = f"{act} MoE {cfg.num_experts}×{cfg.moe_intermediate_size:,}, top-{cfg.num_experts_per_tok}"
    if cfg.num_shared_experts:
        text += f" + {cfg.num_shared_experts} shared"
    dense = sum(not cfg.is_moe_layer(i) for i in range(cfg.num_layers))
    return text + (f"; {dense} dense layers" if dense else "")


def norm(cfg: ModelConfig) -> str:
    return f"{'RMSNorm' if cfg.norm == 'rmsnorm' else 'LayerNorm'}, {'pre' if cfg.pre_norm else 'post'}"


ARCHITECTURE_COLUMNS = ("structure", "norm", "positions", "attention", "FFN", "vocabulary", "context", "tied head")


def architecture(cfg: ModelConfig) -> dict[str, str]:
    """One row of the architecture table, every cell computed from ``cfg`` (columns ``ARCHITECTURE_COLUMNS``)."""
    check_config(cfg)
    context = cfg.context_length or cfg.max_position_embeddings
    return {"structure": structure(cfg), "norm": norm(cfg), "positions": positions(cfg), "attention": attention(cfg),
            "FFN": ffn(cfg), "vocabulary": f"{cfg.vocab_size:,}", "context": context_label(context),
            "tied head": "yes" if cfg.tie_word_embeddings else "no"}


def architecture_table(names: list[str] | tuple[str, ...]) -> str:
    """An HTML table of presets, one row each, the cells of :func:`architecture` (escaped)."""
    cell = "padding:2px 8px;border-bottom:1px solid #ccc;text-align:left"
    head = "".join(f"<th style='{cell}'>{html.escape(c)}</th>" for c in ("model", *ARCHITECTURE_COLUMNS))
    rows = "".join("<tr>" + f"<td style='{cell}'><b>{html.escape(n)}</b></td>" + "".join(
        f"<td style='{cell}'>{html.escape(v)}</td>" for v in _architecture_row(n)) + "</tr>" for n in names)
    return (f"<table style='border-collapse:collapse;font-size:14px'><thead><tr>{head}</tr></thead>"
            f"<tbody>{rows}</tbody></table>")


@lru_cache(maxsize=None)
def _architecture_row(name: str) -> tuple[str, ...]:
    row = architecture(get_config(name))
    return tuple(row[c] for c in ARCHITECTURE_COLUMNS)


DESIGN_COLUMNS = ("structure", "norm", "norm place", "positions", "attention", "QK-Norm", "activation", "experts",
                  "tied head")


def design(cfg: ModelConfig) -> dict[str, str]:
    """The design choices only (no sizes), for the "what changed" matrix along the lineage."""
    check_config(cfg)
    return {"structure": structure(cfg), "norm": "RMSNorm" if cfg.norm == "rmsnorm" else "LayerNorm",
            "norm place": "pre" if cfg.pre_norm else "post",
            "positions": f"RoPE {_theta(cfg.rope_theta)}" if cfg.position == "rope" else cfg.position,
            "attention": attention_kind(cfg), "QK-Norm": "yes" if cfg.qk_norm else "no",
            "activation": "SwiGLU" if cfg.gated_mlp and cfg.activation == "silu" else ACTIVATION_NAMES[cfg.activation],
            "experts": (f"{cfg.num_experts}, top-{cfg.num_experts_per_tok}" + (" + shared" if cfg.num_shared_experts
                                                                            else "")) if cfg.is_moe else "dense",
            "tied head": "yes" if cfg.tie_word_embeddings else "no"}


# ----------------------------------------------------------------------------------------- published sizes

@dataclass(frozen=True)
class Published:
    """A published parameter count: ``total`` (and ``active`` for MoE) as the source gives it, and where from."""

    total: float
    active: float | None
    source: str


def published_params(cfg: ModelConfig) -> Published:
    """The count the paper, model card or report gives (``cfg.facts``); where the facts hold none, the size in
    the release name ("llama-3-8b" -> 8B, "qwen3-30b-a3b" -> 30B / 3B)."""
    f = cfg.facts
    check(bool(f), "cfg", cfg.name, "has no facts: only real presets (list_configs()) have a published size")
    papers = {"Transformer": "Transformer paper, Table 3", "BERT": "BERT paper, §3", "GPT": "GPT-2 paper, §2.3",
              "Llama 1": "Llama 1 paper, Table 2"}   # facts.md §1, §2, §3 (GPT-1 = GPT-2 small's size), §6
    for key, active, source in (("params", None, papers.get(cfg.family, "paper")),
                                ("paper_params", None, "GPT-2 paper, Table 2"),
                                ("n_params", None, "GPT-3 paper, Table 2.1"),
                                ("params_model_card", None, "model card"),
                                ("params_total_report", "params_activated_report", "Qwen3 report §2"),
                                ("params_total", "params_activated", "DeepSeek report")):
        if f.get(key):
            return Published(float(f[key]), float(f[active]) if active else None, source)
    if f.get("model_sizes"):
        return Published(float(f["model_sizes"][-1]), None, "InstructGPT paper: largest size")
    size = re.search(r"(\d+(?:\.\d+)?)b(?:-a(\d+(?:\.\d+)?)b)?$", cfg.name)
    check(size is not None, "cfg.name", cfg.name, "has no published count in its facts and no size in its name")
    return Published(float(size[1]) * 1e9, float(size[2]) * 1e9 if size[2] else None, "release name")


# ------------------------------------------------------------------------------------ serving on hardware

@dataclass(frozen=True)
class Accelerator:
    """Datasheet numbers: memory (bytes), memory bandwidth (bytes/s), dense BF16 matrix throughput (FLOP/s)."""

    name: str
    memory: float
    bandwidth: float
    flops: float
    source: str


ACCELERATORS = {a.name: a for a in (
    Accelerator("NVIDIA H100 SXM", 80e9, 3.35e12, 989e12,
                "NVIDIA H100 Tensor Core GPU datasheet: 80 GB HBM3, 3.35 TB/s, BF16 1,979 TFLOPS with sparsity "
                "(dense: half)"),
    Accelerator("NVIDIA H200 SXM", 141e9, 4.8e12, 989e12,
                "NVIDIA H200 Tensor Core GPU datasheet: 141 GB HBM3e, 4.8 TB/s, BF16 1,979 TFLOPS with sparsity "
                "(dense: half)"),
    Accelerator("NVIDIA A100 SXM 80GB", 80e9, 2.039e12, 312e12,
                "NVIDIA A100 Tensor Core GPU datasheet: 80 GB HBM2e, 2,039 GB/s, BF16 312 TFLOPS dense"),
    Accelerator("NVIDIA RTX 4090", 24e9, 1.008e12, 165.2e12,
                "NVIDIA Ada GPU architecture whitepaper, Appendix A: 24 GB GDDR6X, 1,008 GB/s, BF16 with FP32 "
                "accumulate 165.2 TFLOPS dense"),
    Accelerator("Google TPU v5e", 16e9, 0.819e12, 197e12,
                "cloud.google.com/tpu/docs/v5e: 16 GB HBM2, 819 GB/s, 197 bf16 TFLOPS per chip"),
)}


@dataclass(frozen=True)
class ServingEstimate:
    """A roofline estimate (not a measurement) for ``batch`` sequences at a context of ``seq_len`` tokens on
    ``devices`` accelerators (the fewest whose memory holds the weights and the cache, unless given).

    ``weights`` and ``kv_cache``: bytes held; ``step_bytes``: bytes one decode step reads (the weights it touches
    plus every sequence's cache); ``step_flops``: its FLOPs. A step takes the longer of bytes / bandwidth and
    FLOPs / peak, both summed over the devices (ideal tensor parallelism); ``bound`` says which. ``prefill_s``:
    one prompt of ``seq_len`` tokens, causal.
    """

    batch: int
    devices: int
    weights: float
    kv_cache: float
    step_bytes: float
    step_flops: float
    step_s: float
    bound: str
    prefill_s: float

    @property
    def tokens_per_s(self) -> float:
        """Tokens generated per second, summed over the batch."""
        return self.batch / self.step_s


def _routed_expert_params(cfg: ModelConfig) -> tuple[int, int]:
    """(parameters of one routed expert, number of MoE layers)."""
    if not cfg.is_moe:
        return 0, 0
    per_expert = (3 if cfg.gated_mlp else 2) * cfg.hidden_size * cfg.moe_intermediate_size
    return per_expert, sum(cfg.is_moe_layer(i) for i in range(cfg.num_layers))


def weights_read(cfg: ModelConfig, batch: int) -> float:
    """Parameters one decode step reads. Dense: all but the look-up tables (a look-up reads one row; a tied
    embedding is read whole as the LM head). MoE: the same, less the routed experts the batch does not touch;
    with uniform routing a layer touches ``E · (1 - (1 - k/E)^batch)`` of its E experts (k at batch 1, nearly all
    of them at large batches)."""
    n = count_params(cfg)
    lookups = n.embedding - cfg.vocab_size * cfg.hidden_size       # untied input embedding, position tables
    per_expert, layers = _routed_expert_params(cfg)
    if not layers:
        return float(n.total - lookups)
    E, k = cfg.num_experts, cfg.num_experts_per_tok
    touched = E * (1 - (1 - k / E) ** batch)
    return n.total - lookups - layers * per_expert * (E - touched)


def prefill_flops(cfg: ModelConfig, seq_len: int) -> float:
    """FLOPs of a causal prefill of ``seq_len`` tokens: token t attends to t keys (at most its layer's window)."""
    per_pair = flops_per_token(cfg, 1) - flops_per_token(cfg, 0)       # all layers, one key each
    keys = 0
    for i in range(cfg.num_layers):
        w = cfg.layer_window(i) or seq_len
        m = min(seq_len, w)
        keys += m * (m + 1) // 2 + (seq_len - m) * w                  # sum over t of min(t, w)
    return seq_len * flops_per_token(cfg, 0) + per_pair * keys / cfg.num_layers


def serving_estimate(cfg: ModelConfig, accelerator: Accelerator | str, seq_len: int, batch: int = 1,
                     bytes_per_param: float = 2, kv_bytes_per_elem: int = 2, devices: int | None = None
                     ) -> ServingEstimate:
    """Roofline estimate of decoding (Williams et al. 2009): a decode step reads the weights it touches and every
    sequence's KV cache, and does ``batch · flops_per_token`` FLOPs (MLA: the absorbed form).

    Peaks are never reached in practice (kernel efficiency, communication between devices, the activations
    and the framework's own memory), so read the result as an upper bound on speed and a lower bound on memory.
    The peak is dense BF16 whatever ``bytes_per_param`` says (fp8 kernels can be faster; this matters only when
    compute-bound), quantised weights carry no scales, and the device count has no headroom (deployments use
    groups of 2, 4 or 8).
    """
    check_config(cfg)
    check(cfg.arch not in ("bert", "transformer"), "cfg.arch", cfg.arch, "only decoder-only models are estimated "
          "(BERT does not decode; an encoder-decoder also caches cross-attention keys)")
    acc = ACCELERATORS.get(accelerator) if isinstance(accelerator, str) else accelerator
    check(isinstance(acc, Accelerator), "accelerator", accelerator, f"must be one of {sorted(ACCELERATORS)}")
    context = cfg.context_length or cfg.max_position_embeddings
    check_int(seq_len, "seq_len", minimum=1, maximum=context)   # a longer context: replace(max_position_embeddings=)
    check_int(batch, "batch", minimum=1)
    check_int(kv_bytes_per_elem, "kv_bytes_per_elem", minimum=1)
    check(isinstance(bytes_per_param, (int, float)) and not isinstance(bytes_per_param, bool) and bytes_per_param > 0,
          "bytes_per_param", bytes_per_param, "must be a positive number (2 for bf16, 1 for int8 / fp8, 0.5 for 4-bit)")
    weights = count_params(cfg).total * bytes_per_param
    kv = kv_cache_bytes(cfg, seq_len, batch, kv_bytes_per_elem)
    needed = max(1, math.ceil((weights + kv) / acc.memory))
    if devices is None:
        devices = needed
    check_int(devices, "devices", minimum=needed)
    step_bytes = weights_read(cfg, batch) * bytes_per_param + kv
    step_flops = batch * flops_per_token(cfg, seq_len, absorbed=cfg.uses_mla)
    bandwidth, peak = devices * acc.bandwidth, devices * acc.flops
    memory_s, compute_s = step_bytes / bandwidth, step_flops / peak
    return ServingEstimate(batch=batch, devices=devices, weights=weights, kv_cache=kv, step_bytes=step_bytes,
                           step_flops=step_flops, step_s=max(memory_s, compute_s),
                           bound="memory" if memory_s >= compute_s else "compute",
                           prefill_s=max(prefill_flops(cfg, seq_len) / peak, weights / bandwidth))
