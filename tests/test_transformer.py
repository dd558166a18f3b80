"""The 2017 encoder-decoder (llmviz.models.transformer) equals torch.nn.Transformer and HF MarianMTModel on the same
weights; cached decoding equals the full pass; greedy equals HF's generate and beam 1; bad inputs are named."""
import re

import pytest
import torch
from torch import nn

from hf_utils import randomize, save_hf
from llmviz import build_model, get_config
from llmviz.generate import beam_search, greedy_decode
from llmviz.hf import load_hf
from llmviz.layers import sinusoidal_positions

TOL = dict(atol=1e-4, rtol=1e-4)
CFG = get_config("tiny-transformer", vocab_size=50, max_position_embeddings=40, num_heads=4, num_layers=2)


def batch(seed=0, B=3, S=9, T=7, vocab=50):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, vocab, (B, S), generator=g)
    tgt = torch.randint(3, vocab, (B, T), generator=g)
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1:, S - 3:] = 0  # padded source rows
    mask[2:, S - 5:] = 0
    return src, tgt, mask


def ours(cfg=CFG, seed=0):
    torch.manual_seed(seed)
    model = randomize(build_model(cfg), seed=seed).eval()
    with torch.no_grad():
        model.final_logits_bias.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed))
    return model


# ------------------------------------------------------------------------------------------ torch.nn.Transformer

def _copy_attention(ref: nn.MultiheadAttention, attn) -> None:
    ref.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
    ref.in_proj_bias.copy_(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
    ref.out_proj.weight.copy_(attn.o_proj.weight)
    ref.out_proj.bias.copy_(attn.o_proj.bias)


def _copy_linear_norm(ref_lin1, ref_lin2, mlp):
    for r, m in ((ref_lin1, mlp.fc_in), (ref_lin2, mlp.fc_out)):
        r.weight.copy_(m.weight)
        r.bias.copy_(m.bias)


def _copy_norm(ref, ours_norm):
    ref.weight.copy_(ours_norm.weight)
    ref.bias.copy_(ours_norm.bias)


def torch_reference(model, pre_norm: bool) -> nn.Transformer:
    """``nn.Transformer`` with our weights. Post-LN: stacks built with ``norm=None`` (the paper has no final
    LayerNorm; ``nn.Transformer``'s default adds one). Pre-LN: ``norm_first=True`` with the final LayerNorms."""
    cfg = model.cfg
    kw = dict(d_model=cfg.hidden_size, nhead=cfg.num_heads, dim_feedforward=cfg.intermediate_size, dropout=0.0,
              activation="relu", batch_first=True, norm_first=pre_norm, layer_norm_eps=cfg.norm_eps)
    enc_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps) if pre_norm else None
    dec_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps) if pre_norm else None
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(**kw), cfg.num_layers, norm=enc_norm,
                                    enable_nested_tensor=False)
    decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**kw), cfg.num_layers, norm=dec_norm)
    ref = nn.Transformer(custom_encoder=encoder, custom_decoder=decoder, batch_first=True, **{
        k: kw[k] for k in ("d_model", "nhead")}).eval()
    with torch.no_grad():
        for r, m in zip(ref.encoder.layers, model.encoder):
            _copy_attention(r.self_attn, m.attn)
            _copy_linear_norm(r.linear1, r.linear2, m.mlp)
            _copy_norm(r.norm1, m.attn_res.norm)
            _copy_norm(r.norm2, m.mlp_res.norm)
        for r, m in zip(ref.decoder.layers, model.decoder):
            _copy_attention(r.self_attn, m.self_attn)
            _copy_attention(r.multihead_attn, m.cross_attn)
            _copy_linear_norm(r.linear1, r.linear2, m.mlp)
            _copy_norm(r.norm1, m.self_attn_res.norm)
            _copy_norm(r.norm2, m.cross_attn_res.norm)
            _copy_norm(r.norm3, m.mlp_res.norm)
        if pre_norm:
            _copy_norm(ref.encoder.norm, model.encoder_norm)
            _copy_norm(ref.decoder.norm, model.decoder_norm)
    return ref


