"""Size arithmetic: parameter counts equal the built models and the published totals (facts.md §11), KV-cache
bytes equal algorithms.md §3, FLOPs per token follow Kaplan et al. (2 N + attention)."""
import json
from fractions import Fraction
from importlib import resources

import pytest
import torch

from llmviz import build_model
from llmviz.configs import get_config, list_configs
from llmviz.stats import count_params, flops_per_token, kv_cache_bytes

FACTS = json.loads(resources.files("llmviz").joinpath("data/model_configs.json").read_text(encoding="utf-8"))

# ------------------------------------------------------------------------------------- count == build_model

VARIANTS = [
    ("tiny-gpt2", {}),
    ("tiny-gpt2", dict(tie_word_embeddings=False)),
    ("tiny-gpt2", dict(attention_bias=False, mlp_bias=False)),
    ("tiny-gpt2", dict(activation="relu", intermediate_size=100)),
    ("tiny-llama", {}),
    ("tiny-llama", dict(tie_word_embeddings=True)),
    ("tiny-llama", dict(attention_bias=True, mlp_bias=True)),
    ("tiny-llama", dict(num_kv_heads=4)),  # MHA
    ("tiny-llama", dict(num_kv_heads=1)),  # MQA
    ("tiny-llama", dict(head_dim=32)),  # head_dim != hidden / heads
    ("tiny-llama", dict(qk_norm=True)),
    ("tiny-llama", dict(norm="layernorm")),  # LayerNorm has a bias
    ("tiny-qwen3", {}),
    ("tiny-qwen3", dict(tie_word_embeddings=False)),
    ("tiny-qwen3", dict(num_kv_heads=1, attention_bias=True)),
    ("tiny-qwen3", dict(num_layers=3, intermediate_size=50)),
]


@pytest.mark.parametrize("name, overrides", VARIANTS, ids=[f"{n}{sorted(o.items())}" for n, o in VARIANTS])
def test_count_equals_built_model(name, overrides):
    cfg = get_config(name, **overrides)
    model = build_model(cfg)
    stored = sum(p.numel() for p in model.parameters())  # a tied Parameter is yielded once
    n = count_params(cfg)
    assert n.total == stored
    assert n.active == n.total  # dense
    tables = cfg.vocab_size * cfg.hidden_size + (cfg.max_position_embeddings * cfg.hidden_size
                                                  if cfg.position == "learned" else 0)
    head = 0 if cfg.tie_word_embeddings else cfg.vocab_size * cfg.hidden_size
    assert n.embedding == tables + head and n.non_embedding == n.total - tables - head


def test_tying_saves_exactly_one_vocab_matrix():
    tied, untied = (count_params(get_config("tiny-llama", tie_word_embeddings=t)).total for t in (True, False))
    cfg = get_config("tiny-llama")
    assert untied - tied == cfg.vocab_size * cfg.hidden_size


# ------------------------------------------------------------------------------------- published totals

def F(name, key):
    return FACTS[name][key]


