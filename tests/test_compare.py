"""llmviz.compare: architecture rows computed from the configs, published sizes, the roofline serving estimate."""
import math

import pytest

from llmviz.compare import (ACCELERATORS, ARCHITECTURE_COLUMNS, DESIGN_COLUMNS, Published, architecture, design,
                            prefill_flops, published_params, serving_estimate, weights_read)
from llmviz.configs import get_config, list_configs
from llmviz.stats import count_params, flops_per_token, kv_cache_bytes

REAL = [n for n in list_configs() if not n.startswith("tiny-")]


@pytest.mark.parametrize("name", REAL)
def test_every_real_preset_has_a_row_and_a_published_size_within_7_percent(name):
    cfg = get_config(name)
    row, choices = architecture(cfg), design(cfg)
    assert tuple(row) == ARCHITECTURE_COLUMNS and tuple(choices) == DESIGN_COLUMNS
    assert all(isinstance(v, str) and v for v in (*row.values(), *choices.values()))
    published, n = published_params(cfg), count_params(cfg)
    assert n.total == pytest.approx(published.total, rel=0.07)      # GPT-2 small: paper 117M vs 124.4M counted
    if published.active is not None:
        assert n.active == pytest.approx(published.active, rel=0.15)   # DeepSeek-V2: 21B published, 21.4B counted


@pytest.mark.parametrize("name, cells", [
    ("transformer-base", {"structure": "encoder-decoder", "norm": "LayerNorm, post", "positions": "sinusoidal",
                          "attention": "MHA 8/8", "FFN": "ReLU 2,048", "vocabulary": "37,000", "tied head": "yes"}),
    ("bert-base-uncased", {"structure": "encoder", "positions": "learned (512)", "FFN": "GELU 3,072"}),
    ("gpt-1", {"norm": "LayerNorm, post", "FFN": "GELU (tanh) 3,072", "vocabulary": "40,478"}),
    ("gpt3-175b", {"norm": "LayerNorm, pre", "attention": "MHA 96/96, alternating dense / banded", "context": "2K"}),
    ("llama-2-70b", {"norm": "RMSNorm, pre", "positions": "RoPE θ=10K", "attention": "GQA 64/8",
                     "FFN": "SwiGLU 28,672", "context": "4K", "tied head": "no"}),
    ("llama-3.1-8b", {"positions": "RoPE θ=500K, llama3 ×8", "context": "128K", "vocabulary": "128,256"}),
    ("qwen3-0.6b", {"attention": "GQA 16/8, QK-Norm", "positions": "RoPE θ=1M", "context": "32K", "tied head": "yes"}),
    ("qwen3-235b-a22b", {"FFN": "SwiGLU MoE 128×1,536, top-8", "attention": "GQA 64/4, QK-Norm"}),
    ("deepseek-v3", {"attention": "MLA 128 heads, latent 512+64", "positions": "RoPE θ=10K, yarn ×40, 64 of 192 dims",
                     "FFN": "SwiGLU MoE 256×2,048, top-8 + 1 shared; 3 dense layers", "context": "128K"}),
])
def test_architecture_cells(name, cells):
    row = architecture(get_config(name))
    assert {k: row[k] for k in cells} == cells


def test_attention_kinds_and_windows():
    assert design(get_config("tiny-llama", num_kv_heads=1))["attention"] == "MQA"
    alt = get_config("gpt3-small", sliding_window=256, layer_types=("global", "local") * 6)
    assert architecture(alt)["attention"] == "MHA 12/12, window 256 in 6 of 12 layers"


def test_published_sources():
    assert published_params(get_config("gpt3-xl")).source == "GPT-3 paper, Table 2.1"
    assert published_params(get_config("transformer-big")).source == "Transformer paper, Table 3"
    assert published_params(get_config("gpt-1")) == Published(117e6, None, "GPT-2 paper, §2.3")
    assert published_params(get_config("llama-3-8b")) == published_params(get_config("llama-3-8b"))
    p = published_params(get_config("qwen3-30b-a3b"))
    assert (p.total, p.active, p.source) == (30e9, 3e9, "release name")
    assert published_params(get_config("deepseek-v3")).active == 37e9
    with pytest.raises(ValueError, match="cfg=.*facts"):
        published_params(get_config("tiny-llama"))


