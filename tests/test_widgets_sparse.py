"""Sparse-attention explorer and attention viewer: masks come from llmviz.masks, the figure shows the computed
numbers, every offered control value redraws, and the attention maps are the model's real probabilities."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

import llmviz.widgets.figure as figure_mod
from llmviz import build_model, get_config, masks
from llmviz.layers import repeat_kv
from llmviz.widgets import sparse as S
from llmviz.widgets.sparse import (DEFAULTS, PATTERNS, draw_sparse, layer_masks, offered_values, pattern_mask,
                                   sparse_attention_explorer, sparse_stats)
from llmviz.widgets.viewer import attention_maps, attention_viewer, draw_attention

# --------------------------------------------------------------------------- pattern_mask = llmviz.masks


def _lsh_ref(T: int, n_buckets: int, chunk: int, seed: int) -> torch.Tensor:
    x = torch.randn(T, 16, generator=torch.Generator().manual_seed(seed))
    return masks.lsh(x, n_buckets, chunk, seed)


CASES = [
    ("dense", dict(T=32), lambda: masks.causal(32)),
    ("sliding", dict(T=64, window=6), lambda: masks.sliding_window(64, 6)),
    ("dilated", dict(T=64, window=4, dilation=3), lambda: masks.dilated_window(64, 4, 3)),
    ("strided", dict(T=64, stride=8), lambda: masks.strided(64, 8)),
    ("fixed", dict(T=64, block=16, summary=4), lambda: masks.fixed(64, 16, 4)),
    ("longformer", dict(T=64, window=8, n_global=2), lambda: masks.longformer(64, 8, [0, 1])),
    ("longformer", dict(T=64, window=8, n_global=0, causal=True), lambda: masks.longformer(64, 8, [], causal=True)),
    ("bigbird", dict(T=128, block=8, n_random=2, seed=3), lambda: masks.bigbird(128, 8, 2, 3)),
    ("bigbird", dict(T=64, block=8, n_random=0, causal=True), lambda: masks.bigbird(64, 8, 0, causal=True)),
    ("lsh", dict(T=64, n_buckets=6, block=8, seed=1), lambda: _lsh_ref(64, 6, 8, 1)),
    ("gpt3", dict(T=64, window=8), lambda: masks.sliding_window(64, 8)),
    ("document", dict(T=64, n_docs=3, seed=2),
     lambda: masks.document(masks.doc_ids_from_lengths(S.doc_lengths(64, 3, 2)))),
]


@pytest.mark.parametrize("pattern,params,ref", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_pattern_mask_is_the_masks_builder(pattern, params, ref):
    assert torch.equal(pattern_mask(pattern, **params), ref())


def test_every_pattern_has_a_case_and_a_caption():
    assert {c[0] for c in CASES} == set(PATTERNS)
    for p in PATTERNS.values():
        assert p.idea and p.source and p.label


def test_doc_lengths_and_gpt3_stack():
    lens = S.doc_lengths(64, 5, seed=7)
    assert len(lens) == 5 and sum(lens) == 64 and min(lens) >= 1 and lens == S.doc_lengths(64, 5, seed=7)
    for first in ("dense", "local"):
        got = layer_masks("gpt3", 32, layers=3, window=4, first=first)
        ref = masks.gpt3_layers(32, 3, 4, first=first)
        assert all(torch.equal(a, b) for a, b in zip(got, ref, strict=True))
    assert all(torch.equal(m, masks.strided(32, 4)) for m in layer_masks("strided", 32, layers=2, stride=4))


# --------------------------------------------------------------------------- the figure shows the computed values

def _texts(fig: Figure) -> str:
    parts = [t.get_text() for t in fig.texts] + [t.get_text() for ax in fig.axes for t in ax.texts]
    parts += [ax.get_title() for ax in fig.axes]
    return "\n".join(parts)


def _reference(values: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One layer's mask and the layer stack, computed directly with llmviz.masks (not via the widget module)."""
    v = {**DEFAULTS, **values}
    p, T, L = v["pattern"], v["T"], v["layers"]
    if p == "gpt3":
        return masks.sliding_window(T, v["window"]), masks.gpt3_layers(T, L, v["window"], first=v["first"])
    one = {
        "dense": lambda: masks.causal(T),
        "sliding": lambda: masks.sliding_window(T, v["window"]),
        "dilated": lambda: masks.dilated_window(T, v["window"], v["dilation"]),
        "strided": lambda: masks.strided(T, v["stride"]),
        "fixed": lambda: masks.fixed(T, v["block"], v["summary"]),
        "longformer": lambda: masks.longformer(T, v["window"], list(range(v["n_global"])), causal=v["causal"]),
        "bigbird": lambda: masks.bigbird(T, v["block"], v["n_random"], v["seed"], causal=v["causal"]),
        "lsh": lambda: _lsh_ref(T, v["n_buckets"], v["block"], v["seed"]),
        "document": lambda: masks.document(masks.doc_ids_from_lengths(S.doc_lengths(T, v["n_docs"], v["seed"]))),
    }[p]()
    return one, [one] * L


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_numbers_on_figure_are_the_computed_ones(pattern):
    values = {**DEFAULTS, "pattern": pattern, "T": 64, "layers": 3}
    one, stack = _reference(values)
    fig = Figure(figsize=(11, 4.5))
    draw_sparse(fig, **values)
    text = _texts(fig)
    density = sum(masks.density(m) for m in stack) / len(stack) if pattern == "gpt3" else masks.density(one)
    saved = (sum(masks.flops_saved(m) for m in stack) / len(stack) if pattern == "gpt3"
             else masks.flops_saved(one))
    pairs = round(sum(int(m.sum()) for m in stack) / len(stack)) if pattern == "gpt3" else int(one.sum())
    assert f"density: {100 * density:.1f}%" in text
    assert f"FLOPs saved vs dense causal: {100 * saved:.1f}%" in text
    assert f"pairs: {pairs:,} of {64 * 64:,}" in text
    reach = masks.reachability(stack)
    target = masks.causal(64) if not (one & ~masks.causal(64)).any() else torch.ones(64, 64, dtype=torch.bool)
    assert f"reach after 3 layers: {100 * (reach & target).sum().item() / target.sum().item():.1f}%" in text
    hops = masks.hops_to_full(one, max_layers=S.HOPS_CAP)
    if hops is not None:
        assert f"in {hops} hop" in text
    assert PATTERNS[pattern].idea in fig._suptitle.get_text()


