"""Presets agree with the verified facts file; bad input is refused with a message that names the parameter
and repeats the bad value (configs, kv_cache_bytes, generate, build_model)."""
import json
import re
from importlib import resources
from pathlib import Path

import pytest
import torch

from llmviz import build_model
from llmviz.configs import ModelConfig, get_config, list_configs
from llmviz.generate import generate
from llmviz.stats import count_params, kv_cache_bytes

PACKAGED = Path(str(resources.files("llmviz").joinpath("data/model_configs.json")))
SHARED = Path(__file__).resolve().parents[2] / "shared" / "facts" / "model_configs.json"
FACTS = json.loads(PACKAGED.read_text(encoding="utf-8"))
TINY = ["tiny-gpt2", "tiny-llama", "tiny-qwen3", "tiny-deepseek"]


# ------------------------------------------------------------------------------------------------ presets

def test_every_facts_key_is_a_preset_and_nothing_else():
    names = list_configs()
    assert [k.lower() for k in FACTS] == [n for n in names if not n.startswith("tiny-")]
    assert set(TINY) <= set(names)
    assert len(names) == len(set(names))


def test_packaged_facts_are_a_byte_identical_copy_of_shared():
    if not SHARED.exists():
        pytest.skip(f"{SHARED} not present (a learner's clone without ../shared)")
    assert PACKAGED.read_bytes() == SHARED.read_bytes(), (
        "llmviz/data/model_configs.json drifted from shared/facts/model_configs.json; copy it again")


SPOT_CHECKS = [  # (preset, attribute, expected) from facts.md sections 3, 4, 6, 7, 8, 10
    ("qwen3-0.6b", "num_heads", 16), ("qwen3-0.6b", "num_kv_heads", 8), ("qwen3-0.6b", "head_dim", 128),
    ("qwen3-0.6b", "hidden_size", 1024), ("qwen3-0.6b", "intermediate_size", 3072), ("qwen3-0.6b", "num_layers", 28),
    ("qwen3-0.6b", "tie_word_embeddings", True), ("qwen3-0.6b", "qk_norm", True), ("qwen3-0.6b", "rope_theta", 1e6),
    ("qwen3-0.6b", "context_length", 32_768), ("qwen3-8b", "tie_word_embeddings", False),
    ("qwen3-8b", "context_length", 131_072), ("qwen3-14b", "num_kv_heads", 8),
    ("qwen3-30b-a3b", "num_heads", 32), ("qwen3-30b-a3b", "num_kv_heads", 4), ("qwen3-30b-a3b", "num_experts", 128),
    ("qwen3-30b-a3b", "num_experts_per_tok", 8), ("qwen3-30b-a3b", "moe_intermediate_size", 768),
    ("qwen3-30b-a3b", "norm_topk_prob", True), ("qwen3-30b-a3b", "num_shared_experts", 0),
    ("qwen3-235b-a22b", "num_heads", 64), ("qwen3-235b-a22b", "num_kv_heads", 4), ("qwen3-235b-a22b", "num_layers", 94),
    ("llama-2-7b", "num_kv_heads", 32), ("llama-2-13b", "num_kv_heads", 40), ("llama-2-70b", "num_kv_heads", 8),
    ("llama-2-70b", "num_heads", 64), ("llama-2-70b", "intermediate_size", 28672), ("llama-2-7b", "rope_theta", 1e4),
    ("llama-2-7b", "max_position_embeddings", 4096), ("llama-1-7b", "max_position_embeddings", 2048),
    ("llama-3-8b", "rope_theta", 5e5), ("llama-3-8b", "rope_scaling", None), ("llama-3-8b", "vocab_size", 128_256),
    ("llama-3.1-8b", "max_position_embeddings", 131_072), ("llama-3.1-405b", "num_kv_heads", 8),
    ("llama-3.1-405b", "num_layers", 126), ("llama-2-7b", "tie_word_embeddings", False),
    ("deepseek-v3", "kv_lora_rank", 512), ("deepseek-v3", "q_lora_rank", 1536), ("deepseek-v3", "qk_rope_head_dim", 64),
    ("deepseek-v3", "qk_nope_head_dim", 128), ("deepseek-v3", "v_head_dim", 128), ("deepseek-v3", "num_experts", 256),
    ("deepseek-v3", "num_experts_per_tok", 8), ("deepseek-v3", "num_shared_experts", 1),
    ("deepseek-v3", "first_k_dense_replace", 3), ("deepseek-v3", "n_group", 8), ("deepseek-v3", "topk_group", 4),
    ("deepseek-v3", "routed_scaling_factor", 2.5), ("deepseek-v3", "scoring_func", "sigmoid"),
    ("deepseek-v3", "rope_interleaved", True), ("deepseek-v3", "num_layers", 61), ("deepseek-v3", "vocab_size", 129_280),
    ("deepseek-v2", "num_experts", 160), ("deepseek-v2", "num_shared_experts", 2), ("deepseek-v2", "scoring_func", "softmax"),
    ("deepseek-v2", "routed_scaling_factor", 16.0), ("deepseek-v2", "first_k_dense_replace", 1),
    ("gpt-1", "vocab_size", 40_478), ("gpt-1", "max_position_embeddings", 512), ("gpt-1", "pre_norm", False),
    ("gpt2", "vocab_size", 50_257), ("gpt2", "max_position_embeddings", 1024), ("gpt2", "activation", "gelu_tanh"),
    ("gpt2-xl", "num_heads", 25), ("gpt2-xl", "hidden_size", 1600), ("gpt3-175b", "hidden_size", 12_288),
    ("gpt3-175b", "num_layers", 96), ("gpt3-175b", "num_heads", 96), ("gpt3-175b", "head_dim", 128),
    ("gpt3-175b", "max_position_embeddings", 2048), ("gpt3-175b", "intermediate_size", 4 * 12_288),
    ("bert-base-uncased", "vocab_size", 30_522), ("bert-base-uncased", "type_vocab_size", 2),
    ("bert-base-uncased", "norm_eps", 1e-12), ("bert-large-uncased", "num_heads", 16),
    ("transformer-base", "hidden_size", 512), ("transformer-big", "num_heads", 16),
    ("transformer-big", "dropout", 0.3), ("transformer-base", "position", "sinusoidal"),
    ("transformer-base", "vocab_size", 37_000), ("transformer-big", "vocab_size", 37_000),
    ("transformer-base", "scale_embedding", True), ("transformer-base", "sinusoid_layout", "interleaved"),
]