def test_weights_read_dense_and_moe():
    dense = get_config("llama-3-8b")
    assert weights_read(dense, 1) == weights_read(dense, 64) == count_params(dense).total - 128_256 * 4096
    moe = get_config("qwen3-30b-a3b")
    n = count_params(moe)
    lookups = n.embedding - moe.vocab_size * moe.hidden_size
    assert weights_read(moe, 1) == pytest.approx(n.active - lookups)         # batch 1: the routed top-k only
    assert weights_read(moe, 1) < weights_read(moe, 8) < weights_read(moe, 512) <= n.total - lookups
    assert weights_read(moe, 512) == pytest.approx(n.total - lookups, rel=1e-3)   # all experts touched


def test_prefill_flops_is_the_sum_over_positions():
    cfg = get_config("tiny-llama")
    assert prefill_flops(cfg, 50) == sum(flops_per_token(cfg, t) for t in range(1, 51))
    windowed = get_config("tiny-gpt2", sliding_window=8, layer_types=("global", "local"))
    assert prefill_flops(windowed, 40) == pytest.approx(sum(flops_per_token(windowed, t) for t in range(1, 41)))


def test_serving_estimate_roofline():
    cfg, h100 = get_config("llama-3-8b"), ACCELERATORS["NVIDIA H100 SXM"]
    e = serving_estimate(cfg, "NVIDIA H100 SXM", seq_len=4096, batch=1)
    assert e.devices == 1 and e.bound == "memory"
    assert e.weights == count_params(cfg).total * 2 and e.kv_cache == kv_cache_bytes(cfg, 4096)
    assert e.step_s == pytest.approx((weights_read(cfg, 1) * 2 + e.kv_cache) / h100.bandwidth)
    assert e.tokens_per_s == pytest.approx(1 / e.step_s)
    big = serving_estimate(cfg, h100, seq_len=128, batch=4096)      # short contexts, a huge batch: compute-bound
    assert big.bound == "compute" and big.devices > 1
    assert big.step_s == pytest.approx(big.step_flops / (big.devices * h100.flops))
    v3 = serving_estimate(get_config("deepseek-v3"), h100, seq_len=4096)
    assert v3.devices == math.ceil(v3.weights / h100.memory + v3.kv_cache / h100.memory)
    assert v3.step_flops == flops_per_token(get_config("deepseek-v3"), 4096, absorbed=True)


def test_gqa_mla_and_moe_raise_decode_speed_at_long_context():
    """The reason the lineage moved from MHA to GQA, MLA and MoE: bytes read per generated token."""
    at = dict(accelerator="NVIDIA H100 SXM", seq_len=32_768, batch=8, devices=2)   # MHA's cache needs two
    mha = serving_estimate(get_config("llama-2-7b", max_position_embeddings=32_768), **at)
    gqa = serving_estimate(get_config("llama-3.1-8b"), **at)
    assert gqa.kv_cache * 4 == pytest.approx(mha.kv_cache) and gqa.tokens_per_s > 2 * mha.tokens_per_s
    mla = serving_estimate(get_config("deepseek-v3"), "NVIDIA H100 SXM", seq_len=32_768, batch=8)
    assert mla.kv_cache / 61 < gqa.kv_cache / 32                     # per layer, the latent is smaller than GQA's K, V


@pytest.mark.parametrize("kwargs, name", [
    (dict(accelerator="TPU v9"), "accelerator"), (dict(seq_len=0), "seq_len"), (dict(batch=0), "batch"),
    (dict(bytes_per_param=0), "bytes_per_param"), (dict(bytes_per_param=True), "bytes_per_param"),
    (dict(devices=1), "devices"), (dict(seq_len=8193), "seq_len"), (dict(kv_bytes_per_elem=0.5), "kv_bytes_per_elem")])
def test_serving_estimate_bad_input(kwargs, name):
    args = dict(cfg=get_config("llama-3-70b"), accelerator="NVIDIA H100 SXM", seq_len=4096) | kwargs
    with pytest.raises(ValueError, match=name):
        serving_estimate(**args)


@pytest.mark.parametrize("name", ["bert-base-uncased", "transformer-base"])
def test_only_decoders_have_a_decode_estimate(name):
    with pytest.raises(ValueError, match="cfg.arch="):
        serving_estimate(get_config(name), "NVIDIA H100 SXM", 512)