def _panels(fig: Figure, T: int) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(fig.axes[0].images[0].get_array())                  # [T, off + T, 3]
    return img[:, :T], img[:, -T:]


def _is(panel: np.ndarray, colour: str) -> np.ndarray:
    return (panel == (np.array(to_rgb(colour)) * 255).round().astype(np.uint8)).all(-1)


@pytest.mark.parametrize("values", [
    dict(pattern="strided", T=64, stride=8, layers=1), dict(pattern="strided", T=64, stride=8, layers=2),
    dict(pattern="sliding", T=64, window=8, layers=4), dict(pattern="gpt3", T=64, window=8, layers=3, first="local"),
    dict(pattern="longformer", T=64, window=4, n_global=1, layers=2), dict(pattern="document", T=32, layers=2),
    dict(pattern="dilated", T=64, window=4, dilation=3, layers=3),
])
def test_mask_and_reach_panels_equal_masks_functions(values):
    one, stack = _reference(values)
    T = values["T"]
    fig = Figure(figsize=(11, 4.5))
    draw_sparse(fig, **{**DEFAULTS, **values})
    mask_panel, reach_panel = _panels(fig, T)
    reach = masks.reachability(stack)
    assert torch.equal(sparse_stats(**values)["reach"], reach)
    allowed_drawn = ~_is(mask_panel, S.GREY)
    union = torch.stack(stack).any(0) if values["pattern"] == "gpt3" else one
    assert np.array_equal(allowed_drawn, union.numpy())
    assert np.array_equal(~_is(reach_panel, S.GREY), reach.numpy())
    assert np.array_equal(_is(reach_panel, S.BLUE), stack[0].numpy())       # dark = reachable by layer 1


