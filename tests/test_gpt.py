"""GPT-1 (HF OpenAIGPTLMHeadModel) and GPT-Neo (HF GPTNeoForCausalLM, GPT-3-style alternating dense and local
attention) read with load_hf equal HF on random checkpoints; GPT-1's "gelu" is the tanh form; the banded kernel
equals SDPA with the sliding-window mask for every length, window and head grouping."""
import json
import re

import pytest
import torch
import torch.nn.functional as F

from hf_utils import randomize, save_hf
from llmviz import build_model, get_config, masks
from llmviz.generate import generate
from llmviz.hf import load_hf
from llmviz.layers.attention import Attention, banded_attention

TOL = dict(atol=1e-4, rtol=1e-4)


def ids(B=2, T=24, vocab=80, seed=0):
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


def hf_model(cls_name, config_name, **kw):
    import transformers

    torch.manual_seed(0)
    config = getattr(transformers, config_name)(**kw, attn_implementation="eager")
    return randomize(getattr(transformers, cls_name)(config), seed=2).eval()


# ------------------------------------------------------------------------------------------ GPT-1

GPT1 = dict(vocab_size=80, n_positions=32, n_embd=48, n_layer=3, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
            attn_pdrop=0.0)


@pytest.fixture(scope="module")
def gpt1(tmp_path_factory):
    hf = hf_model("OpenAIGPTLMHeadModel", "OpenAIGPTConfig", **GPT1)
    return hf, load_hf(save_hf(hf, tmp_path_factory.mktemp("gpt1")))


def test_gpt1_is_post_ln_without_final_norm(gpt1):
    _, model = gpt1
    cfg = model.cfg
    assert (cfg.arch, cfg.pre_norm, cfg.activation) == ("gpt", False, "gelu_tanh")
    assert isinstance(model.norm, torch.nn.Identity) and type(model).__name__ == "GPT1"


def test_gpt1_logits_equal_hf(gpt1):
    hf, model = gpt1
    x = ids()
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(x).logits, **TOL)


def test_gpt1_padded_batch_equals_hf_on_real_tokens(gpt1):
    hf, model = gpt1
    x = ids(B=3, T=12, seed=1)
    mask = torch.ones_like(x)
    mask[1, 9:] = 0
    mask[2, 5:] = 0
    with torch.no_grad():
        got, want = model(x, attention_mask=mask), hf(x, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], **TOL)


def test_gpt1_gelu_is_the_tanh_approximation(gpt1):
    """HF's openai-gpt maps afn="gelu" to gelu_new (tanh): the exact erf GELU gives visibly different logits."""
    hf, model = gpt1
    x = ids(seed=2)
    exact = build_model(model.cfg.replace(activation="gelu")).eval()
    exact.load_state_dict(model.state_dict())
    with torch.no_grad():
        want = hf(x).logits
        assert not torch.allclose(exact(x), want, **TOL)
        torch.testing.assert_close(model(x), want, **TOL)


def test_gpt1_preset_has_no_residual_scaling():
    cfg = get_config("gpt-1").replace(num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=4, head_dim=16,
                                      intermediate_size=256,
                                      vocab_size=100, max_position_embeddings=16)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.blocks[0].attn.o_proj.weight.std().item() == pytest.approx(0.02, rel=0.1)
    gpt2 = build_model(cfg.replace(arch="gpt2", pre_norm=True))
    assert gpt2.blocks[0].attn.o_proj.weight.std().item() == pytest.approx(0.02 / 2, rel=0.1)  # 1/sqrt(2·2)


# ------------------------------------------------------------------------------------------ GPT-Neo

NEO = dict(vocab_size=80, max_position_embeddings=64, hidden_size=48, num_layers=4, num_heads=4,
           attention_types=[[["global", "local"], 2]], window_size=5, intermediate_size=96, embed_dropout=0.0,
           attention_dropout=0.0, resid_dropout=0.0)


@pytest.fixture(scope="module")
def neo(tmp_path_factory):
    hf = hf_model("GPTNeoForCausalLM", "GPTNeoConfig", **NEO)
    return hf, load_hf(save_hf(hf, tmp_path_factory.mktemp("neo")))


def test_gpt_neo_config_alternates_global_and_local(neo):
    _, model = neo
    cfg = model.cfg
    assert cfg.layer_types == ("global", "local", "global", "local") and cfg.sliding_window == 5
    assert [b.attn.sliding_window for b in model.blocks] == [None, 5, None, 5]
    assert cfg.attention_scale == 1.0 and all(b.attn.scale == 1.0 for b in model.blocks)  # no 1/sqrt(d)
    assert model.blocks[0].attn.q_proj.bias is None and model.blocks[0].attn.o_proj.bias is not None