# (preset, reference total, reference active or None, relative tolerance, where the number comes from)
PUBLISHED = [
    ("llama-1-7b", F("llama-1-7b", "params"), None, 0.02, "L1 Table 2"),
    ("llama-1-13b", F("llama-1-13b", "params"), None, 0.02, "L1 Table 2"),
    ("llama-1-33b", F("llama-1-33b", "params"), None, 0.02, "L1 Table 2"),
    ("llama-1-65b", F("llama-1-65b", "params"), None, 0.02, "L1 Table 2"),
    ("llama-1-7b", 6.74e9, None, 0.001, "facts §11 computed"),
    ("llama-1-13b", 13.02e9, None, 0.001, "facts §11 computed"),
    ("llama-1-33b", 32.53e9, None, 0.001, "facts §11 computed"),
    ("llama-1-65b", 65.29e9, None, 0.001, "facts §11 computed"),
    ("llama-2-70b", 70e9, None, 0.02, "Llama-2 70B"),
    ("llama-3-8b", 8.03e9, None, 0.001, "facts §11 computed"),
    ("llama-3-70b", 70.55e9, None, 0.001, "facts §11 computed"),
    ("llama-3-70b", 70e9, None, 0.02, "published 70B"),
    ("llama-3.1-405b", 405.85e9, None, 0.001, "facts §11 computed"),
    ("llama-3.1-405b", 405e9, None, 0.02, "published 405B"),
    ("gpt2", 124e6, None, 0.02, "release name 124M"),
    ("gpt2-medium", 355e6, None, 0.02, "release name 355M"),
    ("gpt2-large", 774e6, None, 0.02, "release name 774M"),
    ("gpt2-xl", 1558e6, None, 0.02, "release name 1.5B (1558M)"),
    ("gpt2-xl", 1.5e9, None, 0.04, "release name 1.5B, rounded"),
    ("gpt2", 124.4e6, None, 0.001, "facts §3 computed"),
    ("gpt2-medium", 354.8e6, None, 0.001, "facts §3 computed"),
    ("gpt2-large", 774.0e6, None, 0.001, "facts §3 computed"),
    ("gpt2-xl", 1557.6e6, None, 0.001, "facts §3 computed"),
    ("gpt-1", F("gpt-1", "params"), None, 0.02, "GPT-2 paper: ~117M"),
    ("transformer-base", F("transformer-base", "params"), None, 0.035, "AIAYN Table 3 65M (vocab ~37K: 63.1M)"),
    ("transformer-big", F("transformer-big", "params"), None, 0.02, "AIAYN Table 3 213M (vocab ~37K: 214.2M)"),
    ("transformer-base", 63.08e6, None, 0.001, "counted: shared 37K x 512 embedding + 6 + 6 layers"),
    ("transformer-big", 214.25e6, None, 0.001, "counted: shared 37K x 1024 embedding + 6 + 6 layers"),
    ("bert-base-uncased", 109.5e6, None, 0.001, "facts §11 computed"),
    ("bert-large-uncased", 335.1e6, None, 0.001, "facts §11 computed"),
    ("bert-base-uncased", F("bert-base-uncased", "params"), None, 0.02, "BERT §3 110M"),
    ("bert-large-uncased", F("bert-large-uncased", "params"), None, 0.02, "BERT §3 340M"),
    *[(n, F(n, "params_computed_from_config"), None, 0.001, "facts §7 computed")
      for n in FACTS if FACTS[n]["family"] == "Qwen3 dense"],
    *[(n, F(n, "params_model_card"), None, 0.02, "Qwen3 model card")
      for n in FACTS if FACTS[n]["family"] == "Qwen3 dense" and FACTS[n]["params_model_card"]],
    ("qwen3-30b-a3b", F("qwen3-30b-a3b", "params_total_computed"), F("qwen3-30b-a3b", "params_activated_computed"),
     0.001, "facts §8 computed"),
    ("qwen3-235b-a22b", F("qwen3-235b-a22b", "params_total_computed"),
     F("qwen3-235b-a22b", "params_activated_computed"), 0.001, "facts §8 computed"),
    ("qwen3-235b-a22b", F("qwen3-235b-a22b", "params_total_report"), F("qwen3-235b-a22b", "params_activated_report"),
     0.02, "Q3TR §2 235B / 22B"),
    ("deepseek-v2", F("deepseek-v2", "params_total"), F("deepseek-v2", "params_activated"), 0.02, "DS2 236B / 21B"),
    ("deepseek-v3", F("deepseek-v3", "params_total"), F("deepseek-v3", "params_activated"), 0.02, "DS3 671B / 37B"),
    ("deepseek-v2", 235.7e9, 21.4e9, 0.005, "facts §10 computed"),
    ("deepseek-v3", 671.0e9, 37.5e9, 0.005, "facts §10 computed"),
    ("gpt3-175b", F("gpt3-175b", "n_params"), None, 0.02, "GPT-3 Table 2.1"),
    ("gpt3-175b", 174.6e9, None, 0.001, "facts §4 cross-check"),
    ("instructgpt", F("instructgpt", "model_sizes")[-1], None, 0.02, "InstructGPT 175B = GPT-3 architecture"),
]


@pytest.mark.parametrize("name, total, active, rel, source", PUBLISHED,
                         ids=[f"{p[0]}-{p[4]}" for p in PUBLISHED])