def test_a_used_figure_draws_the_same_png_as_a_fresh_one():
    """draw_sparse keeps its Axes, image and texts on the figure and updates them: the picture must not depend
    on what the figure showed before, and a figure cleared in between is drawn anew."""
    used = Figure()
    for values in (dict(pattern="gpt3", T=256, layers=8, first="local"), dict(pattern="document", T=32, layers=1),
                   dict(pattern="bigbird", T=128, block=4, n_random=3, causal=True)):
        draw_sparse(used, **{**DEFAULTS, **values})
    target = {**DEFAULTS, "pattern": "longformer", "T": 64, "window": 6, "n_global": 2, "layers": 3}
    draw_sparse(used, **target)
    fresh = Figure()
    draw_sparse(fresh, **target)
    assert len(used.axes) == len(fresh.axes) == 1
    assert figure_mod.figure_png(used, dpi=40) == figure_mod.figure_png(fresh, dpi=40)
    used.clear()
    draw_sparse(used, **target)
    assert figure_mod.figure_png(used, dpi=40) == figure_mod.figure_png(fresh, dpi=40)


def test_hops_statements():
    assert sparse_stats(pattern="strided", T=64, stride=8)["hops"] == 2
    s = sparse_stats(pattern="sliding", T=64, window=8)
    assert s["hops"] == masks.hops_to_full(masks.sliding_window(64, 8)) == 9
    assert sparse_stats(pattern="document", T=64, n_docs=3)["never"] is True
    assert sparse_stats(pattern="sliding", T=256, window=2)["hops"] == 255   # one position a layer


@pytest.mark.parametrize("mask", [
    masks.strided(48, 6), masks.sliding_window(48, 4), masks.dilated_window(48, 4, 2), masks.causal(48),
    masks.longformer(48, 4, [0]), masks.longformer(48, 2, [], causal=True), masks.bigbird(48, 4, 2, 1),
    masks.document([0] * 20 + [1] * 28), masks.fixed(48, 8, 1), _lsh_ref(48, 4, 6, 0),
], ids=lambda m: str(int(m.sum())))
def test_fast_hops_equal_hops_to_full(mask):
    for cap in (1, 2, 5, 16, 64):
        assert S.hops_and_never(mask, cap)[0] == masks.hops_to_full(mask, max_layers=cap)
    hops, never = S.hops_and_never(mask)
    assert never == (hops is None)                                       # T - 1 <= cap: None means never


# --------------------------------------------------------------------------- the explorer widget

def _ends(control) -> list:
    """Every option of a dropdown / checkbox; both ends of a slider."""
    vals = offered_values(control)
    return vals if not hasattr(control, "min") else sorted({vals[0], vals[-1]})