@pytest.mark.parametrize("pre_norm", [False, True], ids=["post-LN (paper)", "pre-LN"])
def test_equals_torch_nn_transformer(pre_norm):
    model = ours(CFG.replace(pre_norm=pre_norm))
    ref = torch_reference(model, pre_norm)
    src, tgt, mask = batch()
    T = tgt.shape[1]
    with torch.no_grad():
        got = model(src, tgt, attention_mask=mask)
        out = ref(model.embed_tokens(src), model.embed_tokens(tgt), tgt_mask=nn.Transformer.generate_square_subsequent_mask(T),
                  src_key_padding_mask=mask == 0, memory_key_padding_mask=mask == 0, tgt_is_causal=True)
        want = out @ model.embed.weight.T + model.final_logits_bias
    torch.testing.assert_close(got, want, **TOL)


def test_the_default_nn_transformer_adds_a_final_layernorm_the_paper_does_not_have():
    model = ours()
    src, tgt, mask = batch()
    default = nn.Transformer(d_model=64, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=256,
                             dropout=0.0, batch_first=True)
    assert isinstance(default.encoder.norm, nn.LayerNorm) and isinstance(default.decoder.norm, nn.LayerNorm)
    assert isinstance(model.encoder_norm, nn.Identity) and isinstance(model.decoder_norm, nn.Identity)


# ------------------------------------------------------------------------------------------ HF MarianMTModel

MARIAN = dict(vocab_size=50, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
              decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=40,
              activation_function="relu", scale_embedding=True, pad_token_id=0, decoder_start_token_id=0,
              eos_token_id=1, forced_eos_token_id=None, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)


@pytest.fixture(scope="module")
def marian(tmp_path_factory):
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(0)
    hf = MarianMTModel(MarianConfig(**MARIAN, attn_implementation="eager")).eval()
    randomize(hf, seed=1)
    with torch.no_grad():
        hf.final_logits_bias.normal_(0, 0.5)
        for stack in (hf.model.encoder, hf.model.decoder):  # fixed tables (not saved): undo the randomisation
            stack.embed_positions.weight.copy_(stack.embed_positions.create_weight())
    directory = save_hf(hf, tmp_path_factory.mktemp("marian"))
    return hf, load_hf(directory), directory


def test_marian_loads_as_the_2017_architecture(marian):
    _, model, _ = marian
    cfg = model.cfg
    assert (cfg.arch, cfg.pre_norm, cfg.position, cfg.sinusoid_layout) == ("transformer", False, "sinusoidal", "halves")
    assert cfg.scale_embedding and cfg.activation == "relu" and not model.training


def test_marian_logits_equal(marian):
    hf, model, _ = marian
    src, tgt, mask = batch()
    with torch.no_grad():
        want = hf(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits
        got = model(src, tgt, attention_mask=mask)
    torch.testing.assert_close(got, want, **TOL)


def test_marian_encoder_equals_on_real_tokens(marian):
    hf, model, _ = marian
    src, _, mask = batch(seed=3)
    with torch.no_grad():
        want = hf.model.encoder(input_ids=src, attention_mask=mask).last_hidden_state
        got = model.encode(src, mask)
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], **TOL)


def test_marian_greedy_equals_hf_generate(marian):
    """HF pads a row that has finished with pad_token_id, llmviz repeats EOS: compare each row up to its EOS."""
    hf, model, _ = marian
    src, _, mask = batch(seed=5)
    with torch.no_grad():
        want = hf.generate(input_ids=src, attention_mask=mask, max_new_tokens=12, do_sample=False, num_beams=1)
    got = greedy_decode(model, src, bos_id=0, eos_id=1, max_new_tokens=12, attention_mask=mask)
    assert got.shape == want.shape
    for g, w in zip(got, want):
        end = int((g == 1).nonzero()[0]) + 1 if (g == 1).any() else len(g)
        assert torch.equal(g[:end], w[:end])


def test_marian_sinusoid_is_a_permutation_of_the_papers(marian):
    hf, _, _ = marian
    table = hf.model.encoder.embed_positions.weight
    d = table.shape[1]
    paper = sinusoidal_positions(table.shape[0], d)
    halves = sinusoidal_positions(table.shape[0], d, layout="halves")
    perm = torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])  # even features (sin) first, then odd (cos)
    torch.testing.assert_close(halves, table, atol=1e-5, rtol=0)  # HF computes in float64, llmviz in float32
    torch.testing.assert_close(paper[:, perm], table, atol=1e-5, rtol=0)