def test_count_matches_published(name, total, active, rel, source):
    n = count_params(get_config(name))
    assert n.total == pytest.approx(total, rel=rel), f"{name}: {n.total / 1e9:.3f}B vs {source} {total / 1e9:.3f}B"
    if active is None:
        assert n.active == n.total
    else:
        assert n.active == pytest.approx(active, rel=rel), f"{name}: active {n.active / 1e9:.3f}B vs {active / 1e9}B"
        assert n.active < n.total


GPT3_SIZES = [n for n in FACTS if FACTS[n]["family"] == "GPT-3"]


@pytest.mark.parametrize("name", GPT3_SIZES)
def test_every_gpt3_size_matches_table_2_1(name):
    assert count_params(get_config(name)).total == pytest.approx(FACTS[name]["n_params"], rel=0.03)


def test_gpt3_xl_table_is_inconsistent():
    """GPT-3 Table 2.1 prints XL with 24 heads x d_head 128 = 3072 != d_model 2048, and no whole head size fits 24
    heads into 2048. Read literally it would count 1.52B, not the published 1.3B, which (like facts §4's 12·L·d²
    cross-check, 1.316B) assumes attention as wide as d_model. The preset uses GPT-Neo 1.3B's 16 heads of 128."""
    f, cfg = FACTS["gpt3-xl"], get_config("gpt3-xl")
    assert f["n_heads"] * f["d_head"] == 3072 != f["d_model"] == 2048
    assert (cfg.num_heads, cfg.head_dim) == (16, 128) and cfg.num_heads * cfg.head_dim == cfg.hidden_size
    assert count_params(cfg).total == pytest.approx(1.3e9, rel=0.02)
    literal = cfg.replace(num_heads=24, num_kv_heads=24, head_dim=128)
    assert count_params(literal).total == pytest.approx(1.517e9, rel=1e-3)


def test_qwen3_non_embedding_counts_match_facts():
    """facts §7 "non-embedding" excludes the token embedding AND an untied LM head (the Qwen model-card
    convention), as llmviz's ``non_embedding`` does."""
    for name in (n for n in FACTS if FACTS[n]["family"] == "Qwen3 dense"):
        n = count_params(get_config(name))
        assert n.non_embedding == pytest.approx(FACTS[name]["non_embedding_params_computed"], rel=2e-3), name


def test_moe_active_counts_only_routed_topk():
    cfg = get_config("qwen3-30b-a3b")
    n = count_params(cfg)
    expert = 3 * cfg.hidden_size * cfg.moe_intermediate_size
    assert n.total - n.active == cfg.num_layers * (cfg.num_experts - cfg.num_experts_per_tok) * expert
    # the dense FFN size (intermediate_size 6144) is unused: every layer is MoE
    assert count_params(cfg.replace(intermediate_size=1)).total == n.total


# ------------------------------------------------------------------------------------- KV cache bytes

KV_TABLE = [  # algorithms.md §3: bytes per token
    ("gpt2", 4, 73_728),
    ("llama-2-7b", 2, 524_288),
    ("llama-3-8b", 2, 131_072),
    ("qwen3-0.6b", 2, 114_688),
    ("deepseek-v3", 2, 70_272),
]


@pytest.mark.parametrize("name, nbytes, per_token", KV_TABLE, ids=[k[0] for k in KV_TABLE])
def test_kv_cache_bytes_per_token(name, nbytes, per_token):
    cfg = get_config(name)
    assert kv_cache_bytes(cfg, seq_len=1, batch=1, bytes_per_elem=nbytes) == per_token
    if not cfg.uses_mla:
        assert per_token == 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * nbytes