def _relevant_names(pattern: str) -> list[str]:
    return ["T", "layers", *PATTERNS[pattern].uses]


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_every_control_every_pattern_draws(pattern, monkeypatch):
    """Every control for every pattern: the controls it uses through every dropdown option and both slider
    ends, the unused (disabled) ones one step each. The control ranges must keep every combination valid (no
    exception). draw_sparse runs for real; only the PNG rendering (covered by the next test) is stubbed out to
    keep this sweep fast."""
    monkeypatch.setattr(figure_mod, "figure_png", lambda fig, dpi=100: b"png")
    w = sparse_attention_explorer(pattern=pattern)
    used = _relevant_names(pattern)
    for name, control in w.controls.items():
        if name == "pattern":
            continue
        if name in used:
            values = _ends(control) + [control.value]
        else:
            values = [v for v in offered_values(control) if v != control.value][:1]
        for value in values:
            if value in offered_values(control):                         # ranges may have moved meanwhile
                control.value = value
        assert control.disabled is (name not in used or (name == "n_random" and control.max == 0)), name
    c = w.controls
    assert c["summary"].max == c["block"].value                          # ranges that depend on others
    assert c["n_random"].max == max(0, c["T"].value // c["block"].value - 5)

def test_every_pattern_from_extreme_ranges(monkeypatch):
    """After the block / T extremes have moved the dependent ranges, every pattern still draws."""
    monkeypatch.setattr(figure_mod, "figure_png", lambda fig, dpi=100: b"png")
    w = sparse_attention_explorer(pattern="bigbird", T=256, block=2, n_random=50, summary=2)
    c = w.controls
    for T, block in ((32, 32), (256, 2), (32, 2), (256, 32)):
        c["T"].value, c["block"].value = T, block
        for p in PATTERNS:
            c["pattern"].value = p


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_png_changes_where_it_should(pattern):
    """Real PNGs: moving a control the pattern uses changes the picture whenever it changes what is shown."""
    w = sparse_attention_explorer(pattern=pattern, T=32)

    def signature() -> tuple:
        s = sparse_stats(**w.values)
        return (s["mask"].numpy().tobytes(), s["reach"].numpy().tobytes(), s["pairs"], s["hops"], s["never"],
                round(s["reach_frac"], 4), w.values["layers"])

    for name in _relevant_names(pattern):
        control = w.controls[name]
        others = [v for v in offered_values(control) if v != control.value]
        for value in others[:1] if name == "T" else others[-1:]:          # T: the next size; else the far end
            before, png = signature(), w.image.value
            control.value = value
            if signature() != before:
                assert w.image.value != png, (name, value)
    if pattern == "dense":                                               # unused controls: same picture
        png = w.image.value
        for name in ("window", "seed", "causal"):
            control = w.controls[name]
            control.value = [v for v in offered_values(control) if v != control.value][0]
            assert w.image.value == png, name


def test_explorer_rejects_bad_initial_values():
    for bad in (dict(pattern="nope"), dict(T=100), dict(window=5), dict(block=3), dict(summary=9, block=8),
                dict(T=64, block=8, n_random=4), dict(bogus=1), dict(layers=0), dict(causal=1)):
        with pytest.raises(ValueError):
            sparse_attention_explorer(**bad)
    with pytest.raises(ValueError, match="pattern"):
        pattern_mask("nope", 32)
    with pytest.raises(ValueError, match="pattern"):
        draw_sparse(Figure(), pattern="nope")
    w = sparse_attention_explorer(pattern="bigbird", T=256, block=4, n_random=50, summary=4)
    assert w.controls["n_random"].value == 50 and w.controls["n_random"].max == 256 // 4 - 5


# --------------------------------------------------------------------------- attention viewer

@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    return build_model(get_config("tiny-llama"))


@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(1)
    return build_model(get_config("tiny-gpt2"))


def test_attention_maps_are_probabilities_and_match_manual_softmax(gpt2):
    ids = torch.randint(0, 256, (10,), generator=torch.Generator().manual_seed(0))
    maps = attention_maps(gpt2, ids)                                      # [layers, heads, T, T]
    assert maps.shape == (2, 4, 10, 10)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 4, 10))
    assert (maps.triu(1) == 0).all()
    # layer 0, head 1 by hand: softmax(q k^T / sqrt(d) + causal), q and k from the module's weights
    blk, h = gpt2.blocks[0], 1
    with torch.no_grad():
        x = blk.attn_norm(gpt2.embed(ids) + gpt2.pos_embed(torch.arange(10)))   # [T, hidden]
        d = blk.attn.head_dim
        q = blk.attn.q_proj(x)[:, h * d:(h + 1) * d]                         # [T, d]
        k = blk.attn.k_proj(x)[:, h * d:(h + 1) * d]
        scores = (q @ k.T) / d ** 0.5 + torch.zeros(10, 10).masked_fill(~masks.causal(10), float("-inf"))
        torch.testing.assert_close(maps[0, h], torch.softmax(scores, -1), atol=1e-5, rtol=1e-5)


