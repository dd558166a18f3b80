"""RoPE and GQA explorers: the numbers of algorithms.md §2-3 and facts.md §13 #32, the figures, the widgets."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from llmviz.configs import get_config
from llmviz.stats import kv_cache_bytes
from llmviz.widgets.gqa import (CONTEXTS, CUSTOM, DTYPES, GQA_MODELS, MAX_DRAWN, divisors, draw_gqa, format_bytes,
                                format_percent, gqa_config, gqa_explorer, kv_cache_table, kv_head_of)
from llmviz.widgets.rope import (BASE_PRESETS, CUSTOM_BASE, HEAD_DIMS, ORIGINAL_CONTEXTS, PANELS, SCALINGS, draw_rope,
                                 layout_mismatch, layout_permutation, rope_band_counts, rope_band_edges, rope_bands,
                                 rope_controls_used, rope_decay_bound, rope_explorer, rope_pair_trail,
                                 rope_scaling_dict, rope_wavelengths)


def _texts(fig: Figure) -> str:
    """Every string on the figure (titles, labels, legends, tick labels, free text)."""
    out = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    for ax in fig.axes:
        out += [t.get_text() for t in ax.get_yticklabels() + ax.get_xticklabels()]
    return "\n".join(out)


def _line(fig: Figure, gid: str):
    found = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid() == gid]
    assert len(found) == 1, gid
    return found[0]


# --- RoPE: pure functions against algorithms.md §2.3-2.5 -------------------------------------------------

@pytest.mark.parametrize("base, rel, expected", [
    (1e4, 0, 32.50), (1e4, 1, 31.54), (1e4, 4, 22.60), (1e4, 16, 15.77), (1e4, 64, 10.09), (1e4, 256, 6.54),
    (1e4, 1024, 4.02), (1e4, 16384, 5.11), (5e5, 1024, 9.92), (1e6, 1, 31.66), (1e6, 256, 12.87),
    (1e6, 1024, 10.80), (1e6, 16384, 5.95)])
def test_decay_bound_matches_table(base, rel, expected):
    assert rope_decay_bound([rel], 128, base)[0] == pytest.approx(expected, abs=0.01)


def test_decay_bound_at_zero_is_half_of_d_over_2_plus_1():
    for d in (32, 64, 256):
        assert rope_decay_bound(0, d, 1e4)[0] == pytest.approx((d / 2 + 1) / 2)


def test_wavelengths_match_table():
    lam = {b: rope_wavelengths(128, b) for b in (1e4, 5e5, 1e6)}
    assert lam[1e4].shape == (64,)
    assert lam[1e4][63] == pytest.approx(54_410, rel=1e-4)
    assert lam[5e5][48] == pytest.approx(118_143, rel=1e-4)
    assert lam[1e6][32] == pytest.approx(6_283, rel=1e-4)
    for b in lam:
        assert lam[b][0] == pytest.approx(2 * math.pi, rel=1e-6)  # λ_0 = 2π whatever the base
    assert [int((lam[b] > 8192).sum()) for b in (1e4, 5e5, 1e6)] == [14, 29, 30]
    assert [int((lam[b] > 32768).sum()) for b in (1e4, 5e5, 1e6)] == [4, 22, 24]


def test_llama3_bands_29_29_6_from_the_llama31_preset():
    cfg = get_config("llama-3.1-8b")
    scaling = rope_scaling_dict("llama3", cfg.rope_scaling["factor"],
                                cfg.rope_scaling["original_max_position_embeddings"])
    assert scaling == cfg.rope_scaling
    bands = rope_bands(cfg.head_dim, cfg.rope_theta, scaling)
    assert rope_band_counts(bands) == {"kept": 29, "blended": 6, "divided": 29}
    assert rope_band_edges(bands) == (28, 35)


def test_yarn_qwen3_recipe_low_23_high_40():
    cfg = get_config("qwen3-8b")
    bands = rope_bands(cfg.head_dim, cfg.rope_theta, rope_scaling_dict("yarn", 4, 32768))
    assert rope_band_edges(bands) == (23, 40)  # pairs 0-23 unchanged, 24-39 ramped, 40-63 divided by 4
    assert rope_band_counts(bands) == {"kept": 24, "blended": 16, "divided": 24}


def test_yarn_deepseek_v3_preset_low_10_high_23():
    cfg = get_config("deepseek-v3")
    assert rope_band_edges(rope_bands(cfg.rope_dim, cfg.rope_theta, cfg.rope_scaling)) == (10, 23)


def test_linear_divides_every_pair_and_dynamic_waits_for_the_context():
    lam = rope_wavelengths(64, 1e4)
    np.testing.assert_allclose(rope_wavelengths(64, 1e4, rope_scaling_dict("linear", 4)), 4 * lam, rtol=1e-6)
    dyn = rope_scaling_dict("dynamic", 4)
    np.testing.assert_allclose(rope_wavelengths(64, 1e4, dyn, max_position_embeddings=4096, seq_len=4096), lam)
    assert (rope_wavelengths(64, 1e4, dyn, max_position_embeddings=4096, seq_len=16384)[1:] > lam[1:]).all()


def test_layout_permutation_and_live_check():
    assert layout_permutation(8).tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    for dim, base, pos, kind in [(64, 1e4, 7, "default"), (128, 5e5, 4000, "llama3"), (256, 1e6, 131072, "yarn")]:
        assert layout_mismatch(dim, base, pos, rope_scaling_dict(kind, 4, 4096)) < 1e-6


def test_pair_trail_is_the_rotation_by_m_theta():
    pos, pts = rope_pair_trail(128, 1e4, 5, 40, n=4)
    theta = 1e4 ** (-2 * 5 / 128)
    assert pos.tolist() == [37, 38, 39, 40]
    np.testing.assert_allclose(pts, np.c_[np.cos(pos * theta), np.sin(pos * theta)], atol=1e-5)
    _, pts = rope_pair_trail(128, 1e4, 5, 40, scaling=rope_scaling_dict("yarn", 4, 4096))
    assert np.hypot(*pts[-1]) == pytest.approx(0.1 * math.log(4) + 1, rel=1e-5)  # YaRN's attention factor


def test_rope_scaling_dict_rejects_unknown_kind():
    with pytest.raises(ValueError, match="scaling"):
        rope_scaling_dict("longrope", 4)
    with pytest.raises(ValueError, match="dim"):
        rope_wavelengths(63, 1e4)


# --- RoPE: the figure carries the computed numbers -------------------------------------------------------

def test_draw_rope_shows_the_computed_numbers():
    fig = Figure(figsize=(12, 8.6))
    draw_rope(fig, base=1e6, head_dim=128, position=300, pair=10, scaling="yarn", factor=4, original_context=32768)
    assert len(fig.axes) == 4
    np.testing.assert_allclose(_line(fig, "wavelength_unscaled").get_ydata(), rope_wavelengths(128, 1e6))
    scale = rope_scaling_dict("yarn", 4, 32768)
    np.testing.assert_allclose(_line(fig, "wavelength_scaled").get_ydata(), rope_wavelengths(128, 1e6, scale))
    decay = _line(fig, "decay_1e+06")
    np.testing.assert_allclose(decay.get_ydata(), rope_decay_bound(decay.get_xdata(), 128, 1e6))
    text = _texts(fig)
    assert "kept 24 · blended 16 · ÷4 24" in text
    assert f"{int((rope_wavelengths(128, 1e6) > 32768).sum())} of 64 pairs never complete a turn" in text
    assert layout_mismatch(128, 1e6, 300, scale, 32768) < 1e-6
    assert "max |interleaved(x)[P] − rotate_half(x[P])| = 0.0e+00 (any base, m ≤ 131k)" in text
    assert f"θ_i = {1e6 ** (-20 / 128):.3g} rad per token" in text


@pytest.mark.parametrize("scaling", list(SCALINGS.values()))
def test_draw_rope_every_scaling_on_all_panels(scaling):
    fig = Figure(figsize=(12, 8.6))
    draw_rope(fig, base=5e5, head_dim=96, position=40000, pair=47, scaling=scaling, factor=8, original_context=8192)
    assert len(fig.axes) == 4
    assert len(_line(fig, "wavelength_unscaled").get_ydata()) == 48
    assert (scaling == "default") != any(ln.get_gid() == "wavelength_scaled" for ln in fig.axes[1].get_lines())


def test_draw_rope_chosen_base_gets_its_own_decay_curve():
    fig = Figure()
    draw_rope(fig, base=5e5, head_dim=64, position=0, pair=0, panel="c")
    assert len(fig.axes) == 1
    curve = _line(fig, "decay_chosen")
    np.testing.assert_allclose(curve.get_ydata(), rope_decay_bound(curve.get_xdata(), 64, 5e5))


def test_draw_rope_on_a_used_figure_equals_a_fresh_one():
    """draw_rope keeps each view's Axes on the figure and redraws only their contents: the picture must not
    depend on what the figure showed before, and a figure cleared in between is drawn anew."""
    from llmviz.widgets.figure import figure_png
    start = dict(base=1e4, head_dim=128, position=100, pair=8)
    target = dict(base=5e5, head_dim=64, position=300, pair=5, scaling="yarn", factor=8, original_context=8192)
    for panel in PANELS.values():
        used = Figure()
        for before in (dict(panel="all", base=1e6, head_dim=256, pair=100, scaling="llama3"),
                       dict(panel=panel, base=1e2, head_dim=32, position=0, pair=0),
                       dict(panel="a" if panel == "c" else "c", scaling="dynamic", position=131072)):
            draw_rope(used, **{**start, **before})
        draw_rope(used, **target, panel=panel)
        fresh = Figure()
        draw_rope(fresh, **target, panel=panel)
        assert len(used.axes) == len(fresh.axes) == (4 if panel == "all" else 1)
        assert figure_png(used, dpi=40) == figure_png(fresh, dpi=40), panel
    used.clear()
    draw_rope(used, **target, panel="all")
    assert figure_png(used, dpi=40) == figure_png(fresh, dpi=40)


# --- RoPE: the widget ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rope_w():
    return rope_explorer()


def _moves(w, name, values, must_change=True):
    """Set a control to each value; the PNG changes each time (or stays, when must_change is False)."""
    control = w.controls[name]
    for value in values:
        if control.value == value:
            continue
        before = w.image.value
        control.value = value
        assert control.value == value
        assert w.image.value[:8] == b"\x89PNG\r\n\x1a\n"
        assert (w.image.value != before) == must_change, (name, value)


def test_rope_explorer_every_control(rope_w):
    w = rope_w
    c = w.controls
    assert set(c) == {"base_preset", "base", "head_dim", "position", "pair", "scaling", "factor", "original_context",
                      "panel"}
    # each control in one panel that shows its effect (a third of the drawing time of all four);
    # test_draw_rope_every_scaling_on_all_panels covers the other panels
    c["panel"].value = "b"
    _moves(w, "scaling", [k for k in SCALINGS.values() if k != "default"] + ["default"])
    c["panel"].value = "d"
    c["pair"].value = c["pair"].max
    for head_dim in [d for d in HEAD_DIMS if d != 128] + [128]:
        _moves(w, "head_dim", [head_dim])
        assert c["pair"].max == head_dim // 2 - 1  # the pair range follows head_dim, the value is clamped
        assert c["pair"].value <= c["pair"].max
    c["panel"].value = "b"
    for value in BASE_PRESETS.values():
        _moves(w, "base_preset", [value])
        assert c["base"].value == value
    _moves(w, "base_preset", [CUSTOM_BASE], must_change=False)  # "custom" hands over to the slider
    _moves(w, "base", [1e2, 1e7])
    assert c["base_preset"].value == CUSTOM_BASE
    _moves(w, "base", [1e4])
    assert c["base_preset"].value == 1e4
    c["scaling"].value = "yarn"
    _moves(w, "factor", [1, 64])
    _moves(w, "original_context", [n for n in ORIGINAL_CONTEXTS if n != 4096] + [4096])
    c["panel"].value = "a"
    _moves(w, "position", [0, 131072])
    _moves(w, "pair", [c["pair"].max, 3])
    _moves(w, "panel", list(PANELS.values()))


# one move per control away from the defaults; "position" also crosses L, so that dynamic NTK becomes active
_ROPE_MOVES = dict(base_preset=1e6, base=2e5, head_dim=64, pair=3, position=5000, scaling="yarn", factor=8,
                   original_context=2048)


@pytest.mark.parametrize("scaling", list(SCALINGS.values()))
@pytest.mark.parametrize("panel", list(PANELS.values()))
def test_rope_enabled_controls_change_the_picture_disabled_ones_do_not(panel, scaling):
    """Review point 13: a control the picture does not depend on is disabled, and every enabled one changes it."""
    w = rope_explorer(panel=panel, scaling=scaling)
    w.dpi = 36  # the same picture, cheaper to encode
    w.redraw()
    used = rope_controls_used(panel, scaling)
    assert {n for n, c in w.controls.items() if not c.disabled} == used
    for name, value in _ROPE_MOVES.items():
        control = w.controls[name]
        if name == "scaling" and scaling == "yarn":
            value = "llama3"
        old, before = control.value, w.image.value
        control.value = value
        changed = w.image.value != before
        assert changed == (name in used), (panel, scaling, name)
        control.value = old
        if name == "base_preset":
            w.controls["base"].value = 1e4
        assert w.image.value == before, (panel, scaling, name)  # back where it was
    assert not w.controls["panel"].disabled
    w.controls["panel"].value = "d"  # the enabled set follows the panel and the scaling
    assert w.controls["base"].disabled and w.controls["position"].disabled and not w.controls["pair"].disabled
    w.controls["panel"].value = "a"
    w.controls["scaling"].value = "default"
    assert w.controls["factor"].disabled and w.controls["original_context"].disabled
    w.controls["scaling"].value = "linear"
    assert not w.controls["factor"].disabled and w.controls["original_context"].disabled


def test_rope_explorer_initial_values():
    w = rope_explorer(base=1e6, head_dim=64, scaling="YaRN", pair=31, panel="d")
    assert w.controls["base_preset"].value == 1e6
    assert (w.values["head_dim"], w.values["scaling"], w.values["pair"]) == (64, "yarn", 31)
    assert "rope_explorer(" in repr(w)


@pytest.mark.parametrize("kwargs, name", [
    (dict(base=0.5), "base"), (dict(base="1e4"), "base"), (dict(head_dim=100), "head_dim"),
    (dict(pair=64), "pair"), (dict(head_dim=64, pair=32), "pair"), (dict(position=-1), "position"),
    (dict(scaling="ntk"), "scaling"), (dict(factor=0), "factor"), (dict(original_context=1000), "original_context"),
    (dict(panel="e"), "panel"), (dict(theta=1e4), "theta")])
def test_rope_explorer_rejects_bad_initial_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        rope_explorer(**kwargs)


# --- GQA: pure functions ---------------------------------------------------------------------------------

def test_kv_head_of_is_hf_repeat_kv():
    assert [kv_head_of(h, 8, 2) for h in range(8)] == [0, 0, 0, 0, 1, 1, 1, 1]
    ref = torch.arange(4).repeat_interleave(8)  # HF repeat_kv == repeat_interleave on the head axis
    assert [kv_head_of(h, 32, 4) for h in range(32)] == ref.tolist()
    assert {kv_head_of(h, 16, 1) for h in range(16)} == {0}
    with pytest.raises(ValueError, match="n_kv"):
        kv_head_of(0, 8, 3)


def test_divisors():
    assert divisors(12) == [1, 2, 3, 4, 6, 12]
    assert divisors(7) == [1, 7]
    assert divisors(1) == [1]


@pytest.mark.parametrize("name, kind, per_token", [
    ("llama-2-7b", "MHA", 524_288), ("llama-3-8b", "GQA", 131_072), ("qwen3-0.6b", "GQA", 114_688),
    ("deepseek-v3", "MLA", 70_272)])
def test_kv_table_matches_algorithms_table(name, kind, per_token):
    rows = kv_cache_table(get_config(name), 4096, 2)
    mine = [r for r in rows if r.is_config]
    assert [(r.kind, r.bytes_per_token) for r in mine] == [(kind, per_token)]
    assert mine[0].bytes_total == 4096 * per_token


def test_kv_table_uses_kv_cache_bytes_and_the_head_ratio():
    cfg = get_config("llama-2-70b")
    rows = {r.kind: r for r in kv_cache_table(cfg, 32768, 1, kv_heads=16)}
    for kind, n in (("MHA", 64), ("GQA", 16), ("MQA", 1)):
        assert rows[kind].bytes_total == kv_cache_bytes(cfg.replace(num_kv_heads=n), seq_len=32768, bytes_per_elem=1)
        assert rows[kind].saving == pytest.approx(1 - n / 64)
        assert rows[kind].saving == pytest.approx(1 - rows[kind].bytes_total / rows["MHA"].bytes_total)
    assert rows["MLA"].bytes_total == kv_cache_bytes(get_config("deepseek-v3"), seq_len=32768, bytes_per_elem=1)
    assert rows["MLA"].saving == pytest.approx(1 - 576 / (2 * 128 * 128))
    assert [r.reference for r in rows.values()] == ["llama-2-70b"] * 3 + ["deepseek-v3"]
    assert rows["MLA"].label == "MLA · deepseek-v3\n(another model)"
    own = {r.kind: r for r in kv_cache_table(get_config("deepseek-v3"), 4096)}
    assert own["MLA"].reference == "deepseek-v3" and own["MLA"].label == "MLA · this model"


@pytest.mark.parametrize("name, saving", [  # facts.md §13 #32
    ("qwen3-0.6b", 0.5), ("qwen3-1.7b", 0.5), ("qwen3-4b", 0.75), ("qwen3-8b", 0.75), ("qwen3-14b", 0.8),
    ("qwen3-32b", 0.875), ("qwen3-30b-a3b", 0.875), ("qwen3-235b-a22b", 0.9375)])
def test_qwen3_gqa_saving(name, saving):
    gqa = next(r for r in kv_cache_table(get_config(name), 1024) if r.kind == "GQA")
    assert gqa.is_config and gqa.saving == pytest.approx(saving)


def test_custom_config_and_format_bytes():
    cfg = gqa_config(CUSTOM, 12, 3)
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.num_layers, cfg.head_dim) == (12, 3, 32, 128)
    with pytest.raises(ValueError, match="kv_heads"):
        gqa_config(CUSTOM, 12, 5)
    assert format_bytes(131072) == "128 KiB"
    assert format_bytes(2 * 1024 ** 3) == "2 GiB"
    assert format_bytes(70272) == "68.6 KiB"
    assert format_bytes(100) == "100 B"
    assert [format_percent(x) for x in (0.9375, 0.875, 0.75, 0.0)] == ["93.75%", "87.5%", "75%", "0%"]


# --- GQA: the figure -------------------------------------------------------------------------------------

def test_draw_gqa_shows_the_computed_numbers():
    fig = Figure(figsize=(12, 5.4))
    draw_gqa(fig, model="llama-3-8b", heads=32, kv_heads=8, context=32768, bytes_per_elem=2)
    text = _texts(fig)
    assert "saving vs this model's MHA: 1 − 8/32 = 75%" in text
    assert "(−75% vs MHA)" in text  # llama-3-8b's GQA vs llama-3-8b's MHA
    # review point 3: the contrast MLA bar is DeepSeek-V3's, and its saving is against DeepSeek-V3's MHA, named so
    assert "MLA · deepseek-v3\n(another model)" in text
    assert "(−98.24% vs deepseek-v3's MHA)" in text
    assert "(−98.24%)" not in text
    for r in kv_cache_table(get_config("llama-3-8b"), 32768, 2):
        assert f"{r.bytes_per_token:,} B/token" in text
        assert format_bytes(r.bytes_total) in text
    ax_g = fig.axes[0]
    segs = [s for coll in ax_g.collections if isinstance(coll, LineCollection) for s in coll.get_segments()]
    assert len(segs) == 32
    kv_x = {kv_head_of(h, 32, 8): seg[1][0] for h, seg in enumerate(segs)}  # KV head under its group's middle
    assert kv_x == {g: 4 * g + 1.5 for g in range(8)}


def test_draw_gqa_caps_the_diagram_at_64_heads():
    fig = Figure()
    draw_gqa(fig, model="deepseek-v3", heads=128, kv_heads=128, context=4096, bytes_per_elem=2)
    segs = [s for coll in fig.axes[0].collections if isinstance(coll, LineCollection) for s in coll.get_segments()]
    assert len(segs) == MAX_DRAWN
    text = _texts(fig)
    assert f"showing query heads 0–{MAX_DRAWN - 1} of 128" in text
    assert "(−98.24% vs MHA)" in text  # MLA vs its own MHA: 1 − 576 / (2 · 128 · 128)
    assert "70,272 B/token" in text


def test_draw_gqa_on_a_used_figure_equals_a_fresh_one():
    """draw_gqa keeps its two Axes on the figure and replaces their contents: the picture must not depend on
    what the figure showed before, and a figure cleared in between is drawn anew."""
    from llmviz.widgets.figure import figure_png
    used = Figure()
    for values in (dict(model="deepseek-v3", heads=None, kv_heads=128, context=1_048_576, bytes_per_elem=4),
                   dict(model=CUSTOM, heads=7, kv_heads=7), dict(model="llama-3-8b", heads=None, kv_heads=1)):
        draw_gqa(used, **values)
    target = dict(model="qwen3-8b", heads=None, kv_heads=2, context=32768, bytes_per_elem=1)
    draw_gqa(used, **target)
    fresh = Figure()
    draw_gqa(fresh, **target)
    assert len(used.axes) == len(fresh.axes) == 2
    assert figure_png(used, dpi=40) == figure_png(fresh, dpi=40)
    used.clear()
    draw_gqa(used, **target)
    assert figure_png(used, dpi=40) == figure_png(fresh, dpi=40)


# --- GQA: the widget -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gqa_w():
    return gqa_explorer()


def test_gqa_every_model_brings_its_heads(gqa_w):
    c = gqa_w.controls
    for name in [m for m in GQA_MODELS if m != c["model"].value] + ["llama-3-8b"]:
        before = gqa_w.image.value
        c["model"].value = name
        cfg = get_config(name)
        assert (c["heads"].value, c["kv_heads"].value) == (cfg.num_heads, cfg.num_kv_heads)
        assert list(c["kv_heads"].options) == divisors(cfg.num_heads)
        assert c["heads"].disabled
        assert gqa_w.image.value != before, name


def test_gqa_custom_heads_offer_only_divisors(gqa_w):
    c = gqa_w.controls
    c["model"].value = CUSTOM
    assert not c["heads"].disabled
    for heads in (12, 7, 128):
        before = gqa_w.image.value
        c["heads"].value = heads
        assert list(c["kv_heads"].options) == divisors(heads)
        assert heads % c["kv_heads"].value == 0
        assert gqa_w.image.value != before
    c["heads"].value = 12
    _moves(gqa_w, "kv_heads", divisors(12))


def test_gqa_context_and_dtype(gqa_w):
    gqa_w.controls["model"].value = "qwen3-8b"
    _moves(gqa_w, "context", [CONTEXTS[0][1], CONTEXTS[-1][1], 131072])
    _moves(gqa_w, "bytes_per_elem", [b for _, b in DTYPES])


def test_gqa_initial_values():
    w = gqa_explorer(model="qwen3-235b-a22b", kv_heads=1, context=131072, bytes_per_elem=1)
    assert w.values == dict(model="qwen3-235b-a22b", heads=64, kv_heads=1, context=131072, bytes_per_elem=1)
    assert gqa_explorer(model=CUSTOM, heads=6, kv_heads=3).values["kv_heads"] == 3


@pytest.mark.parametrize("kwargs, name", [
    (dict(model="llama-9"), "model"), (dict(model=CUSTOM, heads=0), "heads"), (dict(model=CUSTOM, heads=200), "heads"),
    (dict(model="llama-3-8b", heads=16), "heads"), (dict(model="llama-3-8b", kv_heads=3), "kv_heads"),
    (dict(model=CUSTOM, heads=12, kv_heads=5), "kv_heads"), (dict(context=5000), "context"),
    (dict(bytes_per_elem=3), "bytes_per_elem"), (dict(heads_q=3), "heads_q")])
def test_gqa_explorer_rejects_bad_initial_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gqa_explorer(**kwargs)


def _count_draws(w, monkeypatch):
    """Record the values of every redraw of ``w`` during the test."""
    calls, original = [], w.draw

    def counting(fig, **values):
        calls.append(values)
        original(fig, **values)

    monkeypatch.setattr(w, "draw", counting)
    return calls


def test_linked_controls_redraw_once(rope_w, gqa_w, monkeypatch):
    rope_w.controls["panel"].value = "a"
    rope_w.controls["base"].value = 1e4
    calls = _count_draws(rope_w, monkeypatch)
    rope_w.controls["base_preset"].value = 1e6  # moves the slider: one redraw, with the new base
    rope_w.controls["base"].value = 2e4  # the preset dropdown follows without a redraw of its own
    assert [c["base"] for c in calls] == [1e6, 2e4]
    gqa_w.controls["model"].value = "llama-3-8b"
    calls = _count_draws(gqa_w, monkeypatch)
    gqa_w.controls["model"].value = "qwen3-235b-a22b"  # heads, KV options and KV value follow: one redraw
    gqa_w.controls["heads"].value = 12  # a preset's head count is fixed: this makes a custom model
    gqa_w.controls["model"].value = "llama-2-70b"
    gqa_w.controls["model"].value = CUSTOM  # keeps the heads it had
    gqa_w.controls["heads"].value = 12  # KV heads: the largest divisor of 12 not above 8
    assert [(c["model"], c["heads"], c["kv_heads"]) for c in calls] == [
        ("qwen3-235b-a22b", 64, 4), (CUSTOM, 12, 4), ("llama-2-70b", 64, 8), (CUSTOM, 64, 8), (CUSTOM, 12, 6)]
