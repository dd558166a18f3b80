"""Building blocks against their definitions and against Hugging Face transformers (fp32, element-wise).

Norms, RoPE (inverse frequencies of every scaling, cos/sin tables, both memory layouts, relative-position
property), sinusoidal positions, attention (MHA / GQA / MQA head mapping, KV cache, sliding window, masks,
stored weights) and the feed-forward blocks. HF comparisons skip when transformers is not installed.
"""
import math

import pytest
import torch
from hf_utils import randomize

from llmviz import build_model
from llmviz.configs import get_config
from llmviz.layers import (MLP, Attention, LayerNorm, RMSNorm, RotaryEmbedding, SwiGLU, apply_rope, causal_mask,
                           rope_inv_freq, sinusoidal_positions)

FP32 = dict(rtol=1e-6, atol=1e-7)  # inverse frequencies: same float32 formula, only rounding may differ
TOL = dict(rtol=1e-5, atol=1e-6)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def hf_import(module: str):
    return pytest.importorskip(module)


# ================================================================================================== norms

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("eps", [1e-6, 1e-5])
def test_rmsnorm_matches_llama_rmsnorm(dtype, eps):
    llama = hf_import("transformers.models.llama.modeling_llama")
    ours, ref = RMSNorm(48, eps), llama.LlamaRMSNorm(48, eps=eps)
    with torch.no_grad():
        ours.weight.copy_(1 + 0.3 * torch.randn(48, generator=gen(0)))
        ref.weight.copy_(ours.weight)
    x = (3 * torch.randn(2, 5, 48, generator=gen(1))).to(dtype)
    torch.testing.assert_close(ours.to(dtype)(x), ref.to(dtype)(x), rtol=0, atol=0)


def test_rmsnorm_definition():
    norm = RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 1.5, 16))
    x = torch.randn(3, 16, generator=gen(2), dtype=torch.float64).float()
    expected = norm.weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(norm(x), expected, **TOL)
    # no centring: adding a constant changes the output (LayerNorm would not)
    assert not torch.allclose(norm(x + 1.0), norm(x), atol=1e-3)


@pytest.mark.parametrize("eps", [1e-5, 1e-12])
def test_layernorm_matches_torch(eps):
    ours = LayerNorm(32, eps)
    with torch.no_grad():
        ours.weight.copy_(1 + 0.3 * torch.randn(32, generator=gen(3)))
        ours.bias.copy_(0.1 * torch.randn(32, generator=gen(4)))
    x = 2 + 3 * torch.randn(4, 7, 32, generator=gen(5))
    expected = torch.nn.functional.layer_norm(x, (32,), ours.weight, ours.bias, eps)
    torch.testing.assert_close(ours(x), expected, rtol=0, atol=0)
    ref = torch.nn.LayerNorm(32, eps=eps)
    ref.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)
    manual = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps)
    torch.testing.assert_close(ours(x), manual * ours.weight + ours.bias, **TOL)


# ================================================================================================== RoPE: inv_freq

def hf_rope_config(dim: int, base: float, scaling: dict | None, max_pos: int):
    """A LlamaConfig whose rotary part is ``dim`` per head (head_dim given explicitly)."""
    transformers = hf_import("transformers")
    params = {"rope_type": "default", **(scaling or {}), "rope_theta": base}
    return transformers.LlamaConfig(hidden_size=2 * dim, num_attention_heads=2, num_key_value_heads=2, head_dim=dim,
                                    max_position_embeddings=max_pos, rope_parameters=params)


def hf_inv_freq(dim, base, scaling, max_pos, seq_len=None):
    utils = hf_import("transformers.modeling_rope_utils")
    config = hf_rope_config(dim, base, scaling, max_pos)
    kind = (scaling or {}).get("rope_type", "default")
    if kind == "default":
        llama = hf_import("transformers.models.llama.modeling_llama")
        return llama.LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    return utils.ROPE_INIT_FUNCTIONS[kind](config, None, seq_len=seq_len)


