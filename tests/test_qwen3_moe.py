"""Qwen3-MoE equals Hugging Face's Qwen3MoeForCausalLM on the same weights: logits, the load-balancing loss,
and greedy generation, with norm_topk_prob both ways, decoder_sparse_step and mlp_only_layers."""
import pytest
import torch
from hf_utils import randomize, save_hf

transformers = pytest.importorskip("transformers")
from llmviz import build_model, get_config  # noqa: E402
from llmviz.generate import generate  # noqa: E402
from llmviz.hf import load_hf  # noqa: E402
from llmviz.layers.moe import SparseMoE  # noqa: E402
from llmviz.stats import count_params  # noqa: E402

TOL = dict(atol=1e-4, rtol=1e-4)
BASE = dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            intermediate_size=64, moe_intermediate_size=24, num_experts=8, num_experts_per_tok=2, vocab_size=97,
            max_position_embeddings=64, rope_theta=1_000_000.0, norm_topk_prob=True)
CASES = {
    "norm_topk_prob-true": BASE,
    "norm_topk_prob-false": dict(BASE, norm_topk_prob=False),
    "sparse_step-2": dict(BASE, decoder_sparse_step=2),
    "mlp_only_layers-[0,2]": dict(BASE, mlp_only_layers=[0, 2]),
    "top-1-tied": dict(BASE, num_experts_per_tok=1, tie_word_embeddings=True),
}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    made = {}

    def get(case):
        if case not in made:
            config = transformers.Qwen3MoeConfig(**CASES[case])
            hf = randomize(transformers.Qwen3MoeForCausalLM._from_config(config, attn_implementation="eager")).eval()
            made[case] = hf, load_hf(save_hf(hf, tmp_path_factory.mktemp("moe")))
        return made[case]
    return get


@pytest.mark.parametrize("case", list(CASES))
def test_logits_and_aux_loss_match_hf(case, pairs):
    hf, ours = pairs(case)
    ids = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = hf(ids, output_router_logits=True)
        got = ours(ids)
    torch.testing.assert_close(got, out.logits, **TOL)
    torch.testing.assert_close(ours.aux_loss(), out.aux_loss, **TOL)
    moe_layers = [i for i, b in enumerate(ours.blocks) if isinstance(b.mlp, SparseMoE)]
    assert moe_layers == [i for i in range(3) if ours.cfg.is_moe_layer(i)]
    assert count_params(ours.cfg).total == sum(p.numel() for p in ours.parameters())


def test_greedy_generation_matches_hf(pairs):
    hf, ours = pairs("norm_topk_prob-true")
    prompt = torch.randint(0, 97, (1, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf.generate(prompt, max_new_tokens=10, do_sample=False, attention_mask=torch.ones_like(prompt),
                               pad_token_id=0, eos_token_id=None)
    assert torch.equal(generate(ours, prompt, 10), expected)


def test_fused_expert_tensors_load(tmp_path, pairs):
    """transformers 5 fuses experts in memory (gate_up_proj [E, 2I, H], down_proj [E, H, I]); such a file loads."""
    from safetensors.torch import save_file
    hf, ours = pairs("norm_topk_prob-true")
    tensors = {k: v.contiguous() for k, v in hf.state_dict().items()}
    assert any(k.endswith("experts.gate_up_proj") for k in tensors)
    save_file(tensors, tmp_path / "model.safetensors")
    hf.config.to_json_file(tmp_path / "config.json")
    fused = load_hf(tmp_path)
    ids = torch.randint(0, 97, (1, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(fused(ids), ours(ids), atol=0, rtol=0)


def test_real_moe_counts_and_uniform_router_gives_k():
    cfg = get_config("qwen3-30b-a3b")
    n = count_params(cfg)
    assert n.total / 1e9 == pytest.approx(30.53, abs=0.01) and n.active / 1e9 == pytest.approx(3.35, abs=0.01)
    tiny = build_model(get_config("tiny-qwen3", arch="qwen3_moe", num_experts=4, num_experts_per_tok=2,
                                  moe_intermediate_size=32)).eval()
    for b in tiny.blocks:
        torch.nn.init.zeros_(b.mlp.router.weight)  # uniform router
    tiny(torch.randint(0, 256, (2, 8)))
    torch.testing.assert_close(tiny.aux_loss(), torch.tensor(2.0))