@pytest.mark.parametrize("T", [3, 5, 6, 24, 40])  # shorter than, equal to and longer than the window
def test_gpt_neo_logits_equal_hf(neo, T):
    hf, model = neo
    x = ids(T=T, seed=T)
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(x).logits, **TOL)


def test_gpt_neo_greedy_generation_equals_hf(neo):
    hf, model = neo
    prompt = ids(B=1, T=4, seed=9)
    with torch.no_grad():
        want = hf.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=0)
    assert torch.equal(generate(model, prompt, max_new_tokens=20), want)


def test_gpt_neo_local_layer_window_counts_the_query_itself(neo):
    """Key j is visible from query i iff i - window < j <= i: window keys, the query included."""
    _, model = neo
    attn = model.blocks[1].attn
    x = torch.randn(1, 12, 48)
    attn.keep_weights = True
    with torch.no_grad():
        attn(x)
    attn.keep_weights = False
    seen = (attn.weights[0, 0] > 0)
    assert torch.equal(seen, masks.sliding_window(12, 5))


def test_unsupported_gpt_neo_layer_type_is_named(neo, tmp_path):
    _, _ = neo
    hf = hf_model("GPTNeoForCausalLM", "GPTNeoConfig", **NEO)
    directory = save_hf(hf, tmp_path / "neo")
    config = json.loads((directory / "config.json").read_text())
    config["attention_layers"] = ["global", "sparse", "global", "local"]
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=re.escape("layer_types=")):
        load_hf(directory)


# ------------------------------------------------------------------------------------------ banded attention

def _reference(q, k, v, window, scale=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=masks.sliding_window(q.shape[2], window), scale=scale,
                                          enable_gqa=q.shape[1] != k.shape[1])


@pytest.mark.parametrize("T", [1, 2, 7, 16, 31, 64, 100, 129])
@pytest.mark.parametrize("window", [1, 2, 5, 16, 40, 200])
def test_banded_attention_equals_masked_sdpa(T, window):
    g = torch.Generator().manual_seed(T * 1000 + window)
    q, k, v = (torch.randn(2, 4, T, 8, generator=g) for _ in range(3))
    torch.testing.assert_close(banded_attention(q, k, v, window), _reference(q, k, v, window), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("heads, kv_heads", [(4, 2), (6, 1), (4, 4)])
@pytest.mark.parametrize("block", [1, 3, 8, 64])
def test_banded_attention_gqa_block_sizes_and_scale(heads, kv_heads, block):
    g = torch.Generator().manual_seed(heads * 10 + kv_heads + block)
    T, window = 37, 6
    q = torch.randn(1, heads, T, 16, generator=g)
    k, v = (torch.randn(1, kv_heads, T, 16, generator=g) for _ in range(2))
    got = banded_attention(q, k, v, window, scale=0.3, block=block)
    torch.testing.assert_close(got, _reference(q, k, v, window, scale=0.3), atol=1e-5, rtol=1e-5)


def test_attention_module_uses_the_band_for_long_inputs_and_equals_the_mask_path():
    torch.manual_seed(0)
    attn = Attention(32, 4, num_kv_heads=2, sliding_window=8).eval()
    x = torch.randn(2, 80, 32)  # 80 >= 4 · 8: the banded path
    with torch.no_grad():
        banded = attn(x)
        masked = attn(x, mask=torch.ones(80, 80, dtype=torch.bool))  # an explicit mask takes the dense path
    torch.testing.assert_close(banded, masked, atol=1e-5, rtol=1e-5)


def test_banded_attention_gradients_equal_the_reference():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 20, 8, generator=g, requires_grad=True) for _ in range(3))
    banded_attention(q, k, v, 4).square().sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    _reference(q, k, v, 4).square().sum().backward()
    for got, t in zip(grads, (q, k, v)):
        torch.testing.assert_close(got, t.grad, atol=1e-5, rtol=1e-5)


BAD = [
    ("q-3d", lambda: banded_attention(torch.zeros(2, 5, 4), torch.zeros(2, 5, 4), torch.zeros(2, 5, 4), 2), "q.shape"),
    ("k-length", lambda: banded_attention(torch.zeros(1, 2, 5, 4), torch.zeros(1, 2, 6, 4), torch.zeros(1, 2, 6, 4), 2),
     "k.shape"),
    ("heads", lambda: banded_attention(torch.zeros(1, 3, 5, 4), torch.zeros(1, 2, 5, 4), torch.zeros(1, 2, 5, 4), 2),
     "k.shape[1]=2"),
    ("window-0", lambda: banded_attention(torch.zeros(1, 2, 5, 4), torch.zeros(1, 2, 5, 4), torch.zeros(1, 2, 5, 4), 0),
     "window=0"),
]


@pytest.mark.parametrize("call, param", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_banded_attention_bad_input_is_named(call, param):
    with pytest.raises(ValueError, match=re.escape(param)):
        call()
