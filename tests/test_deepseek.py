"""DeepSeek-V3 (llmviz.models.deepseek) equals HF DeepseekV3ForCausalLM on random checkpoints (q-LoRA or not, YaRN,
group-limited routing, a non-zero correction bias, shared experts); MLA's absorbed path equals the naive one; the
cache holds only latents and its bytes equal kv_cache_bytes; the V2 router equals HF's; MTP and the sequence-wise
balance loss follow their equations."""
import warnings

import pytest
import torch

from hf_utils import randomize, save_hf
from llmviz import build_model, get_config
from llmviz.generate import generate
from llmviz.hf import load_hf
from llmviz.layers.moe import DeepSeekV2Router, sequence_balance_loss
from llmviz.models.deepseek import MTP
from llmviz.stats import kv_cache_bytes

TOL = dict(atol=1e-4, rtol=1e-4)
BASE = dict(vocab_size=90, hidden_size=64, intermediate_size=96, moe_intermediate_size=24, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=4, n_shared_experts=2, n_routed_experts=8, routed_scaling_factor=2.5,
            kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8, v_head_dim=12, qk_nope_head_dim=16, n_group=4,
            topk_group=2, num_experts_per_tok=3, first_k_dense_replace=1, norm_topk_prob=True,
            max_position_embeddings=64, rms_norm_eps=1e-6)
YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 16,
        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0}
VARIANTS = {"q-lora+yarn": dict(rope_parameters=YARN), "no-q-lora": dict(q_lora_rank=None),
            "one-group": dict(n_group=1, topk_group=1, n_shared_experts=1, norm_topk_prob=False),
            "rotate-half": dict(rope_interleave=False)}


def make_hf(**overrides):
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    torch.manual_seed(0)
    hf = DeepseekV3ForCausalLM(DeepseekV3Config(**(BASE | overrides), attn_implementation="eager"))
    randomize(hf, seed=4)
    with torch.no_grad():
        for layer in hf.model.layers[BASE["first_k_dense_replace"]:]:
            layer.mlp.gate.e_score_correction_bias.normal_(0, 0.3)   # a trained bias: selection differs from gates
    return hf.eval()


@pytest.fixture(scope="module", params=list(VARIANTS))
def pair(request, tmp_path_factory):
    hf = make_hf(**VARIANTS[request.param])
    return hf, load_hf(save_hf(hf, tmp_path_factory.mktemp(request.param)))


def ids(B=2, T=20, seed=0):
    return torch.randint(0, 90, (B, T), generator=torch.Generator().manual_seed(seed))


def test_logits_equal_hf(pair):
    hf, model = pair
    x = ids()
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(x).logits, **TOL)


