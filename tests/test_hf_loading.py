"""``llmviz.hf.load_hf``: what it refuses (each refusal names the problem), sharded and tied checkpoints, and
that llmviz itself never needs transformers nor unpickles anything."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hf_utils import save_hf

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402
from test_hf_equivalence import LLAMA, QWEN3, TOL, hf_model  # noqa: E402

from llmviz.hf import load_hf  # noqa: E402


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """One untied GQA Llama checkpoint (single model.safetensors) and its HF model."""
    hf = hf_model("Llama", LLAMA)
    return hf, save_hf(hf, tmp_path_factory.mktemp("llama"))


@pytest.fixture
def edited(llama_dir, tmp_path):
    """A writable copy of the Llama checkpoint plus a helper that rewrites its tensors."""
    directory = Path(shutil.copytree(llama_dir[1], tmp_path / "ckpt"))
    path = directory / "model.safetensors"

    def rewrite(change):
        tensors = load_file(path)
        change(tensors)
        save_file(tensors, path, metadata={"format": "pt"})
        return directory
    return directory, rewrite


def ids(T=12, seed=1):
    return torch.randint(0, LLAMA["vocab_size"], (2, T), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ refusals

def test_directory_without_config_json(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="config.json") as e:
        load_hf(tmp_path)
    assert f"path={str(tmp_path)!r}" in str(e.value)


def test_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        load_hf(tmp_path / "nowhere")


@pytest.mark.parametrize("model_type", ["mistral", "t5", None])
def test_unsupported_model_type_lists_the_supported_ones(edited, model_type):
    directory, _ = edited
    config = json.loads((directory / "config.json").read_text())
    if model_type is None:
        del config["model_type"]
    else:
        config["model_type"] = model_type
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model_type") as e:
        load_hf(directory)
    msg = str(e.value)
    assert f"model_type={model_type!r}" in msg
    for supported in ("gpt2", "llama", "qwen3"):
        assert supported in msg


def test_pickle_checkpoint_is_refused_without_unpickling(edited, monkeypatch):
    directory, _ = edited
    state = load_file(directory / "model.safetensors")
    torch.save(state, directory / "pytorch_model.bin")
    (directory / "model.safetensors").unlink()

    def no_unpickling(*args, **kwargs):
        raise AssertionError("load_hf called torch.load on a pickle checkpoint")
    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(ValueError, match="safetensors") as e:
        load_hf(directory)
    assert "model.safetensors" in str(e.value) and "pickle" in str(e.value)


def test_missing_tensor_is_named(edited):
    directory, rewrite = edited
    rewrite(lambda t: t.pop("model.layers.1.mlp.down_proj.weight"))
    with pytest.raises(ValueError, match="missing") as e:
        load_hf(directory)
    assert "blocks.1.mlp.down_proj.weight" in str(e.value)


def test_unexpected_tensor_is_named(edited):
    directory, rewrite = edited
    rewrite(lambda t: t.update({"model.layers.0.mlp.extra_proj.weight": torch.zeros(3, 3)}))
    with pytest.raises(ValueError, match="no place") as e:
        load_hf(directory)
    assert "model.layers.0.mlp.extra_proj.weight" in str(e.value)


def test_misshaped_tensor_is_named_with_both_shapes(edited):
    directory, rewrite = edited
    name = "model.layers.0.self_attn.k_proj.weight"  # [2 KV heads × 8, 64]
    rewrite(lambda t: t.update({name: torch.zeros(24, 64)}))
    with pytest.raises(ValueError, match="shape") as e:
        load_hf(directory)
    msg = str(e.value)
    assert name in msg and "(24, 64)" in msg and "(16, 64)" in msg


def test_bias_in_checkpoint_but_not_in_config_is_refused(edited):
    directory, rewrite = edited
    rewrite(lambda t: t.update({"model.layers.0.self_attn.q_proj.bias": torch.zeros(64)}))
    with pytest.raises(ValueError) as e:
        load_hf(directory)
    assert "model.layers.0.self_attn.q_proj.bias" in str(e.value)


def test_missing_shard_is_named(tmp_path):
    hf = hf_model("Llama", LLAMA)
    directory = save_hf(hf, tmp_path / "sharded", max_shard_size="20KB")
    shards = sorted(directory.glob("model-*.safetensors"))
    shards[1].unlink()
    with pytest.raises(ValueError, match="safetensors") as e:
        load_hf(directory)
    assert shards[1].name in str(e.value)


# ------------------------------------------------------------------------------------------------ what loads

def test_loaded_model_is_in_eval_mode_and_matches_hf(llama_dir):
    hf, directory = llama_dir
    model = load_hf(directory)
    assert not model.training and all(not m.training for m in model.modules())
    assert next(model.parameters()).dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(model(ids()), hf(ids()).logits, **TOL)


def test_dtype_argument_casts_the_weights(llama_dir):
    hf, directory = llama_dir
    model = load_hf(directory, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        torch.testing.assert_close(model(ids()).float(), hf(ids()).logits, rtol=0.1, atol=0.15)


@pytest.mark.parametrize("family, kwargs", [("Llama", LLAMA), ("Qwen3", dict(QWEN3, tie_word_embeddings=True)),
                                            ("GPT2", dict(n_embd=48, n_layer=2, n_head=4, vocab_size=97,
                                                          n_positions=64))])
def test_sharded_checkpoint_loads(tmp_path, family, kwargs):
    hf = hf_model(family, kwargs)
    directory = save_hf(hf, tmp_path / "sharded", max_shard_size="20KB")
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    shards = sorted(directory.glob("model-*.safetensors"))
    assert not (directory / "model.safetensors").exists()
    assert len(shards) >= 3 and set(index["weight_map"].values()) == {s.name for s in shards}
    model = load_hf(directory)
    with torch.no_grad():
        torch.testing.assert_close(model(ids()), hf(ids()).logits, **TOL)


def test_tied_checkpoint_without_lm_head_loads_and_ties(tmp_path):
    hf = hf_model("Qwen3", dict(QWEN3, tie_word_embeddings=True))
    directory = save_hf(hf, tmp_path / "tied")
    stored = load_file(directory / "model.safetensors")
    if "lm_head.weight" in stored:  # make sure the case is exercised whatever save_pretrained does
        del stored["lm_head.weight"]
        save_file(stored, directory / "model.safetensors", metadata={"format": "pt"})
    assert "lm_head.weight" not in load_file(directory / "model.safetensors")
    model = load_hf(directory)
    assert model.lm_head.weight is model.embed.weight
    torch.testing.assert_close(model.embed.weight, stored["model.embed_tokens.weight"], rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(model(ids()), hf(ids()).logits, **TOL)


def test_tied_checkpoint_that_stores_an_equal_head_loads(tmp_path):
    hf = hf_model("Qwen3", dict(QWEN3, tie_word_embeddings=True))
    directory = save_hf(hf, tmp_path / "tied")
    stored = load_file(directory / "model.safetensors")
    stored["lm_head.weight"] = stored["model.embed_tokens.weight"].clone()
    save_file(stored, directory / "model.safetensors", metadata={"format": "pt"})
    model = load_hf(directory)
    assert model.lm_head.weight is model.embed.weight


def test_tied_checkpoint_with_a_different_head_is_refused(tmp_path):
    hf = hf_model("Qwen3", dict(QWEN3, tie_word_embeddings=True))
    directory = save_hf(hf, tmp_path / "tied")
    stored = load_file(directory / "model.safetensors")
    stored["lm_head.weight"] = stored["model.embed_tokens.weight"] + 1.0
    save_file(stored, directory / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="lm_head.weight") as e:
        load_hf(directory)
    assert "tie_word_embeddings" in str(e.value)


def test_rope_buffers_some_exporters_write_are_ignored(edited, llama_dir):
    directory, rewrite = edited
    rewrite(lambda t: t.update({"model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(4)}))
    with torch.no_grad():
        torch.testing.assert_close(load_hf(directory)(ids()), llama_dir[0](ids()).logits, **TOL)


def test_llmviz_never_imports_transformers():
    code = ("import sys, llmviz, llmviz.hf, llmviz.generate, llmviz.stats, llmviz.layers, llmviz.configs; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'huggingface_hub')); "
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr


def test_config_missing_a_field_or_broken_json_is_named(tmp_path, llama_dir):
    config = json.loads((llama_dir[1] / "config.json").read_text())
    del config["num_attention_heads"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="'num_attention_heads' is missing"):
        load_hf(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_hf(tmp_path)


def test_token_ids_outside_the_vocabulary_or_float_are_named():
    from llmviz import build_model, get_config

    model = build_model(get_config("tiny-llama"))
    with pytest.raises(ValueError, match=r"input_ids=256 is not allowed"):
        model(torch.tensor([[1, 256]]))
    with pytest.raises(ValueError, match=r"input_ids\.shape=\(1, 2\)"):
        model(torch.tensor([[1.0, 2.0]]))


def test_base_model_checkpoint_without_prefix_loads(tmp_path):
    """The hub's gpt2 model.safetensors is GPT2Model's: keys like h.0.attn.c_attn.weight, wte.weight, no lm_head."""
    from test_hf_equivalence import CASES

    hf = hf_model(*CASES["gpt2"])
    directory = save_hf(hf, tmp_path / "gpt2")
    stored = load_file(directory / "model.safetensors")
    stored = {k.removeprefix("transformer."): t for k, t in stored.items() if k != "lm_head.weight"}
    save_file(stored, directory / "model.safetensors", metadata={"format": "pt"})
    x = torch.randint(0, 97, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(load_hf(directory)(x), hf(x).logits, **TOL)
