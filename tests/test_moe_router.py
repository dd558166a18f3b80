"""MoE routing (llmviz.layers.moe) against Hugging Face transformers 5.x and hand-made examples."""
from __future__ import annotations

import pytest
import torch

from llmviz.configs import ModelConfig
from llmviz.layers.moe import (DeepSeekV3Router, TopKRouter, aux_free_bias_update, capacity_drops, expert_capacity,
                               expert_load, global_batch_balancing_loss, group_limited_topk, load_balancing_loss,
                               make_router, max_violation)

E, H, K, N = 16, 24, 4, 40


def _sorted(weights: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows sorted by expert id, so that routers returning the same set in another order compare equal."""
    order = indices.argsort(dim=-1)
    return weights.gather(1, order), indices.gather(1, order)


# --------------------------------------------------------------------------------------------------- Qwen3-MoE

@pytest.mark.parametrize("norm_topk_prob", [True, False])
def test_topk_router_matches_hf_qwen3_moe(norm_topk_prob):
    from transformers import Qwen3MoeConfig
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeTopKRouter

    hf_cfg = Qwen3MoeConfig(hidden_size=H, num_experts=E, num_experts_per_tok=K, norm_topk_prob=norm_topk_prob)
    hf = Qwen3MoeTopKRouter(hf_cfg)
    ours = TopKRouter(H, E, K, norm_topk_prob=norm_topk_prob)
    torch.manual_seed(0)
    with torch.no_grad():
        hf.weight.normal_(0, 0.5)
        ours.weight.copy_(hf.weight)
    x = torch.randn(2, N // 2, H)                                   # [B, T, H]: both reshape to [N, H]
    hf_logits, hf_w, hf_i = hf(x)
    logits, w, i = ours(x)
    torch.testing.assert_close(logits, hf_logits, atol=1e-6, rtol=0)
    (w_s, i_s), (hw_s, hi_s) = _sorted(w, i), _sorted(hf_w, hf_i)
    assert torch.equal(i_s, hi_s)
    torch.testing.assert_close(w_s, hw_s, atol=1e-6, rtol=0)
    assert torch.allclose(w.sum(-1), torch.ones(N)) == norm_topk_prob


def test_topk_router_from_config_and_bf16_cast_back():
    cfg = ModelConfig(arch="qwen3_moe", hidden_size=H, num_layers=1, num_heads=2, intermediate_size=32,
                      vocab_size=10, max_position_embeddings=16, num_experts=E, num_experts_per_tok=K,
                      moe_intermediate_size=8, norm_topk_prob=True)
    router = make_router(cfg)
    assert isinstance(router, TopKRouter) and (router.num_experts, router.top_k, router.norm_topk_prob) == (E, K, True)
    router = router.to(torch.bfloat16)
    logits, w, i = router(torch.randn(N, H, dtype=torch.bfloat16))
    assert logits.dtype == w.dtype == torch.bfloat16 and i.shape == (N, K)


# ------------------------------------------------------------------------------------------------- DeepSeek-V3

def _hf_deepseek(n_group, topk_group, scale, norm=True, seed=0):
    from transformers import DeepseekV3Config
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE

    hf_cfg = DeepseekV3Config(hidden_size=H, n_routed_experts=E, num_experts_per_tok=K, n_group=n_group,
                              topk_group=topk_group, routed_scaling_factor=scale, norm_topk_prob=norm,
                              moe_intermediate_size=8, n_shared_experts=1)
    moe = DeepseekV3MoE(hf_cfg)       # the block's forward calls self.gate(...) for (weights, indices)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        moe.gate.weight.copy_(torch.randn(E, H, generator=g) * 0.5)
        moe.gate.e_score_correction_bias.copy_(torch.randn(E, generator=g) * 0.3)   # non-zero bias
    ours = DeepSeekV3Router(H, E, K, n_group=n_group, topk_group=topk_group, norm_topk_prob=norm,
                            routed_scaling_factor=scale)
    ours.load_state_dict(moe.gate.state_dict())                     # same names: weight, e_score_correction_bias
    return moe, ours


@pytest.mark.parametrize("n_group,topk_group,norm", [(4, 2, True), (4, 1, True), (2, 1, False), (1, 1, True)])
def test_deepseek_router_matches_hf(n_group, topk_group, norm):
    moe, ours = _hf_deepseek(n_group, topk_group, scale=2.5, norm=norm)
    x = torch.randn(2, N // 2, H, generator=torch.Generator().manual_seed(1))
    hf_logits, hf_w, hf_i = moe.gate(x)
    logits, w, i = ours(x)
    torch.testing.assert_close(logits, hf_logits, atol=1e-6, rtol=0)
    (w_s, i_s), (hw_s, hi_s) = _sorted(w, i), _sorted(hf_w, hf_i)
    assert torch.equal(i_s, hi_s)
    torch.testing.assert_close(w_s, hw_s, atol=1e-6, rtol=0)
    if norm:
        torch.testing.assert_close(w.sum(-1), torch.full((N,), 2.5))       # renormalised, then × 2.5
    # the chosen experts lie in at most topk_group of the n_group contiguous groups
    assert int((i // (E // n_group)).sort(-1).values.diff(dim=-1).ne(0).sum(-1).max()) + 1 <= topk_group


def test_deepseek_gates_come_from_unbiased_scores():
    moe, ours = _hf_deepseek(4, 2, scale=2.5)
    x = torch.randn(N, H, generator=torch.Generator().manual_seed(2))
    logits, w, i = ours(x)
    _, hf_w, hf_i = moe.gate(x)
    biased = (logits.sigmoid() + ours.e_score_correction_bias).gather(1, i)    # the wrong (biased) gates
    wrong = biased / biased.sum(-1, keepdim=True) * 2.5
    assert not torch.allclose(_sorted(wrong, i)[0], _sorted(hf_w, hf_i)[0], atol=1e-3)
    # the bias does change which experts are chosen (so the test above is meaningful)
    plain = group_limited_topk(logits.sigmoid(), K, 4, 2)
    assert not torch.equal(plain.sort(-1).values, i.sort(-1).values)
    # and it gets no gradient
    ours.weight.requires_grad_(True)
    ours(x)[1].sum().backward()
    assert ours.weight.grad is not None and ours.e_score_correction_bias.grad is None


def test_deepseek_router_from_config():
    cfg = ModelConfig(arch="deepseek", hidden_size=H, num_layers=1, num_heads=2, intermediate_size=32,
                      vocab_size=10, max_position_embeddings=16, num_experts=E, num_experts_per_tok=K,
                      moe_intermediate_size=8, norm_topk_prob=True, scoring_func="sigmoid", n_group=4,
                      topk_group=2, routed_scaling_factor=2.5, num_shared_experts=1)
    r = make_router(cfg)
    assert isinstance(r, DeepSeekV3Router) and (r.n_group, r.topk_group, r.routed_scaling_factor) == (4, 2, 2.5)


# ------------------------------------------------------------------------------------------------ balance losses

def _layers(n_layers=3, n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, E, generator=g) * 2 for _ in range(n_layers))


@pytest.mark.parametrize("masked", [False, True])
def test_load_balancing_loss_matches_hf(masked):
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    logits = _layers()
    mask = None
    if masked:
        mask = torch.ones(2, N // 2, dtype=torch.long)
        mask[0, -5:] = 0
        mask[1, -12:] = 0
    ours = load_balancing_loss(logits, E, K, attention_mask=mask)
    hf = load_balancing_loss_func(logits, E, K, attention_mask=mask)
    torch.testing.assert_close(ours, hf, atol=1e-6, rtol=1e-6)
    if masked:   # padding is really left out
        assert not torch.allclose(ours, load_balancing_loss(logits, E, K))


def test_load_balancing_loss_is_k_at_balance_and_pooled_over_layers():
    for k in (1, 2, 4):
        assert load_balancing_loss((torch.zeros(N, E),) * 3, E, k).item() == pytest.approx(k, abs=1e-6)
    logits = _layers()
    per_layer = torch.stack([load_balancing_loss((t,), E, K) for t in logits]).mean()
    assert not torch.allclose(load_balancing_loss(logits, E, K), per_layer)     # pooled, not averaged
    # one tensor = a one-layer tuple; the loss has a gradient through P
    x = logits[0].clone().requires_grad_(True)
    load_balancing_loss(x, E, K).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_global_batch_loss():
    micro = [_layers(2, seed=s) for s in range(3)]
    # one micro-batch: identical to the micro-batch (HF) loss
    torch.testing.assert_close(global_batch_balancing_loss(micro[:1], E, K), load_balancing_loss(micro[0], E, K))
    # several domain-skewed micro-batches: f is global, so it differs from the mean of micro-batch losses
    skewed = [tuple(t + 3 * torch.eye(E)[m] for t in mb) for m, mb in enumerate(micro)]
    mean_micro = torch.stack([load_balancing_loss(mb, E, K) for mb in skewed]).mean()
    glob = global_batch_balancing_loss(skewed, E, K)
    assert abs(glob.item() - mean_micro.item()) > 1e-2
    # explicit global counts (e.g. all-reduced) give the same value as counting them here
    counts = sum(expert_load(torch.topk(t.softmax(-1), K)[1], E) for mb in skewed for t in mb)
    torch.testing.assert_close(global_batch_balancing_loss(skewed, E, K, global_counts=counts), glob)
    # uniform P gives k whatever f is
    assert global_batch_balancing_loss([torch.zeros(N, E)], E, K, global_counts=counts).item() == pytest.approx(K)


def test_global_batch_gradient_flows_only_through_p():
    x = _layers(1)[0].clone().requires_grad_(True)
    counts = torch.arange(1.0, E + 1)                        # any fixed global counts
    loss = global_batch_balancing_loss([x], E, K, global_counts=counts)
    loss.backward()
    p = x.detach().softmax(-1)
    f = counts * K / counts.sum()
    # d/dx E Σ_e f_e mean_t p_te : the Jacobian of the softmax applied to E f / N
    g = E * f / N
    expected = p * (g - (p * g).sum(-1, keepdim=True))
    torch.testing.assert_close(x.grad, expected, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------- bias update, MaxVio, capacity

def test_aux_free_bias_update_direction():
    bias = torch.zeros(4)
    load = torch.tensor([10.0, 2.0, 4.0, 8.0])               # mean 6: expert 0, 3 overloaded; 1, 2 underloaded
    new = aux_free_bias_update(bias, load, gamma=0.01)
    torch.testing.assert_close(new, torch.tensor([-0.01, 0.01, 0.01, -0.01]))
    assert torch.equal(bias, torch.zeros(4))                 # returns a new tensor
    assert torch.equal(aux_free_bias_update(bias, torch.full((4,), 5.0), 0.1), bias)   # balanced: unchanged
    assert torch.equal(aux_free_bias_update(bias, load, 0.0), bias)                     # γ = 0: frozen


def test_max_violation_examples():
    assert max_violation(torch.tensor([5.0, 5.0, 5.0, 5.0])).item() == 0.0
    assert max_violation(torch.tensor([8.0, 4.0, 4.0, 4.0])).item() == pytest.approx(0.6)   # (8-5)/5
    assert max_violation(torch.tensor([12.0, 0.0, 0.0, 0.0])).item() == pytest.approx(3.0)  # all on one: E-1
    rows = max_violation(torch.tensor([[5.0, 5.0], [3.0, 1.0]]))
    torch.testing.assert_close(rows, torch.tensor([0.0, 0.5]))


def test_capacity_drops_examples():
    # 6 tokens, top-1, 3 experts, factor 1.0 -> capacity 2; expert 0 gets tokens 0, 1, 3, 5
    idx = torch.tensor([[0], [0], [1], [0], [2], [0]])
    r = capacity_drops(idx, 3, 1.0)
    assert r.capacity == 2 and r.total == 2
    assert r.dropped.tolist() == [2.0, 0.0, 0.0]
    assert r.keep.squeeze(1).tolist() == [True, True, True, False, True, False]   # the later tokens are dropped
    # factor 1.5 -> capacity 3: only token 5 dropped; factor 2 -> nothing dropped
    assert capacity_drops(idx, 3, 1.5).keep.squeeze(1).tolist() == [True] * 5 + [False]
    assert capacity_drops(idx, 3, 2.0).total == 0
    # top-2: 4 tokens x 2 slots over 4 experts, factor 1 -> capacity 2; expert 1 gets 4 slots
    idx2 = torch.tensor([[1, 0], [1, 2], [3, 1], [1, 0]])
    r2 = capacity_drops(idx2, 4, 1.0)
    assert r2.capacity == 2 and r2.dropped.tolist() == [0.0, 2.0, 0.0, 0.0]
    assert r2.keep.tolist() == [[True, True], [True, True], [True, False], [False, True]]
    assert expert_capacity(10, 4, 1, 1.0) == 3                       # ceil(2.5)
    assert expert_capacity(8, 4, 2, 1.25) == 5                       # 1.25 * 8 * 2 / 4 = 5 exactly


def test_expert_load():
    assert expert_load(torch.tensor([[0, 2], [2, 3]]), 5).tolist() == [1.0, 0.0, 2.0, 1.0, 0.0]


# ------------------------------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("call,pattern", [
    (lambda: TopKRouter(8, 4, 5), r"top_k=5 is not allowed: .*num_experts=4"),
    (lambda: TopKRouter(8, 4, 0), r"top_k=0 is not allowed"),
    (lambda: TopKRouter(8, 0, 1), r"num_experts=0 is not allowed"),
    (lambda: TopKRouter(8, 4, 2)(torch.randn(3, 7)), r"x=\(3, 7\) is not allowed: .*hidden_size=8"),
    (lambda: DeepSeekV3Router(8, 10, 2, n_group=4), r"n_group=4 is not allowed: num_experts=10 must split"),
    (lambda: DeepSeekV3Router(8, 8, 2, n_group=8), r"n_group=8 is not allowed: each group needs >= 2"),
    (lambda: DeepSeekV3Router(8, 8, 2, n_group=4, topk_group=5), r"topk_group=5 is not allowed"),
    (lambda: DeepSeekV3Router(8, 8, 3, n_group=4, topk_group=1), r"top_k=3 is not allowed: must be <= topk_group"),
    (lambda: DeepSeekV3Router(8, 8, 2, routed_scaling_factor=0), r"routed_scaling_factor=0 is not allowed"),
    (lambda: load_balancing_loss((torch.zeros(4, 8),), 8, 9), r"top_k=9 is not allowed"),
    (lambda: load_balancing_loss((torch.zeros(4, 8),), 6, 2), r"router_logits=\(4, 8\) is not allowed"),
    (lambda: load_balancing_loss((), 6, 2), r"router_logits='tuple' is not allowed"),
    (lambda: load_balancing_loss((torch.zeros(4, 8),), 8, 2, torch.ones(5)), r"attention_mask=\(5,\) is not allowed"),
    (lambda: global_batch_balancing_loss([], 8, 2), r"micro_batches='list' is not allowed"),
    (lambda: capacity_drops(torch.tensor([[0], [1]]), 2, 0.0), r"capacity_factor=0.0 is not allowed: .*> 0"),
    (lambda: capacity_drops(torch.tensor([[0], [1]]), 2, -1), r"capacity_factor=-1 is not allowed"),
    (lambda: capacity_drops(torch.tensor([[0], [5]]), 2, 1.0), r"indices=\(0, 5\) is not allowed: .*\[0, 2\)"),
    (lambda: aux_free_bias_update(torch.zeros(4), torch.ones(4), -0.1), r"gamma=-0.1 is not allowed: .*>= 0"),
    (lambda: aux_free_bias_update(torch.zeros(4), torch.ones(3), 0.1), r"expert_load=\(3,\) is not allowed"),
    (lambda: max_violation(torch.zeros(4)), r"load=.* is not allowed: the mean load must be > 0"),
])
def test_bad_inputs_name_parameter_value_and_rule(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