def test_marian_without_final_logits_bias_loads_with_zero_bias(marian, tmp_path):
    from safetensors.torch import load_file, save_file

    _, _, directory = marian
    stored = load_file(directory / "model.safetensors")
    del stored["final_logits_bias"]
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    save_file(stored, tmp_path / "model.safetensors", metadata={"format": "pt"})
    assert torch.count_nonzero(load_hf(tmp_path).final_logits_bias) == 0


@pytest.mark.parametrize("key, value", [("normalize_before", True), ("share_encoder_decoder_embeddings", False),
                                        ("decoder_layers", 3), ("decoder_vocab_size", 60), ("add_final_layer_norm", True)])
def test_unsupported_marian_settings_are_named(marian, tmp_path, key, value):
    import json

    _, _, directory = marian
    config = json.loads((directory / "config.json").read_text())
    config[key] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=re.escape(key)) as e:
        load_hf(tmp_path)
    assert f"{key}={value!r}" in str(e.value)


# ------------------------------------------------------------------------------------------ decoding

def test_cached_decoding_equals_the_full_decoder_pass():
    model = ours()
    src, tgt, mask = batch()
    with torch.no_grad():
        full = model(src, tgt, attention_mask=mask)
        memory, cache = model.encode(src, mask), model.new_cache()
        steps = [model.decode(tgt[:, i:i + 1], memory, mask, cache) for i in range(tgt.shape[1])]
        two = model.new_cache()
        chunks = [model.decode(tgt[:, :3], memory, mask, two), model.decode(tgt[:, 3:], memory, mask, two)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(chunks, 1), full, atol=1e-5, rtol=1e-5)
    assert all(len(c) == tgt.shape[1] for c, _ in cache) and all(len(x) == src.shape[1] for _, x in cache)


def test_greedy_decode_follows_the_argmax_of_the_full_pass():
    model = ours()
    src, _, mask = batch()
    out = greedy_decode(model, src, bos_id=0, eos_id=1, max_new_tokens=6, attention_mask=mask)
    with torch.no_grad():
        logits = model(src, out[:, :-1], attention_mask=mask)
    done = torch.zeros(src.shape[0], dtype=torch.bool)
    for t in range(out.shape[1] - 1):  # each token is the argmax given the previous ones (EOS rows stay EOS)
        want = logits[:, t].argmax(-1).masked_fill(done, 1)
        assert torch.equal(out[:, t + 1], want)
        done |= want == 1


@pytest.mark.parametrize("seed", range(4))
def test_beam_size_one_is_greedy(seed):
    model = ours(seed=seed)
    src, _, _ = batch(seed=seed, B=1)
    greedy = greedy_decode(model, src, bos_id=0, eos_id=1, max_new_tokens=10)
    beam = beam_search(model, src, bos_id=0, eos_id=1, max_new_tokens=10, beam_size=1)
    n = beam.shape[1]
    assert torch.equal(beam, greedy[:, :n]) and (n == greedy.shape[1] or beam[0, -1] == 1)


def test_beam_search_finds_a_hypothesis_at_least_as_likely_as_greedy():
    model = ours(seed=2)
    src, _, _ = batch(seed=2, B=1)

    def logprob(seq):
        with torch.no_grad():
            lp = torch.log_softmax(model(src, seq[:, :-1]), -1)
        return lp[0, torch.arange(seq.shape[1] - 1), seq[0, 1:]].sum().item()

    greedy = greedy_decode(model, src, bos_id=0, eos_id=1, max_new_tokens=12)
    beam = beam_search(model, src, bos_id=0, eos_id=1, max_new_tokens=12, beam_size=4, length_penalty=0.0)
    if greedy[0, -1] == 1 and beam[0, -1] == 1:  # both finished: beam's total log-probability is never lower
        assert logprob(beam) >= logprob(greedy) - 1e-5