def test_router_choices_and_gates_equal_hf(pair):
    hf, model = pair
    x = torch.randn(30, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _, w_hf, i_hf = hf.model.layers[1].mlp.gate(x)
        _, w, i = model.blocks[1].mlp.router(x)
    order_hf, order = i_hf.sort(-1), i.sort(-1)
    assert torch.equal(order_hf.values, order.values)
    torch.testing.assert_close(w.gather(1, order.indices), w_hf.gather(1, order_hf.indices))


def test_absorbed_equals_naive_and_cached_equals_full(pair):
    _, model = pair
    x = ids(seed=2)
    with torch.no_grad():
        naive = model.set_absorb(False)(x)
        absorbed = model.set_absorb(True)(x)
        cache = model.new_cache()
        steps = torch.cat([model(x[:, t:t + 1], cache=cache) for t in range(x.shape[1])], 1)
        model.set_absorb(False)
    torch.testing.assert_close(absorbed, naive, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(steps, naive, atol=1e-5, rtol=1e-5)


def test_cache_holds_only_latents_and_matches_kv_cache_bytes(pair):
    _, model = pair
    cfg = model.cfg
    cache = model.new_cache()
    with torch.no_grad():
        model(ids(B=3, T=11), cache=cache)
    assert cache[0].k.shape == (3, 1, 11, cfg.kv_lora_rank) and cache[0].v.shape == (3, 1, 11, cfg.qk_rope_head_dim)
    assert sum(c.nbytes for c in cache) == kv_cache_bytes(cfg, seq_len=11, batch=3, bytes_per_elem=4)


def test_greedy_generation_equals_hf(pair):
    hf, model = pair
    prompt = ids(B=1, T=5, seed=3)
    with torch.no_grad():
        want = hf.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert torch.equal(generate(model, prompt, max_new_tokens=12), want)


def test_real_v3_cache_is_576_values_per_token_and_layer():
    cfg = get_config("deepseek-v3")
    assert cfg.kv_lora_rank + cfg.qk_rope_head_dim == 576
    assert kv_cache_bytes(cfg, seq_len=1, bytes_per_elem=2) == 576 * cfg.num_layers * 2 == 70_272


def test_mtp_layer_tensors_are_reported_not_dropped(tmp_path):
    from safetensors.torch import load_file, save_file

    hf = make_hf()
    directory = save_hf(hf, tmp_path / "ds")
    stored = load_file(directory / "model.safetensors")
    stored["model.layers.3.eh_proj.weight"] = torch.zeros(64, 128)    # layer num_hidden_layers = the MTP module
    stored["model.layers.3.enorm.weight"] = torch.ones(64)
    save_file(stored, directory / "model.safetensors", metadata={"format": "pt"})
    with pytest.warns(UserWarning, match="skipped 2 tensor"):
        model = load_hf(directory)
    assert model.skipped_tensors == ["model.layers.3.eh_proj.weight", "model.layers.3.enorm.weight"]
    stored["model.layers.2.unknown.weight"] = torch.zeros(2)          # anything else is still refused
    save_file(stored, directory / "model.safetensors", metadata={"format": "pt"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="unknown.weight"):
            load_hf(directory)


def test_v2_router_equals_hf():
    from transformers import DeepseekV2Config
    from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2TopkRouter

    cfg = DeepseekV2Config(hidden_size=32, n_routed_experts=12, num_experts_per_tok=3, n_group=4, topk_group=2,
                           routed_scaling_factor=16.0, topk_method="group_limited_greedy")
    hf = DeepseekV2TopkRouter(cfg)
    torch.nn.init.normal_(hf.weight, generator=torch.Generator().manual_seed(0))
    ours = DeepSeekV2Router(32, 12, 3, n_group=4, topk_group=2, routed_scaling_factor=16.0)
    ours.weight.data.copy_(hf.weight.data)
    x = torch.randn(40, 32, generator=torch.Generator().manual_seed(1))
    _, w_hf, i_hf = hf(x)
    _, w, i = ours(x)
    a, b = i_hf.sort(-1), i.sort(-1)
    assert torch.equal(a.values, b.values)
    torch.testing.assert_close(w.gather(1, b.indices), w_hf.gather(1, a.indices))
    assert not torch.allclose(w.sum(-1), torch.full((40,), 16.0))    # V2 does not renormalise the gates


def test_v2_preset_builds_with_its_router():
    cfg = get_config("deepseek-v2")
    small = cfg.replace(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=2, intermediate_size=48,
                        moe_intermediate_size=8, num_experts=16, num_experts_per_tok=2, n_group=4, topk_group=2,
                        kv_lora_rank=8, q_lora_rank=0, qk_rope_head_dim=4, qk_nope_head_dim=8, v_head_dim=8,
                        head_dim=12, vocab_size=50, max_position_embeddings=32, rope_scaling=None)
    model = build_model(small)
    assert isinstance(model.blocks[1].mlp.router, DeepSeekV2Router)
    assert model(ids(T=6) % 50).shape == (2, 6, 50)


def test_mtp_predicts_the_token_after_next_with_the_shared_head():
    cfg = get_config("tiny-deepseek", vocab_size=50)
    torch.manual_seed(0)
    model = build_model(cfg)
    mtp = MTP(model)
    x = ids(T=9) % 50
    h = model.hidden_states(x)
    logits = mtp(x, h)
    assert logits.shape == (2, 8, 50)
    assert not any(p is model.lm_head.weight for p in mtp.parameters())  # shared, not registered twice
    loss = mtp.loss(x, h, weight=0.3)
    want = 0.3 * torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 2:].flatten())
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert model.lm_head.weight.grad is not None and mtp.eh_proj.weight.grad is not None


def test_sequence_balance_loss_is_alpha_at_perfect_balance():
    E, k, T = 4, 2, 8
    logits = torch.zeros(1, T, E)                                        # s' = 1/E everywhere
    idx = torch.tensor([[0, 1], [2, 3]] * (T // 2))[None]               # every expert gets T·k/E tokens
    assert sequence_balance_loss(logits, idx, alpha=1e-4).item() == pytest.approx(1e-4)
    skew = torch.zeros(1, T, k, dtype=torch.long)
    skew[..., 1] = 1                                                     # experts 0 and 1 take everything
    assert sequence_balance_loss(logits, skew, alpha=1e-4).item() == pytest.approx(1e-4)  # s' uniform: f·P = α
    peaked = torch.tensor([5.0, 5.0, -5.0, -5.0]).expand(1, T, E)
    assert sequence_balance_loss(peaked, skew, 1.0) > sequence_balance_loss(peaked, idx, 1.0)


def test_count_params_equals_the_built_model():
    """count_params includes V3's correction bias (a stored buffer, E per MoE layer) besides the parameters."""
    from llmviz.stats import count_params

    hf_cfg = get_config("tiny-deepseek", num_layers=3, q_lora_rank=6)
    model = build_model(hf_cfg)
    stored = sum(p.numel() for p in model.parameters())
    stored += sum(b.numel() for n, b in model.named_buffers() if n.endswith("e_score_correction_bias"))
    assert count_params(hf_cfg).total == stored