def test_kv_cache_uses_head_dim_not_hidden_over_heads():
    cfg = get_config("qwen3-0.6b")  # hidden / heads = 64, head_dim = 128
    assert kv_cache_bytes(cfg, 1) == 2 * 28 * 8 * 128 * 2 != 2 * 28 * 8 * (1024 // 16) * 2


@pytest.mark.parametrize("name", ["gpt2", "llama-3-8b", "deepseek-v3", "qwen3-235b-a22b", "tiny-llama"])
@pytest.mark.parametrize("seq_len, batch", [(0, 1), (1, 3), (4096, 1), (4096, 8), (131_072, 2)])
def test_kv_cache_is_linear_in_seq_len_and_batch(name, seq_len, batch):
    cfg = get_config(name)
    one = kv_cache_bytes(cfg, seq_len=1, batch=1, bytes_per_elem=1)
    assert kv_cache_bytes(cfg, seq_len=seq_len, batch=batch, bytes_per_elem=2) == 2 * one * seq_len * batch


def test_default_is_bf16_batch_1():
    cfg = get_config("llama-3-8b")
    assert kv_cache_bytes(cfg, seq_len=8192) == 131_072 * 8192 == 1 << 30  # 1 GiB at 8K tokens


def test_sliding_window_caps_the_cache():
    """A window of W keys includes the query itself, so the next token needs only the last W - 1 (a rolling buffer)."""
    cfg = get_config("llama-3-8b", sliding_window=1024)
    per_token = kv_cache_bytes(get_config("llama-3-8b"), 1)
    assert kv_cache_bytes(cfg, 500) == 500 * per_token  # below the window: unchanged
    assert kv_cache_bytes(cfg, 1023) == kv_cache_bytes(cfg, 4096) == kv_cache_bytes(cfg, 131_072) == 1023 * per_token
    assert kv_cache_bytes(cfg, 4096, batch=2) == 2 * 1023 * per_token


QWEN3_GQA_SAVING = {  # facts.md §13 #32: 1 - n_kv / n_q
    "qwen3-0.6b": Fraction(1, 2), "qwen3-1.7b": Fraction(1, 2), "qwen3-4b": Fraction(3, 4),
    "qwen3-8b": Fraction(3, 4), "qwen3-14b": Fraction(4, 5), "qwen3-32b": Fraction(7, 8),
    "qwen3-30b-a3b": Fraction(7, 8), "qwen3-235b-a22b": Fraction(15, 16),
}


def test_gqa_saving_table_covers_every_qwen3_preset():
    assert set(QWEN3_GQA_SAVING) == {n for n in list_configs("qwen3") if not n.startswith("tiny-")}


@pytest.mark.parametrize("name, saving", QWEN3_GQA_SAVING.items(), ids=list(QWEN3_GQA_SAVING))
def test_gqa_saving_equals_one_minus_head_ratio(name, saving):
    cfg = get_config(name)
    gqa = kv_cache_bytes(cfg, seq_len=32_768)
    mha = kv_cache_bytes(cfg.replace(num_kv_heads=cfg.num_heads), seq_len=32_768)
    assert 1 - Fraction(gqa, mha) == saving == 1 - Fraction(cfg.num_kv_heads, cfg.num_heads)


# ------------------------------------------------------------------------------------- FLOPs per token

def _dense_matmul_params(cfg):
    """Weights used in matrix products per token, from the config alone (no biases, no norms): attention
    projections, MLP (2 or 3 matrices), LM head."""
    h, L = cfg.hidden_size, cfg.num_layers
    attn = 2 * h * cfg.num_heads * cfg.head_dim + 2 * h * cfg.num_kv_heads * cfg.head_dim
    mlp = (3 if cfg.gated_mlp else 2) * h * cfg.intermediate_size
    return L * (attn + mlp) + cfg.vocab_size * h


@pytest.mark.parametrize("name", ["gpt2", "gpt2-xl", "gpt3-175b", "llama-2-7b", "llama-3-8b", "qwen3-0.6b", "qwen3-8b",
                                  "qwen3-32b"])
def test_flops_at_zero_context_are_two_per_matmul_weight(name):
    """2 FLOPs (multiply + add) per weight of every matrix a token passes through, the LM head once."""
    cfg = get_config(name)
    assert flops_per_token(cfg, 0) == pytest.approx(2 * _dense_matmul_params(cfg), rel=0.005)


@pytest.mark.parametrize("name, overrides", [("tiny-gpt2", {}), ("tiny-gpt2", dict(tie_word_embeddings=False)),
                                             ("tiny-llama", {}), ("tiny-llama", dict(tie_word_embeddings=True)),
                                             ("tiny-qwen3", {}), ("tiny-qwen3", dict(tie_word_embeddings=False))])
def test_flops_at_zero_context_count_every_linear_layer_once(name, overrides):
    """Oracle from the built model: 2 x the nn.Linear parameters (the LM head included once, tied or not)."""
    cfg = get_config(name, **overrides)
    model = build_model(cfg)
    linear = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) for p in m.parameters())
    assert flops_per_token(cfg, 0) == pytest.approx(2 * linear, rel=0.01)