class _Chain(nn.Module):
    """An encoder-decoder stand-in whose next token depends only on the last one: BOS → 3 → 4 → … → 8 → EOS, each
    with probability 0.85, and EOS at probability 0.1 everywhere else, as a label-smoothed model gives it."""

    cfg = CFG

    def encode(self, input_ids, attention_mask=None):
        return torch.zeros(input_ids.shape[0], input_ids.shape[1], 4)

    def new_cache(self):
        return []

    def decode(self, ids, memory, attention_mask=None, cache=None):
        last = ids[:, -1]
        nxt = torch.where(last == 0, 3, torch.where(last >= 8, 1, last + 1))
        probs = torch.full((ids.shape[0], CFG.vocab_size), 0.05 / (CFG.vocab_size - 2))
        probs[:, 1] = 0.1
        probs[torch.arange(ids.shape[0]), nxt] = 0.85 + 0.1 * (nxt == 1)
        return probs.log()[:, None, :]


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_search_does_not_stop_at_unlikely_early_ends(alpha):
    """Stopping once beam_size hypotheses have emitted EOS returned "BOS 3 EOS" here (log p -2.5) instead of the
    greedy, far likelier "BOS 3 4 5 6 7 8 EOS" (log p -1.1)."""
    src = torch.tensor([[5, 6]])
    want = torch.tensor([[0, 3, 4, 5, 6, 7, 8, 1]])
    assert torch.equal(greedy_decode(_Chain(), src, bos_id=0, eos_id=1, max_new_tokens=12), want)
    assert torch.equal(beam_search(_Chain(), src, bos_id=0, eos_id=1, max_new_tokens=12, beam_size=4,
                                   length_penalty=alpha), want)


# ------------------------------------------------------------------------------------------ bad inputs

BAD = [
    ("decoder-too-long", lambda m: m(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 41, dtype=torch.long)),
     "decoder_input_ids.shape[1]", "41"),
    ("source-too-long", lambda m: m(torch.zeros(1, 41, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long)),
     "input_ids.shape[1]", "41"),
    ("batch-mismatch", lambda m: m(torch.zeros(2, 4, dtype=torch.long), torch.zeros(3, 4, dtype=torch.long)),
     "decoder_input_ids.shape", "(3, 4)"),
    ("mask-shape", lambda m: m(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long),
                               attention_mask=torch.ones(2, 5)), "attention_mask.shape", "(2, 5)"),
    ("unknown-source-id", lambda m: m(torch.tensor([[3, 50]]), torch.zeros(1, 2, dtype=torch.long)), "input_ids", "50"),
    ("unknown-target-id", lambda m: m(torch.tensor([[3, 4]]), torch.tensor([[0, -1]])), "decoder_input_ids", "-1"),
    ("float-ids", lambda m: m(torch.zeros(1, 3), torch.zeros(1, 2, dtype=torch.long)), "input_ids.shape", "(1, 3)"),
    ("cache-past-positions", lambda m: m.decode(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 3, 64),
                                                cache=_filled_cache(m, 39)), "decoder_input_ids.shape[1]", "2"),
    ("beam-batch", lambda m: beam_search(m, torch.zeros(2, 3, dtype=torch.long), 0, 1, 5), "input_ids.shape", "(2, 3)"),
    ("beam-size-0", lambda m: beam_search(m, torch.zeros(1, 3, dtype=torch.long), 0, 1, 5, beam_size=0),
     "beam_size", "0"),
    ("eos-outside-vocab", lambda m: greedy_decode(m, torch.zeros(1, 3, dtype=torch.long), 0, 50, 5), "eos_id", "50"),
]


def _filled_cache(model, n):
    cache = model.new_cache()
    for self_cache, _ in cache:
        self_cache.append(torch.zeros(1, 4, n, 16), torch.zeros(1, 4, n, 16))
    return cache


@pytest.mark.parametrize("call, param, value", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_named(call, param, value):
    model = ours()
    with pytest.raises(ValueError) as e:
        call(model)
    assert f"{param}={value}" in str(e.value), str(e.value)


def test_padding_does_not_change_the_real_tokens():
    model = ours()
    src, tgt, _ = batch(B=1, S=5)
    padded = torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], 1)
    mask = torch.tensor([[1] * 5 + [0] * 3])
    with torch.no_grad():
        torch.testing.assert_close(model(padded, tgt, attention_mask=mask), model(src, tgt), atol=1e-5, rtol=1e-5)


def test_fully_padded_source_gives_no_nan():
    model = ours()
    src, tgt, _ = batch(B=1)
    with torch.no_grad():
        out = model(src, tgt, attention_mask=torch.zeros_like(src))
    assert torch.isfinite(out).all()
