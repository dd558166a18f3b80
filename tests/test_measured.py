"""The formulas of ``llmviz.stats`` against measurement: FLOPs counted by ``torch.utils.flop_counter`` while the
models run, and KV-cache bytes read from live cache objects of llmviz and of transformers (notebook 09)."""
import pytest
import torch

from llmviz import build_model
from llmviz.configs import get_config
from llmviz.hf import non_trivial_weights
from llmviz.stats import flops_per_token, kv_cache_bytes, measure_flops

T = 12  # prompt tokens

FAMILIES = [  # (preset, overrides): every attention and FFN type llmviz builds
    ("tiny-gpt2", {}), ("tiny-gpt2", dict(tie_word_embeddings=False)), ("tiny-llama", {}),
    ("tiny-llama", dict(num_kv_heads=1)), ("tiny-llama", dict(num_kv_heads=4)), ("tiny-qwen3", {}),
    ("tiny-deepseek", {}), ("tiny-deepseek", dict(kv_lora_rank=16, q_lora_rank=12)),
    ("tiny-qwen3", dict(arch="qwen3_moe", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)),
    ("tiny-gpt2", dict(arch="gpt", pre_norm=False)),
]


def _model(name, overrides):
    cfg = get_config(name, **overrides)
    return cfg, build_model(cfg).eval()


