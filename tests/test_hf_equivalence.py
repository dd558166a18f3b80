"""Our models equal Hugging Face transformers on the same weights (fp32, eager attention, tolerance 1e-4).

Each case builds a tiny random HF model, gives it non-trivial weights, writes it with ``save_pretrained``
and reads it back with ``llmviz.hf.load_hf``; logits must agree on a random batch.
"""
import pytest
import torch
from hf_utils import randomize, save_hf

transformers = pytest.importorskip("transformers")
from llmviz.generate import generate  # noqa: E402
from llmviz.hf import load_hf  # noqa: E402

TOL = dict(atol=1e-4, rtol=1e-4)

LLAMA = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
             intermediate_size=96, vocab_size=97, max_position_embeddings=64, rms_norm_eps=1e-5)
QWEN3 = dict(LLAMA, head_dim=16, rms_norm_eps=1e-6, rope_theta=1_000_000.0)
LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 16}
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}

CASES = {
    "gpt2": ("GPT2", dict(n_embd=48, n_layer=2, n_head=4, vocab_size=97, n_positions=64)),
    "gpt2-untied-relu": ("GPT2", dict(n_embd=48, n_layer=2, n_head=4, vocab_size=97, n_positions=64,
                                      tie_word_embeddings=False, activation_function="relu", n_inner=80)),
    "llama-gqa-8/2": ("Llama", LLAMA),
    "llama-mha": ("Llama", dict(LLAMA, num_key_value_heads=8)),
    "llama-mqa": ("Llama", dict(LLAMA, num_key_value_heads=1)),
    "llama-head_dim-32": ("Llama", dict(LLAMA, head_dim=32)),
    "llama-tied": ("Llama", dict(LLAMA, tie_word_embeddings=True)),
    "llama-bias": ("Llama", dict(LLAMA, attention_bias=True, mlp_bias=True)),
    "llama-theta-1e6": ("Llama", dict(LLAMA, rope_theta=1_000_000.0)),
    "llama-llama3-scaling": ("Llama", dict(LLAMA, rope_theta=500_000.0, rope_scaling=LLAMA3_SCALING)),
    "llama-yarn": ("Llama", dict(LLAMA, rope_scaling=YARN)),
    "llama-linear": ("Llama", dict(LLAMA, rope_scaling={"rope_type": "linear", "factor": 2.0})),
    "llama-dynamic": ("Llama", dict(LLAMA, max_position_embeddings=16, rope_scaling={"rope_type": "dynamic", "factor": 2.0})),
    "qwen3-tied": ("Qwen3", dict(QWEN3, tie_word_embeddings=True)),
    "qwen3-untied-mqa": ("Qwen3", dict(QWEN3, num_key_value_heads=1, tie_word_embeddings=False)),
    "qwen3-yarn": ("Qwen3", dict(QWEN3, rope_scaling=YARN, tie_word_embeddings=True)),
}


def hf_model(family: str, kwargs: dict, seed: int = 0):
    config = getattr(transformers, f"{family}Config")(**kwargs)
    model = getattr(transformers, f"{family}LMHeadModel" if family == "GPT2" else f"{family}ForCausalLM")._from_config(
        config, attn_implementation="eager")
    return randomize(model, seed).eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    made = {}

    def get(case):
        if case not in made:
            family, kwargs = CASES[case]
            hf = hf_model(family, kwargs)
            made[case] = (hf, load_hf(save_hf(hf, tmp_path_factory.mktemp(case.replace("/", "_")))))
        return made[case]
    return get


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_hf(case, checkpoints):
    hf, ours = checkpoints(case)
    T = 40  # longer than the scaled models' original context (16), so every scaling is exercised
    ids = torch.randint(0, 97, (2, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(ids).logits
        got = ours(ids)
    torch.testing.assert_close(got, expected, **TOL)


@pytest.mark.parametrize("case", ["gpt2", "llama-gqa-8/2", "qwen3-tied", "llama-llama3-scaling"])
def test_greedy_generation_matches_hf(case, checkpoints):
    hf, ours = checkpoints(case)
    prompt = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = hf.generate(prompt, max_new_tokens=12, do_sample=False, attention_mask=torch.ones_like(prompt),
                               pad_token_id=0, eos_token_id=None)
    got = generate(ours, prompt, max_new_tokens=12)
    assert torch.equal(got, expected)


def test_tied_head_shares_the_embedding(checkpoints):
    _, ours = checkpoints("qwen3-tied")
    assert ours.lm_head.weight.data_ptr() == ours.embed.weight.data_ptr()
    _, untied = checkpoints("qwen3-untied-mqa")
    assert untied.lm_head.weight.data_ptr() != untied.embed.weight.data_ptr()


def test_padding_mask_matches_hf(checkpoints):
    hf, ours = checkpoints("llama-gqa-8/2")
    ids = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0  # right padding in the second sequence
    with torch.no_grad():
        expected, got = hf(ids, attention_mask=mask).logits, ours(ids, attention_mask=mask)
    torch.testing.assert_close(got[0], expected[0], **TOL)
    torch.testing.assert_close(got[1, :8], expected[1, :8], **TOL)