YARN_QWEN3 = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32_768}
YARN_DEEPSEEK = {"rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096, "beta_fast": 32,
                 "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 8192}

# (id, dim, base, scaling, max_position_embeddings, seq_len)
INV_FREQ_CASES = [
    ("default-64-1e4", 64, 1e4, None, 2048, None),
    ("default-128-1e6", 128, 1e6, None, 40_960, None),
    ("linear-2", 64, 1e4, {"rope_type": "linear", "factor": 2.0}, 2048, None),
    ("linear-4.5", 128, 5e5, {"rope_type": "linear", "factor": 4.5}, 8192, None),
    ("dynamic-below-L", 64, 1e4, {"rope_type": "dynamic", "factor": 2.0}, 2048, 1000),
    ("dynamic-at-L", 64, 1e4, {"rope_type": "dynamic", "factor": 2.0}, 2048, 2048),
    ("dynamic-above-L", 64, 1e4, {"rope_type": "dynamic", "factor": 2.0}, 2048, 5000),
    ("dynamic-far-above-L", 128, 5e5, {"rope_type": "dynamic", "factor": 8.0}, 8192, 100_000),
    ("yarn-qwen3", 128, 1e6, YARN_QWEN3, 131_072, None),
    ("yarn-deepseek-mscale", 64, 1e4, YARN_DEEPSEEK, 163_840, None),
    ("yarn-mscale-differs", 64, 1e4, {**YARN_DEEPSEEK, "mscale": 1.0, "mscale_all_dim": 0.707}, 163_840, None),
    ("yarn-factor-none", 64, 1e4, {"rope_type": "yarn", "factor": None, "original_max_position_embeddings": 512},
     4096, None),
    ("yarn-no-truncate", 64, 1e4, {**YARN_QWEN3, "original_max_position_embeddings": 4096, "truncate": False},
     16384, None),
    ("yarn-betas", 64, 1e4, {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 2048,
                             "beta_fast": 16, "beta_slow": 2}, 16384, None),
    ("yarn-attention-factor", 64, 1e4, {**YARN_QWEN3, "attention_factor": 0.9}, 131_072, None),
    ("llama3-128-5e5", 128, 5e5, LLAMA3, 131_072, None),
    ("llama3-64-1e4", 64, 1e4, {**LLAMA3, "original_max_position_embeddings": 1024, "factor": 4.0}, 4096, None),
]


@pytest.mark.parametrize("dim, base, scaling, max_pos, seq_len", [c[1:] for c in INV_FREQ_CASES],
                         ids=[c[0] for c in INV_FREQ_CASES])
def test_rope_inv_freq_matches_hf(dim, base, scaling, max_pos, seq_len):
    expected, expected_factor = hf_inv_freq(dim, base, scaling, max_pos, seq_len)
    got, factor = rope_inv_freq(dim, base, scaling, max_pos, seq_len)
    assert got.dtype == torch.float32 and got.shape == (dim // 2,)
    torch.testing.assert_close(got, expected, **FP32)
    assert factor == pytest.approx(expected_factor, rel=1e-12)


def test_dynamic_equals_default_up_to_the_trained_length():
    base_inv, _ = rope_inv_freq(64, 1e4)
    for seq_len in (None, 1, 2048):
        inv, _ = rope_inv_freq(64, 1e4, {"rope_type": "dynamic", "factor": 2.0}, 2048, seq_len)
        torch.testing.assert_close(inv, base_inv, **FP32)
    longer, _ = rope_inv_freq(64, 1e4, {"rope_type": "dynamic", "factor": 2.0}, 2048, 4096)
    assert (longer[1:] < base_inv[1:]).all() and longer[0] == base_inv[0]  # larger base, θ_0 = 1 always


def test_yarn_qwen3_recipe_bands():
    """algorithms.md §2.5: d=128, base 1e6, L=32768, s=4 → pairs 0–23 unchanged, 40–63 ÷ 4, factor 1.1386."""
    plain, _ = rope_inv_freq(128, 1e6)
    inv, factor = rope_inv_freq(128, 1e6, YARN_QWEN3, 131_072)
    assert factor == pytest.approx(0.1 * math.log(4) + 1) and round(factor, 4) == 1.1386
    torch.testing.assert_close(inv[:24], plain[:24], **FP32)
    torch.testing.assert_close(inv[40:], plain[40:] / 4, **FP32)
    ratio = plain[24:40] / inv[24:40]
    assert ((ratio > 1) & (ratio < 4)).all() and (ratio[1:] > ratio[:-1]).all()  # ramped, monotonic


def test_yarn_deepseek_bands_and_mscale():
    plain, _ = rope_inv_freq(64, 1e4)
    inv, factor = rope_inv_freq(64, 1e4, YARN_DEEPSEEK, 163_840)
    assert factor == 1.0  # mscale == mscale_all_dim: cos/sin unscaled (DeepSeek scales the softmax instead)
    torch.testing.assert_close(inv[:10], plain[:10], **FP32)  # low = 10
    torch.testing.assert_close(inv[23:], plain[23:] / 40, **FP32)  # high = 23
    assert not torch.allclose(inv[11:22], plain[11:22]) and not torch.allclose(inv[11:22], plain[11:22] / 40)
    _, plain_yarn_factor = rope_inv_freq(64, 1e4, {k: v for k, v in YARN_DEEPSEEK.items() if "mscale" not in k}, 163_840)
    assert plain_yarn_factor == pytest.approx(0.1 * math.log(40) + 1)


def test_llama3_bands_29_29_6():
    plain, _ = rope_inv_freq(128, 5e5)
    inv, factor = rope_inv_freq(128, 5e5, LLAMA3, 131_072)
    assert factor == 1.0
    same = torch.isclose(inv, plain, rtol=1e-6, atol=0)
    divided = torch.isclose(inv, plain / 8, rtol=1e-6, atol=0)
    assert (int(same.sum()), int(divided.sum()), int((~same & ~divided).sum())) == (29, 29, 6)
    assert same[:29].all() and divided[35:].all()  # fast pairs first, slow pairs last


# ================================================================================================== RoPE: cos/sin and rotation

ROTARY_CASES = [
    ("default", 32, 1e4, None, 64),
    ("theta-1e6", 32, 1e6, None, 64),
    ("linear", 32, 1e4, {"rope_type": "linear", "factor": 2.0}, 64),
    ("dynamic", 32, 1e4, {"rope_type": "dynamic", "factor": 2.0}, 16),  # positions run far past 16
    ("yarn", 32, 1e4, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}, 64),
    ("llama3", 32, 5e5, {**LLAMA3, "original_max_position_embeddings": 16}, 128),
]


@pytest.mark.parametrize("dim, base, scaling, max_pos", [c[1:] for c in ROTARY_CASES], ids=[c[0] for c in ROTARY_CASES])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rotary_embedding_and_apply_rope_match_hf(dim, base, scaling, max_pos, dtype):
    llama = hf_import("transformers.models.llama.modeling_llama")
    config = hf_rope_config(dim, base, scaling, max_pos)
    hf_rope = llama.LlamaRotaryEmbedding(config)
    ours = RotaryEmbedding(dim, base, scaling, max_pos)
    T = 50
    positions = torch.arange(T)
    q = torch.randn(2, 3, T, dim, generator=gen(6)).to(dtype)
    k = torch.randn(2, 1, T, dim, generator=gen(7)).to(dtype)
    cos_hf, sin_hf = hf_rope(q, positions[None].expand(2, T))
    cos, sin = ours(positions, dtype)
    assert cos.dtype == dtype
    tol = TOL if dtype == torch.float32 else {}  # bf16: torch's default (one bf16 rounding step)
    torch.testing.assert_close(cos, cos_hf[0], **tol)
    torch.testing.assert_close(sin, sin_hf[0], **tol)
    q_hf, k_hf = llama.apply_rotary_pos_emb(q, k, cos_hf, sin_hf)
    torch.testing.assert_close(apply_rope(q, cos, sin), q_hf, **tol)
    torch.testing.assert_close(apply_rope(k, cos, sin), k_hf, **tol)
    # the same rotation applied by HF to our tables: the formula (not only the tables) agrees exactly
    torch.testing.assert_close(apply_rope(q, cos, sin), llama.apply_rotary_pos_emb(q, k, cos[None], sin[None])[0],
                               rtol=0, atol=0)


def test_rope_rotates_each_pair_by_position_times_theta():
    """RoFormer eq. 14/34 in the rotate-half layout: pair (x_i, x_{i+d/2}) turns by m·θ_i, θ_i = base^(-2i/d)."""
    d, base, m = 8, 100.0, 3
    x = torch.randn(d, generator=gen(8), dtype=torch.float64)
    cos, sin = RotaryEmbedding(d, base)(torch.tensor([m]), torch.float64)
    got = apply_rope(x, cos[0], sin[0])
    for i in range(d // 2):
        a = m * base ** (-2 * i / d)
        assert got[i].item() == pytest.approx(x[i].item() * math.cos(a) - x[i + d // 2].item() * math.sin(a), abs=1e-6)
        assert got[i + d // 2].item() == pytest.approx(x[i].item() * math.sin(a) + x[i + d // 2].item() * math.cos(a),
                                                      abs=1e-6)


def deinterleave(d: int) -> torch.Tensor:
    return torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])  # P = [0, 2, …, d−2, 1, 3, …, d−1]


@pytest.mark.parametrize("d", [8, 64])
def test_interleaved_equals_rotate_half_after_deinterleaving(d):
    T = 20
    x = torch.randn(2, 4, T, d, generator=gen(9))
    positions = torch.arange(T)
    cos_i, sin_i = RotaryEmbedding(d, 1e4, interleaved=True)(positions)
    cos_h, sin_h = RotaryEmbedding(d, 1e4)(positions)
    P = deinterleave(d)
    inter = apply_rope(x, cos_i, sin_i, interleaved=True)
    half = apply_rope(x, cos_h, sin_h)
    torch.testing.assert_close(inter[..., P], apply_rope(x[..., P], cos_h, sin_h), **TOL)
    assert (inter - half)[:, :, 1:].abs().max() > 0.1  # the two layouts are different functions of x


def test_interleaved_matches_complex_multiplication():
    """Meta's LLaMA / RoFormer form: (x_2i + i·x_2i+1) · e^{i·m·θ_i}."""
    d, T = 16, 12
    x = torch.randn(T, d, generator=gen(10), dtype=torch.float64)
    theta = 1e4 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    rot = torch.polar(torch.ones(T, d // 2, dtype=torch.float64), torch.arange(T, dtype=torch.float64)[:, None] * theta)
    expected = torch.view_as_real(torch.view_as_complex(x.view(T, d // 2, 2)) * rot).flatten(-2)
    cos, sin = RotaryEmbedding(d, 1e4, interleaved=True)(torch.arange(T), torch.float64)
    torch.testing.assert_close(apply_rope(x, cos, sin, interleaved=True), expected, rtol=1e-6, atol=1e-6)


def test_interleaved_matches_hf_deepseek_after_deinterleaving():
    ds = hf_import("transformers.models.deepseek_v3.modeling_deepseek_v3")
    d, T = 16, 10
    q = torch.randn(1, 2, T, d, generator=gen(11))
    cos_h, sin_h = RotaryEmbedding(d, 1e4)(torch.arange(T))
    q_hf, _ = ds.apply_rotary_pos_emb_interleave(q, q, cos_h[None], sin_h[None])  # output is de-interleaved
    cos_i, sin_i = RotaryEmbedding(d, 1e4, interleaved=True)(torch.arange(T))
    torch.testing.assert_close(apply_rope(q, cos_i, sin_i, interleaved=True)[..., deinterleave(d)], q_hf, **TOL)


RELATIVE_CASES = [
    ("default", None, False), ("interleaved", None, True),
    ("linear", {"rope_type": "linear", "factor": 4.0}, False),
    ("yarn", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256}, False),
    ("llama3", {**LLAMA3, "original_max_position_embeddings": 256}, False),
]


@pytest.mark.parametrize("scaling, interleaved", [c[1:] for c in RELATIVE_CASES], ids=[c[0] for c in RELATIVE_CASES])
def test_rope_scores_depend_only_on_relative_position(scaling, interleaved):
    d = 64
    rope = RotaryEmbedding(d, 1e4, scaling, max_position_embeddings=1024, interleaved=interleaved)
    q, k = torch.randn(d, generator=gen(12)), torch.randn(d, generator=gen(13))

    def score(m, n):
        cos, sin = rope(torch.tensor([m, n]))
        return (apply_rope(q, cos[0], sin[0], interleaved) @ apply_rope(k, cos[1], sin[1], interleaved)).item()

    for m, n in [(5, 2), (2, 5), (40, 0), (9, 9)]:
        ref = score(m, n)
        for s in (1, 7, 100, 500):
            assert score(m + s, n + s) == pytest.approx(ref, abs=2e-4), (m, n, s)  # fp32 angles
    assert abs(score(5, 2) - score(5, 3)) > 0.1  # …and it does depend on it


def test_yarn_attention_factor_scales_scores_by_its_square():
    d, scaling = 32, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
    plain_scaled = RotaryEmbedding(d, 1e4, scaling, 256)
    f = plain_scaled.attention_factor
    assert f == pytest.approx(0.1 * math.log(4) + 1)
    q, k = torch.randn(d, generator=gen(14)), torch.randn(d, generator=gen(15))
    cos, sin = plain_scaled(torch.tensor([0]))
    assert (apply_rope(q, cos[0], sin[0]) @ apply_rope(k, cos[0], sin[0])).item() == pytest.approx(
        f * f * (q @ k).item(), rel=1e-5)


# ================================================================================================== sinusoidal

@pytest.mark.parametrize("n, d", [(50, 16), (10, 512)])
def test_sinusoidal_positions_follow_vaswani_3_5(n, d):
    pe = sinusoidal_positions(n, d)
    assert pe.shape == (n, d)
    expected = torch.empty(n, d, dtype=torch.float64)
    for pos in range(n):
        for i in range(d // 2):
            expected[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / d))
            expected[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / d))
    torch.testing.assert_close(pe.double(), expected, rtol=0, atol=2e-5)


def test_sinusoidal_positions_refuse_odd_dim():
    with pytest.raises(ValueError, match=r"dim=7"):
        sinusoidal_positions(4, 7)


# ================================================================================================== attention

def reference_attention(x, attn: Attention, mask: torch.Tensor | None = None, kv_head_of=None):
    """Textbook softmax(q kᵀ / √d) v per query head in float64; ``mask`` bool [T, T] (default causal);
    ``kv_head_of(h)`` picks the KV head of query head h (default: contiguous groups, h // group)."""
    B, T, _ = x.shape
    H, Hkv, hd = attn.num_heads, attn.num_kv_heads, attn.head_dim
    group = H // Hkv
    kv_head_of = kv_head_of or (lambda h: h // group)
    x = x.double()
    q = (x @ attn.q_proj.weight.double().T).view(B, T, H, hd)
    k = (x @ attn.k_proj.weight.double().T).view(B, T, Hkv, hd)
    v = (x @ attn.v_proj.weight.double().T).view(B, T, Hkv, hd)
    mask = torch.ones(T, T, dtype=torch.bool).tril() if mask is None else mask
    heads = []
    for h in range(H):
        s = q[:, :, h] @ k[:, :, kv_head_of(h)].transpose(-1, -2) / math.sqrt(hd)
        p = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1).nan_to_num(0.0)
        heads.append(p @ v[:, :, kv_head_of(h)])
    return (torch.cat(heads, dim=-1) @ attn.o_proj.weight.double().T).float()


def make_attention(seed=0, **kwargs) -> Attention:
    torch.manual_seed(seed)
    return randomize(Attention(**{"hidden_size": 32, "num_heads": 8, "head_dim": 8, **kwargs}), seed).eval()


@pytest.mark.parametrize("n_kv", [8, 4, 2, 1])
def test_attention_matches_textbook_reference(n_kv):
    attn = make_attention(num_kv_heads=n_kv)
    x = torch.randn(2, 9, 32, generator=gen(16))
    torch.testing.assert_close(attn(x), reference_attention(x, attn), **TOL)


def _expand_kv(gqa: Attention, mapping: str) -> Attention:
    """An MHA module whose per-head K/V weights are the GQA module's, repeated per query head."""
    mha = Attention(32, gqa.num_heads, gqa.num_heads, gqa.head_dim).eval()
    n_rep = gqa.num_heads // gqa.num_kv_heads
    with torch.no_grad():
        for name in ("q_proj", "o_proj"):
            getattr(mha, name).weight.copy_(getattr(gqa, name).weight)
        for name in ("k_proj", "v_proj"):
            w = getattr(gqa, name).weight.view(gqa.num_kv_heads, gqa.head_dim, -1)
            w = w.repeat_interleave(n_rep, dim=0) if mapping == "interleave" else w.repeat(n_rep, 1, 1)
            getattr(mha, name).weight.copy_(w.reshape(gqa.num_heads * gqa.head_dim, -1))
    return mha


@pytest.mark.parametrize("n_kv", [4, 2, 1])
def test_gqa_equals_mha_with_kv_heads_repeated_in_contiguous_groups(n_kv):
    gqa = make_attention(num_kv_heads=n_kv)
    x = torch.randn(2, 7, 32, generator=gen(17))
    rope = RotaryEmbedding(8, 1e4)(torch.arange(7))
    expected = gqa(x, rope=rope)
    torch.testing.assert_close(_expand_kv(gqa, "interleave")(x, rope=rope), expected, **TOL)
    tiled = _expand_kv(gqa, "tile")(x, rope=rope)  # query head h -> kv head h % n_kv: the wrong grouping
    if n_kv > 1:
        assert (tiled - expected).abs().max() > 1e-3
    else:
        torch.testing.assert_close(tiled, expected, **TOL)  # MQA: one KV head, both mappings agree


def test_gqa_head_mapping_is_h_div_group_not_h_mod_nkv():
    attn = make_attention(num_kv_heads=2)
    x = torch.randn(1, 6, 32, generator=gen(18))
    torch.testing.assert_close(attn(x), reference_attention(x, attn, kv_head_of=lambda h: h // 4), **TOL)
    wrong = reference_attention(x, attn, kv_head_of=lambda h: h % 2)
    assert (attn(x) - wrong).abs().max() > 1e-3


@pytest.mark.parametrize("n_kv", [8, 2, 1])
@pytest.mark.parametrize("chunk", [1, 3])
def test_attention_kv_cache_equals_full_forward(n_kv, chunk):
    from llmviz.layers import KVCache
    attn = make_attention(num_kv_heads=n_kv, qk_norm=True)
    T = 10
    x = torch.randn(2, T, 32, generator=gen(19))
    rope = RotaryEmbedding(8, 1e4)
    full = attn(x, rope=rope(torch.arange(T)))
    cache, outs = KVCache(), []
    for s in range(0, T, chunk):
        e = min(s + chunk, T)
        outs.append(attn(x[:, s:e], rope=rope(torch.arange(s, e)), cache=cache))
    assert len(cache) == T and cache.k.shape == (2, n_kv, T, 8)
    torch.testing.assert_close(torch.cat(outs, dim=1), full, **TOL)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen3", "tiny-gpt2"])
@pytest.mark.parametrize("chunk", [1, 3])
def test_model_kv_cache_equals_full_forward(name, chunk):
    torch.manual_seed(0)
    model = randomize(build_model(get_config(name)), 1).eval()
    ids = torch.randint(0, model.cfg.vocab_size, (2, 11), generator=gen(20))
    with torch.no_grad():
        full = model(ids)
        cache, outs = model.new_cache(), []
        for s in range(0, ids.shape[1], chunk):
            outs.append(model(ids[:, s:s + chunk], cache=cache))
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("window", [1, 3, 5])
def test_sliding_window_equals_explicit_mask(window):
    T = 12
    windowed = make_attention(num_kv_heads=2, sliding_window=window)
    full = make_attention(num_kv_heads=2)
    full.load_state_dict(windowed.state_dict())
    x = torch.randn(2, T, 32, generator=gen(21))
    mask = causal_mask(T, T, window)
    assert mask.sum(-1).tolist() == [min(i + 1, window) for i in range(T)]  # W keys, the query included
    got = windowed(x)
    torch.testing.assert_close(got, full(x, mask=mask), **TOL)
    torch.testing.assert_close(got, reference_attention(x, full, mask), **TOL)
    assert (got - full(x)).abs().max() > 1e-3  # differs from full causal attention


@pytest.mark.parametrize("chunk", [1, 4])
def test_sliding_window_with_cache_equals_full_forward(chunk):
    from llmviz.layers import KVCache
    attn = make_attention(num_kv_heads=4, sliding_window=3)
    T = 10
    x = torch.randn(1, T, 32, generator=gen(22))
    rope = RotaryEmbedding(8, 1e4)
    full = attn(x, rope=rope(torch.arange(T)))
    cache = KVCache()
    outs = [attn(x[:, s:s + chunk], rope=rope(torch.arange(s, min(s + chunk, T))), cache=cache)
            for s in range(0, T, chunk)]
    torch.testing.assert_close(torch.cat(outs, dim=1), full, **TOL)


def _mask_with_empty_row(T: int, row: int) -> torch.Tensor:
    mask = torch.ones(T, T, dtype=torch.bool)
    mask[row] = False
    return mask


@pytest.mark.parametrize("kind", ["bool", "additive-inf"])
@pytest.mark.parametrize("keep_weights", [False, True])
@pytest.mark.parametrize("causal", [True, False])
def test_fully_masked_row_gives_zeros_not_nan(kind, keep_weights, causal):
    T, row = 6, 3
    attn = make_attention(num_kv_heads=2)
    attn.keep_weights = keep_weights
    x = torch.randn(2, T, 32, generator=gen(23))
    allowed = _mask_with_empty_row(T, row)
    mask = allowed if kind == "bool" else torch.zeros(T, T).masked_fill(~allowed, float("-inf"))
    out = attn(x, mask=mask, causal=causal)
    assert torch.isfinite(out).all()
    assert out[:, row].abs().max() == 0  # no bias in o_proj, so the empty row stays exactly zero
    effective = allowed & torch.ones(T, T, dtype=torch.bool).tril() if causal else allowed
    torch.testing.assert_close(out, reference_attention(x, attn, effective), **TOL)
    if keep_weights:
        assert torch.isfinite(attn.weights).all() and attn.weights[:, :, row].abs().max() == 0


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen3"])
def test_left_padding_rows_are_finite_and_real_tokens_unaffected(name):
    """Left padding makes the first query rows fully masked (a pad may only see earlier pads). They must stay
    finite, and, RoPE being relative, the real tokens' logits equal those of the unpadded sequence."""
    torch.manual_seed(0)
    model = randomize(build_model(get_config(name)), 2).eval()
    real = torch.randint(0, model.cfg.vocab_size, (1, 6), generator=gen(32))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), real], dim=1)
    attention_mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        out = model(padded, attention_mask=attention_mask)
        expected = model(real)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 3:], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("big", [float("-inf"), -1e9, torch.finfo(torch.float32).min])
def test_additive_mask_equals_bool_mask(big):
    T = 8
    attn = make_attention(num_kv_heads=4)
    x = torch.randn(2, T, 32, generator=gen(24))
    allowed = torch.rand(2, 1, T, T, generator=gen(25)) > 0.4
    allowed |= torch.eye(T, dtype=torch.bool)  # every row keeps itself
    additive = torch.zeros(2, 1, T, T).masked_fill(~allowed, big)
    torch.testing.assert_close(attn(x, mask=additive), attn(x, mask=allowed), **TOL)
    torch.testing.assert_close(attn(x, mask=additive, causal=False), attn(x, mask=allowed, causal=False), **TOL)


def test_padding_mask_broadcasts_over_batch_and_heads():
    T = 7
    attn = make_attention(num_kv_heads=2)
    x = torch.randn(2, T, 32, generator=gen(26))
    keep = torch.ones(2, T, dtype=torch.bool)
    keep[1, 5:] = False  # right padding in sequence 1
    out = attn(x, mask=keep[:, None, None, :])
    torch.testing.assert_close(out[0], attn(x[:1])[0], **TOL)
    torch.testing.assert_close(out[1, :5], attn(x[1:, :5])[0], **TOL)


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("n_kv", [8, 2])
def test_keep_weights_stores_probabilities_and_matches_sdpa(window, n_kv):
    T = 9
    attn = make_attention(num_kv_heads=n_kv, sliding_window=window)
    x = torch.randn(2, T, 32, generator=gen(27))
    expected = attn(x)
    attn.keep_weights = True
    got = attn(x)
    torch.testing.assert_close(got, expected, **TOL)
    w = attn.weights
    assert w.shape == (2, 8, T, T)
    allowed = causal_mask(T, T, window)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 8, T), **TOL)
    assert w.masked_select(~allowed).abs().max() == 0 and (w.masked_select(allowed) > 0).all()


def test_attention_matches_hf_llama_and_qwen3_attention():
    transformers = hf_import("transformers")
    llama = hf_import("transformers.models.llama.modeling_llama")
    qwen3 = hf_import("transformers.models.qwen3.modeling_qwen3")
    T = 9
    for family, module in (("Llama", llama.LlamaAttention), ("Qwen3", qwen3.Qwen3Attention)):
        config = getattr(transformers, f"{family}Config")(
            hidden_size=32, num_attention_heads=8, num_key_value_heads=2, head_dim=8, attention_bias=family == "Llama",
            rms_norm_eps=1e-6, rope_theta=1e4)
        config._attn_implementation = "eager"
        hf = randomize(module(config, layer_idx=0), 2).eval()
        ours = Attention(32, 8, 2, 8, bias=family == "Llama", qk_norm=family == "Qwen3").eval()
        ours.load_state_dict(hf.state_dict())
        x = torch.randn(2, T, 32, generator=gen(28))
        cos, sin = RotaryEmbedding(8, 1e4)(torch.arange(T))
        additive = torch.zeros(T, T).masked_fill(~causal_mask(T, T), torch.finfo(torch.float32).min)
        with torch.no_grad():
            expected, _ = hf(x, position_embeddings=(cos[None], sin[None]), attention_mask=additive[None, None])
            got = ours(x, rope=(cos, sin))
        torch.testing.assert_close(got, expected, **TOL)


# ================================================================================================== feed-forward

def test_swiglu_matches_llama_mlp():
    transformers = hf_import("transformers")
    llama = hf_import("transformers.models.llama.modeling_llama")
    config = transformers.LlamaConfig(hidden_size=24, num_attention_heads=4, intermediate_size=40, hidden_act="silu",
                                      mlp_bias=False)
    hf = randomize(llama.LlamaMLP(config), 3)
    ours = SwiGLU(24, 40)
    ours.load_state_dict(hf.state_dict())
    x = torch.randn(3, 5, 24, generator=gen(29))
    torch.testing.assert_close(ours(x), hf(x), rtol=0, atol=0)


def test_swiglu_gate_and_up_are_not_interchangeable():
    ours = randomize(SwiGLU(24, 40), 4)
    swapped = SwiGLU(24, 40)
    swapped.load_state_dict({"gate_proj.weight": ours.up_proj.weight, "up_proj.weight": ours.gate_proj.weight,
                             "down_proj.weight": ours.down_proj.weight})
    x = torch.randn(3, 24, generator=gen(30))
    silu = torch.nn.functional.silu
    torch.testing.assert_close(ours(x), ours.down_proj(silu(ours.gate_proj(x)) * ours.up_proj(x)), rtol=0, atol=0)
    assert (ours(x) - swapped(x)).abs().max() > 1e-3


@pytest.mark.parametrize("activation, hf_name", [("gelu_tanh", "NewGELUActivation"), ("gelu", "GELUActivation"),
                                                 ("relu", "ReLU"), ("silu", "SiLU")])
def test_mlp_matches_hf_activation(activation, hf_name):
    acts = hf_import("transformers.activations")
    act = getattr(acts, hf_name, None) or getattr(torch.nn, hf_name)
    mlp = randomize(MLP(16, 64, activation), 5)
    x = 3 * torch.randn(4, 16, generator=gen(31))
    expected = mlp.fc_out(act()(mlp.fc_in(x)))
    torch.testing.assert_close(mlp(x), expected, rtol=1e-5, atol=1e-6)


def test_gelu_tanh_is_the_gpt2_formula_not_erf():
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    tanh_form = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    mlp_t, mlp_e = MLP(1, 1, "gelu_tanh"), MLP(1, 1, "gelu")
    torch.testing.assert_close(mlp_t.act(x), tanh_form, rtol=1e-12, atol=1e-12)
    assert (mlp_t.act(x) - mlp_e.act(x)).abs().max() > 1e-4  # the erf form differs by up to ~4.7e-4