def _ids(cfg, n, seed=0):
    return torch.randint(0, cfg.vocab_size, (1, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name, overrides", FAMILIES)
def test_prefill_flops_equal_the_flop_counter(name, overrides):
    """T tokens, each attending to all T keys (the counter, like the formula, counts every query-key pair)."""
    cfg, model = _model(name, overrides)
    measured = sum(measure_flops(lambda: model(_ids(cfg, T))).values())
    assert measured == T * flops_per_token(cfg, T)


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-transformer"])
def test_encoder_and_encoder_decoder_flops_equal_the_flop_counter(name):
    cfg, model = _model(name, {})
    ids = _ids(cfg, T)
    measured = sum(measure_flops(lambda: model(ids, ids) if cfg.arch == "transformer" else model(ids)).values())
    assert measured == T * flops_per_token(cfg, T)


@pytest.mark.parametrize("name, overrides", FAMILIES + [("tiny-llama", dict(sliding_window=5))])
def test_decode_flops_equal_the_flop_counter(name, overrides):
    """One new token after T cached ones attends to T + 1 keys (at most the window)."""
    cfg, model = _model(name, overrides)
    ids = _ids(cfg, T + 1)
    cache = model.new_cache()
    with torch.no_grad():
        model(ids[:, :T], cache=cache)
    counts = measure_flops(lambda: model(ids[:, T:], cache=cache))
    expected = flops_per_token(cfg, T + 1)
    if cfg.uses_mla:  # the naive path expands every cached latent again, one kv_b_proj product per cached token
        expected += 2 * T * cfg.num_layers * cfg.kv_lora_rank * cfg.num_heads * (cfg.qk_nope_head_dim + cfg.v_head_dim)
    assert sum(counts.values()) == expected


def test_absorbed_mla_decode_flops_equal_the_flop_counter():
    """Absorbed MLA attends over the latents: 2·kv_lora_rank + qk_rope_head_dim products per query-key pair."""
    cfg, model = _model("tiny-deepseek", dict(kv_lora_rank=16))
    model.set_absorb(True)
    ids = _ids(cfg, T + 1)
    cache = model.new_cache()
    with torch.no_grad():
        model(ids[:, :T], cache=cache)
    measured = sum(measure_flops(lambda: model(ids[:, T:], cache=cache)).values())
    assert measured == flops_per_token(cfg, T + 1, absorbed=True) != flops_per_token(cfg, T + 1)


def test_absorbed_is_refused_without_mla():
    with pytest.raises(ValueError, match="absorbed=True"):
        flops_per_token(get_config("tiny-llama"), 8, absorbed=True)


CACHES = FAMILIES + [("tiny-llama", dict(sliding_window=5)),
                     ("tiny-gpt2", dict(sliding_window=4, layer_types=("global", "local")))]


@pytest.mark.parametrize("name, overrides", CACHES)
@pytest.mark.parametrize("steps", [0, 3])
def test_live_llmviz_cache_equals_the_formula(name, overrides, steps):
    """After a prompt and ``steps`` decoded tokens the cache holds what kv_cache_bytes says (fp32: 4 bytes)."""
    cfg, model = _model(name, overrides)
    ids = _ids(cfg, T + steps)
    cache = model.new_cache()
    with torch.no_grad():
        model(ids[:, :T], cache=cache)
        for t in range(T, T + steps):
            model(ids[:, t:t + 1], cache=cache)
    assert len(cache[0]) == T + steps                                  # tokens seen: the next position
    assert sum(c.nbytes for c in cache) == kv_cache_bytes(cfg, T + steps, bytes_per_elem=4)


@pytest.mark.parametrize("window, padding_mask", [(4, False), (3, True)])
def test_rolling_cache_decodes_like_the_full_pass(window, padding_mask):
    """The window layers drop old keys, and cached decoding still equals one full forward pass; a padding mask over
    every token seen is cut to the keys the cache kept."""
    cfg = get_config("tiny-llama", sliding_window=window)
    model = non_trivial_weights(build_model(cfg)).eval()
    ids = _ids(cfg, 10)
    mask = (lambda n: torch.ones(1, n)) if padding_mask else (lambda n: None)
    cache = model.new_cache()
    with torch.no_grad():
        full = model(ids, attention_mask=mask(10))
        steps = [model(ids[:, :3], cache=cache, attention_mask=mask(3))]
        steps += [model(ids[:, t:t + 1], cache=cache, attention_mask=mask(t + 1)) for t in range(3, 10)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert all(c.k.shape[2] == window - 1 for c in cache) and len(cache[0]) == 10


# ------------------------------------------------------------------------------ transformers' cache objects

transformers = pytest.importorskip("transformers")

SMALL = dict(hidden_size=32, num_hidden_layers=2, intermediate_size=48, vocab_size=97)
HF = {  # HF config class, kwargs, the llmviz config with the same cache geometry
    "gpt2 (MHA)": ("GPT2", dict(n_embd=32, n_layer=2, n_head=4, vocab_size=97, n_positions=64),
                   get_config("tiny-gpt2", hidden_size=32, num_heads=4, head_dim=8)),
    "llama (GQA)": ("Llama", dict(SMALL, num_attention_heads=4, num_key_value_heads=2),
                    get_config("tiny-llama", hidden_size=32, num_heads=4, num_kv_heads=2, head_dim=8)),
    "qwen3 (MQA, head_dim 16)": ("Qwen3", dict(SMALL, num_attention_heads=4, num_key_value_heads=1, head_dim=16),
                                 get_config("tiny-qwen3", hidden_size=32, num_heads=4, num_kv_heads=1, head_dim=16)),
    "mistral (sliding window 8)": ("Mistral", dict(SMALL, num_attention_heads=4, num_key_value_heads=2, sliding_window=8),
                                   get_config("tiny-llama", hidden_size=32, num_heads=4, num_kv_heads=2, head_dim=8,
                                              sliding_window=8)),
    "deepseek_v3 (MLA)": ("DeepseekV3", dict(SMALL, num_attention_heads=2, num_key_value_heads=2,
                                             moe_intermediate_size=8, n_routed_experts=4,
                                             num_experts_per_tok=2, n_group=1, topk_group=1, kv_lora_rank=8,
                                             q_lora_rank=None, qk_rope_head_dim=4, qk_nope_head_dim=8, v_head_dim=8,
                                             first_k_dense_replace=1),
                          get_config("tiny-deepseek")),
}


def hf_cache_bytes(model, n):
    with torch.no_grad():
        cache = model(torch.randint(0, 97, (1, n), generator=torch.Generator().manual_seed(0)), use_cache=True
                      ).past_key_values
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)


def hf_causal_lm(family, kwargs):
    config = getattr(transformers, f"{family}Config")(**kwargs)
    cls = getattr(transformers, "GPT2LMHeadModel" if family == "GPT2" else f"{family}ForCausalLM")
    return cls._from_config(config, attn_implementation="eager").eval()


@pytest.mark.parametrize("case", list(HF))
@pytest.mark.parametrize("n", [5, 40])
def test_live_transformers_cache_equals_the_formula(case, n):
    family, kwargs, cfg = HF[case]
    assert hf_cache_bytes(hf_causal_lm(family, kwargs), n) == kv_cache_bytes(cfg, n, bytes_per_elem=4)


def test_transformers_gpt_neo_keeps_every_key_in_its_local_layers():
    """What transformers caches is a choice of each model file: GPT-Neo's local layers keep all the keys (a plain
    DynamicLayer), so its live cache is the dense size, not the rolling buffer the formula counts."""
    neo = hf_causal_lm("GPTNeo", dict(vocab_size=97, max_position_embeddings=64, hidden_size=32, num_layers=2,
                                       num_heads=4, attention_types=[[["global", "local"], 1]], window_size=8))
    cfg = get_config("tiny-gpt2", hidden_size=32, num_heads=4, head_dim=8, sliding_window=8, layer_types=("global", "local"))
    assert hf_cache_bytes(neo, 40) == kv_cache_bytes(cfg.replace(layer_types=(), sliding_window=None), 40,
                                                     bytes_per_elem=4) > kv_cache_bytes(cfg, 40, bytes_per_elem=4)