@pytest.mark.parametrize("name, attr, expected", SPOT_CHECKS, ids=[f"{n}.{a}" for n, a, _ in SPOT_CHECKS])
def test_preset_matches_facts(name, attr, expected):
    assert getattr(get_config(name), attr) == expected


def test_gpt1_vocab_is_not_gpt2s():
    assert get_config("gpt-1").vocab_size != get_config("gpt2").vocab_size == 50_257


def test_only_llama2_70b_uses_gqa_among_llama2():
    gqa = {n: get_config(n).num_kv_heads < get_config(n).num_heads for n in list_configs("llama 2")}
    assert gqa == {"llama-2-7b": False, "llama-2-13b": False, "llama-2-70b": True}


@pytest.mark.parametrize("name", ["llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b"])
def test_llama31_uses_llama3_rope_scaling(name):
    assert get_config(name).rope_scaling == {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def test_deepseek_yarn_scaling_is_normalised_to_rope_type():
    s = get_config("deepseek-v3").rope_scaling
    assert s["rope_type"] == "yarn" and s["factor"] == 40 and s["original_max_position_embeddings"] == 4096
    assert "type" not in s
    cfg = get_config("deepseek-v3")
    assert cfg.uses_mla and cfg.rope_dim == 64
    assert [cfg.is_moe_layer(i) for i in range(5)] == [False, False, False, True, True]


# Generic cross-check: every HF-style field the facts give must reach the config unchanged.
FIELD_MAP = {"hidden_size": "hidden_size", "num_hidden_layers": "num_layers", "num_attention_heads": "num_heads",
             "num_key_value_heads": "num_kv_heads", "intermediate_size": "intermediate_size",
             "vocab_size": "vocab_size", "head_dim": "head_dim", "n_layer": "num_layers", "n_embd": "hidden_size",
             "n_head": "num_heads", "n_layers": "num_layers", "d_model": "hidden_size", "n_heads": "num_heads",
             "d_head": "head_dim", "d_ff": "intermediate_size", "N": "num_layers", "h": "num_heads"}


# GPT-3 XL's printed heads x d_head (24 x 128 = 3,072) contradict its d_model 2,048; the preset uses 16 x 128
# (test_stats.py::test_gpt3_xl_table_is_inconsistent checks both the printed and the preset values).
INCONSISTENT = {"gpt3-xl": {"n_heads", "d_head"}}


@pytest.mark.parametrize("name", [k for k in FACTS if k != "instructgpt"])
def test_every_facts_field_reaches_the_config(name):
    cfg, f = get_config(name), FACTS[name]
    checked = 0
    for key, attr in FIELD_MAP.items():
        if f.get(key) is not None and key not in INCONSISTENT.get(name, ()):
            assert getattr(cfg, attr) == f[key], f"{name}: {key}={f[key]} but cfg.{attr}={getattr(cfg, attr)}"
            checked += 1
    assert checked >= 3
    assert cfg.facts is f or cfg.facts == f


@pytest.mark.parametrize("name", TINY)
def test_tiny_presets_build_and_run(name):
    cfg = get_config(name)
    torch.manual_seed(0)
    model = build_model(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert 10_000 < n < 1_000_000
    logits = model(torch.randint(0, cfg.vocab_size, (2, 7)))
    assert logits.shape == (2, 7, cfg.vocab_size) and torch.isfinite(logits).all()


# ------------------------------------------------------------------------------------------------ lookup

def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"name='qwen3-0\.5b'") as e:
        get_config("qwen3-0.5b")
    assert "qwen3-0.6b" in str(e.value)
    with pytest.raises(ValueError) as e:
        get_config("lama-3-8b")
    assert "llama-3-8b" in str(e.value)


def test_name_must_be_a_string():
    with pytest.raises(ValueError, match=r"name=7\b"):
        get_config(7)


@pytest.mark.parametrize("spelling", ["Qwen3-0.6B", "QWEN3-0.6B", "  qwen3-0.6b ", "qwen3-0.6B"])
def test_lookup_is_case_insensitive(spelling):
    assert get_config(spelling) == get_config("qwen3-0.6b")


def test_overrides_change_only_the_named_fields():
    base = get_config("tiny-llama")
    cfg = get_config("tiny-llama", num_layers=3, tie_word_embeddings=True)
    assert (cfg.num_layers, cfg.tie_word_embeddings) == (3, True)
    assert cfg.replace(num_layers=2, tie_word_embeddings=False) == base
    assert get_config("tiny-llama").num_layers == 2  # the cached preset is untouched


def test_overrides_are_validated():
    with pytest.raises(ValueError, match=r"num_kv_heads=3"):
        get_config("tiny-llama", num_kv_heads=3)


def test_unknown_override_field_is_rejected_with_close_names():
    with pytest.raises(ValueError, match=r"field='n_heads'") as e:
        get_config("tiny-llama", n_heads=8)
    assert "no such field" in str(e.value) and "num_heads" in str(e.value)


# ------------------------------------------------------------------------------------------------ bad input

LLAMA3_OK = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
             "original_max_position_embeddings": 8192}