def test_flops_do_not_depend_on_tying():
    """Tying shares the storage of the head with the embedding; the head's matrix product is the same."""
    for name in ("tiny-llama", "llama-3-8b", "qwen3-8b", "gpt2"):
        cfg = get_config(name)
        assert flops_per_token(cfg.replace(tie_word_embeddings=True), 0) == \
            flops_per_token(cfg.replace(tie_word_embeddings=False), 0), name


@pytest.mark.parametrize("name", ["gpt2", "gpt3-175b"])
def test_flops_match_kaplan_12_l_d2(name):
    """Kaplan et al. 2020: N ≈ 12·L·d² (non-embedding) and C_forward ≈ 2N (+ the LM head)."""
    cfg = get_config(name)
    d, L = cfg.hidden_size, cfg.num_layers
    assert flops_per_token(cfg, 0) == pytest.approx(2 * (12 * L * d * d + cfg.vocab_size * d), rel=0.01)


@pytest.mark.parametrize("name", ["qwen3-30b-a3b", "qwen3-235b-a22b"])
def test_moe_flops_use_only_the_routed_experts(name):
    cfg = get_config(name)
    h, L = cfg.hidden_size, cfg.num_layers
    attn = 2 * h * cfg.num_heads * cfg.head_dim + 2 * h * cfg.num_kv_heads * cfg.head_dim
    ffn = cfg.num_experts * h + cfg.num_experts_per_tok * 3 * h * cfg.moe_intermediate_size  # router + top-k
    assert flops_per_token(cfg, 0) == pytest.approx(2 * (L * (attn + ffn) + cfg.vocab_size * h), rel=0.005)
    assert flops_per_token(cfg, 0) < 0.2 * 2 * count_params(cfg).total


@pytest.mark.parametrize("name, d_qk, d_v", [("gpt2", 64, 64), ("llama-3-8b", 128, 128), ("qwen3-0.6b", 128, 128),
                                             ("deepseek-v3", 192, 128), ("tiny-qwen3", 32, 32)])
@pytest.mark.parametrize("seq_len", [1, 7, 1024, 32_768])
def test_flops_grow_linearly_with_context(name, d_qk, d_v, seq_len):
    cfg = get_config(name)
    growth = flops_per_token(cfg, seq_len) - flops_per_token(cfg, 0)
    assert growth == 2 * cfg.num_layers * seq_len * cfg.num_heads * (d_qk + d_v)


def test_flops_context_term_stops_at_the_window():
    cfg = get_config("tiny-llama", sliding_window=16)
    assert flops_per_token(cfg, 16) == flops_per_token(cfg, 100) > flops_per_token(cfg, 15)


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_flops_refuse_bad_seq_len(bad):
    with pytest.raises(ValueError, match="seq_len") as e:
        flops_per_token(get_config("tiny-llama"), bad)
    assert f"seq_len={bad!r}" in str(e.value)


def test_local_layers_keep_only_their_window():
    """GPT-3 / GPT-Neo alternation: only the local layers' caches and attention stop at the window."""
    cfg = get_config("gpt3-small")
    alt = cfg.replace(sliding_window=256, layer_types=("global", "local") * 6)
    every = cfg.replace(sliding_window=256)
    per_layer = 2 * cfg.num_kv_heads * cfg.head_dim * 2  # K and V, bf16
    assert kv_cache_bytes(cfg, 2048) == 12 * 2048 * per_layer
    assert kv_cache_bytes(alt, 2048) == (6 * 2048 + 6 * 255) * per_layer
    assert kv_cache_bytes(every, 2048) == 12 * 255 * per_layer
    dense_attn = flops_per_token(cfg, 2048) - flops_per_token(cfg, 0)
    alt_attn = flops_per_token(alt, 2048) - flops_per_token(alt, 0)
    assert alt_attn == dense_attn * (2048 + 256) // (2 * 2048)
