"""Attention rollout (Abnar & Zuidema 2020) and the attention viewer on a bidirectional encoder (BERT)."""
import pytest
import torch
from matplotlib.figure import Figure

from llmviz import build_model, get_config
from llmviz.widgets.viewer import attention_maps, attention_rollout, attention_viewer, draw_attention


def random_maps(L=3, H=4, T=6, seed=0, causal=False):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(L, H, T, T, generator=g)
    if causal:
        scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return torch.softmax(scores, -1)


def test_rows_sum_to_one_at_every_layer():
    r = attention_rollout(random_maps())
    assert r.shape == (3, 6, 6)
    torch.testing.assert_close(r.sum(-1), torch.ones(3, 6))
    assert (r >= 0).all()


def test_identity_attention_gives_the_identity():
    maps = torch.eye(5).expand(2, 3, 5, 5)
    torch.testing.assert_close(attention_rollout(maps), torch.eye(5).expand(2, 5, 5))


def test_one_layer_is_half_attention_half_residual_and_layers_multiply():
    maps = random_maps(L=2)
    a = [(maps[l].mean(0) + torch.eye(6)) / 2 for l in range(2)]        # rows of A sum to 1, so /2 renormalises
    r = attention_rollout(maps)
    torch.testing.assert_close(r[0], a[0])
    torch.testing.assert_close(r[1], a[1] @ a[0])                        # R_2 = Â_2 R_1: the later layer on the left


def test_causal_maps_roll_out_causally():
    r = attention_rollout(random_maps(causal=True))
    assert (r.triu(1) == 0).all()


def test_fully_masked_rows_keep_their_residual():
    maps = random_maps(L=1)
    maps[:, :, 2] = 0.0                                                   # a query that may see no key
    torch.testing.assert_close(attention_rollout(maps)[0, 2], torch.eye(6)[2])


@pytest.mark.parametrize("maps", [torch.rand(4, 5, 5), torch.rand(2, 2, 4, 5), -torch.rand(1, 1, 3, 3),
                                  torch.full((1, 1, 2, 2), float("nan"))], ids=["3-d", "not-square", "negative", "nan"])
def test_bad_maps_are_named(maps):
    with pytest.raises(ValueError, match="^maps="):
        attention_rollout(maps)


# ------------------------------------------------------------------------------------ the viewer on BERT

@pytest.fixture(scope="module")
def bert():
    torch.manual_seed(0)
    return build_model(get_config("tiny-bert"))


def test_bert_maps_are_bidirectional_probabilities(bert):
    ids = torch.randint(5, 500, (9,), generator=torch.Generator().manual_seed(0))
    maps = attention_maps(bert, ids)
    assert maps.shape == (2, 4, 9, 9)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 4, 9))
    upper = torch.ones(9, 9, dtype=torch.bool).triu(1)
    assert (maps[..., upper] > 0.01).all()                               # every token sees the later ones too
    # layer 0, head 1 by hand: softmax(q k^T / sqrt(d)) with no mask, q and k from the embedding output
    with torch.no_grad():
        x = bert.embed_norm(bert.embed(ids) + bert.pos_embed(torch.arange(9)) + bert.type_embed(torch.zeros_like(ids)))
        attn, h = bert.blocks[0].attn, 1
        d = attn.head_dim
        q, k = attn.q_proj(x)[:, h * d:(h + 1) * d], attn.k_proj(x)[:, h * d:(h + 1) * d]
        torch.testing.assert_close(maps[0, h], torch.softmax(q @ k.T / d ** 0.5, -1), atol=1e-5, rtol=1e-5)


def test_viewer_titles_and_top_keys_say_bidirectional(bert):
    tokens = ["[CLS]", "the", "river", "bank", "[SEP]"]
    w = attention_viewer(bert, [2, 40, 41, 42, 3], tokens)
    texts = lambda: " ".join(t.get_text() for t in w.fig.texts) + " ".join(
        t.get_text() for ax in w.fig.axes for t in (ax.title, *ax.texts))
    assert "bidirectional" in texts() and "causal" not in texts() and "j <= i" not in texts()
    w.controls["layer"].value, w.controls["head"].value, w.controls["query"].value = 0, 1, 0
    reads = [line for line in texts().split("\n") if "(j=" in line]
    assert len(reads) == 5                                                # query 0 reads all 5 keys, not 1
    fig = Figure(figsize=(11.5, 6))
    draw_attention(fig, torch.rand(1, 2, 4, 4).tril(), ["a"] * 4)         # a decoder's maps keep the causal title
    assert any("causal mask" in t.get_text() for t in fig.texts)