# (id, preset, overrides, parameter named in the message, repr of the bad value that must appear)
BAD_CONFIGS = [
    ("heads-not-divisible", "tiny-llama", dict(num_kv_heads=3), "num_kv_heads", "3"),
    ("kv-heads-zero", "tiny-llama", dict(num_kv_heads=0), "num_kv_heads", "0"),
    ("odd-rope-head-dim", "tiny-qwen3", dict(head_dim=33), "head_dim", "33"),
    ("topk-gt-experts", "qwen3-30b-a3b", dict(num_experts_per_tok=200), "num_experts_per_tok", "200"),
    ("topk-zero-with-experts", "qwen3-30b-a3b", dict(num_experts_per_tok=0), "num_experts_per_tok", "0"),
    ("sliding-window-0", "tiny-llama", dict(sliding_window=0), "sliding_window", "0"),
    ("negative-hidden", "tiny-llama", dict(hidden_size=-64), "hidden_size", "-64"),
    ("bool-layers", "tiny-llama", dict(num_layers=True), "num_layers", "True"),
    ("float-intermediate", "tiny-llama", dict(intermediate_size=171.5), "intermediate_size", "171.5"),
    ("zero-vocab", "tiny-gpt2", dict(vocab_size=0), "vocab_size", "0"),
    ("unknown-norm", "tiny-llama", dict(norm="batchnorm"), "norm", "'batchnorm'"),
    ("unknown-activation", "tiny-llama", dict(activation="swish"), "activation", "'swish'"),
    ("unknown-position", "tiny-llama", dict(position="alibi"), "position", "'alibi'"),
    ("unknown-arch", "tiny-llama", dict(arch="mamba"), "arch", "'mamba'"),
    ("rope-scaling-not-dict", "tiny-llama", dict(rope_scaling="yarn"), "rope_scaling", "'yarn'"),
    ("rope-type-unknown", "tiny-llama", dict(rope_scaling={"rope_type": "ntk", "factor": 2.0}),
     "rope_scaling['rope_type']", "'ntk'"),
    ("linear-missing-factor", "tiny-llama", dict(rope_scaling={"rope_type": "linear"}), "rope_scaling['factor']",
     "None"),
    ("factor-below-1", "tiny-llama", dict(rope_scaling={"rope_type": "linear", "factor": 0.5}),
     "rope_scaling['factor']", "0.5"),
    ("llama3-missing-keys", "tiny-llama", dict(rope_scaling={"rope_type": "llama3", "factor": 8.0}),
     "rope_scaling['low_freq_factor']", "None"),
    ("llama3-high-le-low", "tiny-llama", dict(rope_scaling={**LLAMA3_OK, "high_freq_factor": 1.0}),
     "rope_scaling['high_freq_factor']", "1.0"),
    ("rope-theta-1", "tiny-llama", dict(rope_theta=1.0), "rope_theta", "1.0"),
    ("rope-theta-negative", "tiny-llama", dict(rope_theta=-10.0), "rope_theta", "-10.0"),
    ("dropout-1", "tiny-gpt2", dict(dropout=1.0), "dropout", "1.0"),
    ("dropout-negative", "tiny-gpt2", dict(dropout=-0.1), "dropout", "-0.1"),
    ("norm-eps-0", "tiny-llama", dict(norm_eps=0.0), "norm_eps", "0.0"),
    ("bool-norm-eps", "tiny-llama", dict(norm_eps=True), "norm_eps", "True"),  # bool where a float is expected
    ("string-for-bool", "tiny-llama", dict(tie_word_embeddings="no"), "tie_word_embeddings", "'no'"),  # "no" is truthy
    ("n-group-not-dividing", "qwen3-30b-a3b", dict(n_group=3), "n_group", "3"),
    ("topk-group-gt-n-group", "deepseek-v3", dict(topk_group=9), "topk_group", "9"),
    ("mlp-only-layers-out-of-range", "qwen3-30b-a3b", dict(mlp_only_layers=(48,)), "mlp_only_layers", "(48,)"),
    ("mlp-only-layers-negative", "qwen3-30b-a3b", dict(mlp_only_layers=(-1,)), "mlp_only_layers", "(-1,)"),
    ("scoring-func", "deepseek-v3", dict(scoring_func="relu"), "scoring_func", "'relu'"),
    ("decoder-sparse-step-0", "qwen3-30b-a3b", dict(decoder_sparse_step=0), "decoder_sparse_step", "0"),
    ("dense-with-topk", "tiny-llama", dict(num_experts_per_tok=2), "num_experts_per_tok", "2"),
    ("moe-arch-without-experts", "qwen3-30b-a3b", dict(num_experts=0, num_experts_per_tok=0), "num_experts", "0"),
    ("context-length-0", "tiny-llama", dict(context_length=0), "context_length", "0"),
    ("odd-mla-rope-dim", "deepseek-v3", dict(qk_rope_head_dim=63), "qk_rope_head_dim", "63"),
]