def test_attention_maps_reproduce_the_sdpa_output(llama):
    """GQA + RoPE: probs (from keep_weights) @ V, then o_proj, equals the module's normal (SDPA) output."""
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(1))
    attn = llama.blocks[1].attn
    seen = {}
    hook = attn.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out))
    llama.eval()
    try:
        with torch.no_grad():
            llama(ids)
    finally:
        hook.remove()
        llama.train()
    probs = attention_maps(llama, ids)[1][None]                           # [1, heads, T, T]
    with torch.no_grad():
        v = attn.v_proj(seen["x"]).view(1, 12, attn.num_kv_heads, attn.head_dim).transpose(1, 2)
        out = probs @ repeat_kv(v, attn.num_heads // attn.num_kv_heads)      # [1, heads, T, d]
        out = attn.o_proj(out.transpose(1, 2).reshape(1, 12, -1))
    torch.testing.assert_close(out, seen["out"], atol=1e-5, rtol=1e-4)


def test_viewer_restores_flags_and_modes(llama):
    llama.train()
    attention_viewer(llama, list(range(5)))
    assert all(b.attn.keep_weights is False and b.attn.weights is None for b in llama.blocks)
    assert llama.training and all(m.training for m in llama.modules())


def test_viewer_every_control_redraws(llama):
    tokens = "the cat sat on the mat because it was warm".split()
    w = attention_viewer(llama, torch.arange(10) + 20, tokens)
    c = w.controls
    assert [o[1] for o in c["layer"].options] == [-1, 0, 1]
    assert [o[1] for o in c["head"].options] == [-1, 0, 1, 2, 3]
    assert [o[0] for o in c["query"].options][:3] == ["none", "0: the", "1: cat"]
    seen = {w.image.value}
    for name, values in (("layer", [-1, 1]), ("head", [0, 1, 2, 3]), ("query", [0, 9, 5, -1]), ("layer", [0, -1]),
                         ("head", [-1])):
        for value in values:
            c[name].value = value
            seen.add(w.image.value)
    assert len(seen) == 12                                                # every view is a different picture
    c["layer"].value, c["head"].value, c["query"].value = 1, 2, 3         # one head, one query row
    heat, bars = w.fig.axes[0], w.fig.axes[1]
    assert [t.get_text() for t in heat.texts] == tokens                  # query labels
    assert [t.get_text() for t in bars.texts] == tokens                  # key labels
    assert "layer 1, head 2 (KV head 1)" in _texts(w.fig)
    maps = attention_maps(llama, torch.arange(10) + 20)
    np.testing.assert_allclose([p.get_height() for p in bars.patches], maps[1, 2, 3].numpy(), rtol=1e-6)
    assert "query 3 'on' reads" in _texts(w.fig)


def test_draw_attention_on_a_used_figure_equals_a_fresh_one():
    """draw_attention keeps each view's Axes on the figure and replaces their contents: the picture must not
    depend on what the figure showed before."""
    maps = torch.rand(2, 4, 6, 6, generator=torch.Generator().manual_seed(0)).tril()
    tokens = ["a", "bb", "c", "dd", "e", "ff"]
    for target in (dict(layer=1, head=2, query=3), dict(layer=-1, head=-1, query=2), dict(layer=0, head=-1, query=-1),
                   dict(layer=-1, head=1, query=-1)):
        used = Figure(figsize=(11.5, 6))
        for before in (dict(layer=-1, head=-1, query=-1), dict(layer=0, head=1, query=5),
                       dict(layer=-1, head=3, query=0), dict(layer=1, head=-1, query=4)):
            draw_attention(used, maps, tokens, **before)
        draw_attention(used, maps, tokens, **target)
        fresh = Figure(figsize=(11.5, 6))
        draw_attention(fresh, maps, tokens, **target)
        assert len(used.axes) == len(fresh.axes)
        assert any("softmax(QKᵀ/√d + causal mask)" in t.get_text() for t in used.texts)      # the suptitle
        assert figure_mod.figure_png(used, dpi=40) == figure_mod.figure_png(fresh, dpi=40), target


def test_viewer_rejects_bad_inputs(llama):
    with pytest.raises(ValueError, match="tokens"):
        attention_viewer(llama, [1, 2, 3], ["a", "b"])
    with pytest.raises(ValueError, match="tokens"):
        attention_viewer(llama, [1, 2, 3], "abc")
    with pytest.raises(ValueError, match="input_ids"):
        attention_viewer(llama, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids"):
        attention_viewer(llama, [1, 999])
    with pytest.raises(ValueError, match="input_ids"):
        attention_viewer(llama, [])
    with pytest.raises(ValueError, match="model"):
        attention_maps(torch.nn.Linear(2, 2), [1])
    with pytest.raises(ValueError, match="layer"):
        draw_attention(Figure(), torch.zeros(2, 4, 3, 3), ["a"] * 3, layer=2)