@pytest.mark.parametrize("preset, overrides, param, value", [c[1:] for c in BAD_CONFIGS],
                         ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_refused(preset, overrides, param, value):
    with pytest.raises(ValueError, match=re.escape(param)) as e:
        get_config(preset, **overrides)
    assert f"{param}={value}" in str(e.value), str(e.value)


def test_bad_config_refused_by_the_constructor_too():
    with pytest.raises(ValueError, match=r"num_kv_heads=5") as e:
        ModelConfig(arch="llama", hidden_size=64, num_layers=1, num_heads=8, num_kv_heads=5, intermediate_size=32,
                    vocab_size=10, max_position_embeddings=16)
    assert "num_heads=8" in str(e.value)


def test_vocab_size_is_required():
    with pytest.raises(ValueError, match=r"vocab_size=None"):
        get_config("tiny-llama", vocab_size=None)


BAD_KV = [
    ("seq-len-negative", "tiny-llama", dict(seq_len=-1), "seq_len", "-1"),
    ("seq-len-float", "tiny-llama", dict(seq_len=10.5), "seq_len", "10.5"),
    ("batch-0", "tiny-llama", dict(seq_len=8, batch=0), "batch", "0"),
    ("bytes-0", "tiny-llama", dict(seq_len=8, bytes_per_elem=0), "bytes_per_elem", "0"),
    ("bert-has-no-cache", "bert-base-uncased", dict(seq_len=8), "arch", "'bert'"),
]


@pytest.mark.parametrize("preset, kwargs, param, value", [c[1:] for c in BAD_KV], ids=[c[0] for c in BAD_KV])
def test_bad_kv_cache_input_is_refused(preset, kwargs, param, value):
    with pytest.raises(ValueError, match=re.escape(param)) as e:
        kv_cache_bytes(get_config(preset), **kwargs)
    assert f"{param}={value}" in str(e.value), str(e.value)


@pytest.fixture(scope="module")
def tiny_models():
    torch.manual_seed(0)
    return {n: build_model(get_config(n)).eval() for n in ("tiny-llama", "tiny-gpt2")}


PROMPT = torch.tensor([[1, 2, 3]])
BAD_GENERATE = [
    ("temperature-negative", "tiny-llama", PROMPT, dict(max_new_tokens=2, temperature=-1), "temperature", "-1"),
    ("top-p-0", "tiny-llama", PROMPT, dict(max_new_tokens=2, temperature=1.0, top_p=0), "top_p", "0"),
    ("top-p-above-1", "tiny-llama", PROMPT, dict(max_new_tokens=2, temperature=1.0, top_p=1.5), "top_p", "1.5"),
    ("top-k-0", "tiny-llama", PROMPT, dict(max_new_tokens=2, temperature=1.0, top_k=0), "top_k", "0"),
    ("max-new-tokens-negative", "tiny-llama", PROMPT, dict(max_new_tokens=-1), "max_new_tokens", "-1"),
    ("input-1d", "tiny-llama", torch.tensor([1, 2, 3]), dict(max_new_tokens=2), "input_ids.shape", "(3,)"),
    ("input-empty", "tiny-llama", torch.zeros(1, 0, dtype=torch.long), dict(max_new_tokens=2), "input_ids.shape",
     "(1, 0)"),
    ("past-learned-positions", "tiny-gpt2", PROMPT, dict(max_new_tokens=200), "max_new_tokens", "200"),
]


@pytest.mark.parametrize("model_name, ids, kwargs, param, value", [c[1:] for c in BAD_GENERATE],
                         ids=[c[0] for c in BAD_GENERATE])
def test_bad_generate_input_is_refused(tiny_models, model_name, ids, kwargs, param, value):
    with pytest.raises(ValueError, match=re.escape(param)) as e:
        generate(tiny_models[model_name], ids, **kwargs)
    assert f"{param}={value}" in str(e.value), str(e.value)


def test_every_architecture_has_a_model():
    """Every arch a config can name has a model file (the list of missing ones has shrunk to nothing)."""
    from llmviz.configs import ARCHS
    from llmviz.models import MODELS
    assert set(MODELS) == set(ARCHS)


def test_model_refuses_1d_input(tiny_models):
    with pytest.raises(ValueError, match=re.escape("input_ids.shape=(4,)")):
        tiny_models["tiny-llama"](torch.tensor([1, 2, 3, 4]))


def test_replace_keeps_an_mha_config_mha():
    cfg = get_config("tiny-transformer").replace(num_heads=2)
    assert cfg.num_kv_heads == 2 and cfg.head_dim == get_config("tiny-transformer").head_dim
    gqa = get_config("tiny-llama").replace(num_heads=8)
    assert gqa.num_kv_heads == 2                                    # a GQA config keeps its KV heads


@pytest.mark.parametrize("call", ["count_params", "kv_cache_bytes", "flops_per_token", "build_model"])
def test_a_preset_name_instead_of_a_config_is_named(call):
    from llmviz import stats

    fn = build_model if call == "build_model" else getattr(stats, call)
    args = ("llama-3-8b",) if call in ("count_params", "build_model") else ("llama-3-8b", 16)
    with pytest.raises(ValueError, match=r"cfg='llama-3-8b' is not allowed: must be a ModelConfig; get_config"):
        fn(*args)
