"""Decoding explorer: the distribution is computed once, the bars drawn are filter_logits + softmax (what
generate samples from), every offered control value redraws, and bad inputs are named."""
from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from llmviz import build_model, get_config
from llmviz.data import ByteTokenizer
from llmviz.generate import filter_logits, generate
from llmviz.widgets import sampling_explorer
from llmviz.widgets.figure import figure_png
from llmviz.widgets.sampling import (N_SHOW, TEMPERATURES, TOP_KS, TOP_PS, draw_sampling, next_token_logits,
                                     sampling_stats, token_label)

TOK = ByteTokenizer()
PROMPT = TOK.encode("The return value of ")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model(get_config("tiny-gpt2"))
    with torch.no_grad():  # a peaked, uneven distribution (a fresh init is nearly uniform)
        m.embed.weight.mul_(40)
    return m.eval()


@pytest.fixture(scope="module")
def widget(model):
    return sampling_explorer(model, TOK, PROMPT)


def _expected(logits, temperature, top_k, top_p):
    """filter_logits + softmax, written against generate's own call."""
    filtered = filter_logits(logits[None] / temperature, top_k or None, top_p if top_p < 1 else None)[0]
    return torch.softmax(filtered, -1), torch.isfinite(filtered)


def _state(fig):
    return fig.__dict__["_llmviz_sampling"]


# --------------------------------------------------------------------------- the numbers are filter_logits'

def test_logits_are_the_models_last_position(model):
    with torch.no_grad():
        want = model(torch.tensor([PROMPT]))[0, -1]
    torch.testing.assert_close(next_token_logits(model, PROMPT), want)
    model.train()
    next_token_logits(model, torch.tensor([PROMPT]))       # [1, T] is accepted too
    assert model.training                                  # the mode is restored
    model.eval()


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 0, 1.0), (0.5, 5, 1.0), (1.5, 0, 0.9),
                                                       (0.8, 20, 0.5), (3.0, 100, 0.99), (0.1, 1, 0.1)])
def test_stats_equal_filter_logits_and_softmax(widget, temperature, top_k, top_p):
    logits = widget.logits
    s = sampling_stats(logits, temperature, top_k, top_p)
    p_final, kept = _expected(logits, temperature, top_k, top_p)
    torch.testing.assert_close(s["p_final"], p_final)
    assert torch.equal(s["kept"], kept) and s["n_kept"] == int(kept.sum())
    p_temp = torch.softmax(logits / temperature, -1)
    torch.testing.assert_close(s["p_temp"], p_temp)
    torch.testing.assert_close(s["p_model"], torch.softmax(logits, -1))
    assert s["mass_kept"] == pytest.approx(float(p_temp[kept].sum()), abs=1e-6)
    for key, p in (("h_model", s["p_model"]), ("h_final", p_final)):
        nz = p > 0
        assert s[key] == pytest.approx(float(-(p[nz] * p[nz].log()).sum()), abs=1e-4)


def test_the_bars_drawn_are_the_computed_probabilities(widget):
    widget.controls["temperature"].value = 0.7
    widget.controls["top_k"].value = 10
    widget.controls["top_p"].value = 0.8
    a = _state(widget.fig)
    logits = widget.logits
    p_final, kept = _expected(logits, 0.7, 10, 0.8)
    order = torch.argsort(torch.softmax(logits, -1), descending=True, stable=True)[:N_SHOW]
    heights = np.array([b.get_height() for b in a.final_bars])
    np.testing.assert_allclose(heights, np.where(kept[order].numpy(), p_final[order].numpy(), 0.0), atol=1e-7)
    model_heights = np.array([b.get_height() for b in a.model_bars])
    np.testing.assert_allclose(model_heights, torch.softmax(logits, -1)[order].numpy(), atol=1e-7)
    np.testing.assert_allclose(a.temp.get_ydata(), torch.softmax(logits / 0.7, -1)[order].numpy(), atol=1e-7)
    assert [t.get_text() for t in a.labels] == [widget.tokens[i] for i in order.tolist()]
    text = a.numbers.get_text()
    s = sampling_stats(logits, 0.7, 10, 0.8)
    assert f"kept: {s['n_kept']:,} of 256 tokens" in text
    assert f"{100 * s['mass_kept']:.1f}% of softmax(logits / T)" in text
    assert f"{s['h_final']:.2f} nats" in text and f"{s['h_model']:.2f} nats" in text


def test_top_k_keeps_k_and_top_p_keeps_the_smallest_set_reaching_p(widget):
    logits = widget.logits
    for k in (1, 2, 5, 50):
        assert sampling_stats(logits, 1.0, k, 1.0)["n_kept"] == k
    p_sorted = torch.softmax(logits, -1).sort(descending=True).values
    for p in (0.1, 0.5, 0.9, 0.99):
        s = sampling_stats(logits, 1.0, 0, p)
        assert s["mass_kept"] >= p - 1e-6
        assert float(p_sorted[: s["n_kept"] - 1].sum()) < p          # one token fewer would not reach p
    # the temperature sharpens (T < 1) or flattens (T > 1) the distribution: entropy grows with T
    h = [sampling_stats(logits, t)["h_temp"] for t in TEMPERATURES]
    assert h == sorted(h)
    assert sampling_stats(logits, 1.0)["n_kept"] == 256                # everything off: nothing removed


def test_the_explorer_shows_what_generate_samples_from(model):
    """generate(temperature, top_k, top_p) draws its first token from exactly the distribution drawn."""
    logits = next_token_logits(model, PROMPT)
    for seed, (t, k, p) in enumerate([(0.8, 0, 0.9), (1.2, 20, 1.0), (0.5, 5, 0.5)]):
        out = generate(model, torch.tensor([PROMPT]), 1, temperature=t, top_k=k or None,
                       top_p=p if p < 1 else None, generator=torch.Generator().manual_seed(seed))
        probs = sampling_stats(logits, t, k, p)["p_final"]
        want = torch.multinomial(probs[None], 1, generator=torch.Generator().manual_seed(seed))
        assert int(out[0, -1]) == int(want)
        assert bool(sampling_stats(logits, t, k, p)["kept"][int(want)])


def test_full_grid_of_offered_values_is_valid(widget):
    """Every combination the sliders offer gives a proper distribution over a non-empty kept set."""
    logits = widget.logits
    for t, k, p in itertools.product(TEMPERATURES, TOP_KS, TOP_PS):
        s = sampling_stats(logits, t, k, p)
        assert s["n_kept"] >= 1 and (k == 0 or s["n_kept"] <= k)
        assert float(s["p_final"].sum()) == pytest.approx(1.0, abs=1e-5)
        assert float(s["p_final"][~s["kept"]].sum()) == 0.0
        assert 0 < s["mass_kept"] <= 1 + 1e-6 and s["h_final"] <= s["h_temp"] + 1e-6


# --------------------------------------------------------------------------- the widget

def test_every_control_redraws_through_its_offered_values(widget):
    for name, control in widget.controls.items():
        start = control.value
        for _, value in control.options:
            before = widget.image.value
            control.value = value
            assert widget.values[name] == value
            if value != start:
                assert widget.image.value != before or value == start
        control.value = start
    assert widget.image.value[:8] == b"\x89PNG\r\n\x1a\n"


def test_offered_values_and_display(widget, model):
    assert [v for _, v in widget.controls["temperature"].options] == list(TEMPERATURES)
    assert [v for _, v in widget.controls["top_p"].options] == list(TOP_PS)
    assert [v for _, v in widget.controls["top_k"].options] == [k for k in TOP_KS if k < 256]
    small = build_model(get_config("tiny-gpt2").replace(vocab_size=64)).eval()
    w = sampling_explorer(small, TOK, [5, 6, 7], n_show=10)
    assert max(v for _, v in w.controls["top_k"].options) < 64        # never offer k >= vocabulary
    bundle = widget._repr_mimebundle_()
    assert bundle["text/plain"].startswith("sampling_explorer(temperature=")
    assert "image/png" in bundle


def test_initial_values_and_a_plain_decode_function(model):
    w = sampling_explorer(model, TOK.decode, torch.tensor(PROMPT), temperature=0.5, top_k=5, top_p=0.9)
    assert w.values == dict(temperature=0.5, top_k=5, top_p=0.9)
    assert sampling_stats(w.logits, **w.values)["n_kept"] <= 5
    assert len(w.tokens) == 256


def test_a_used_figure_draws_the_same_png_as_a_fresh_one(widget):
    logits, tokens = widget.logits, widget.tokens
    used = Figure()
    for values in ((2.0, 100, 0.5), (0.1, 1, 1.0), (1.0, 0, 0.9)):
        draw_sampling(used, logits, tokens, *values)
    draw_sampling(used, logits, tokens, 0.7, 10, 0.8)
    fresh = Figure()
    draw_sampling(fresh, logits, tokens, 0.7, 10, 0.8)
    assert figure_png(used, dpi=30) == figure_png(fresh, dpi=30)


def test_token_labels_are_visible():
    assert token_label(TOK.decode, ord(" ")) == "␣"
    assert token_label(TOK.decode, ord("\n")) == "\\n"
    assert token_label(TOK.decode, 4) == "\\x04"
    assert token_label(TOK.decode, 200) == "<200>"                   # a lone UTF-8 continuation byte
    assert token_label(lambda ids: "abcdefghijkl", 0) == "abcdefg…"


# --------------------------------------------------------------------------- bad inputs are named

@pytest.mark.parametrize("kwargs, pattern", [
    (dict(temperature=0.25), "temperature=0.25 is not allowed: temperature must be one of the offered values"),
    (dict(temperature=0), "temperature=0 is not allowed"),
    (dict(top_k=7), "top_k=7 is not allowed"),
    (dict(top_k=True), "top_k=True is not allowed"),
    (dict(top_p=0.0), "top_p=0.0 is not allowed"),
    (dict(beam=2), "beam=2 is not allowed: sampling_explorer takes only"),
    (dict(n_show=1), "n_show=1 is not allowed"),
    (dict(n_show=41), "n_show=41 is not allowed"),
])
def test_bad_initial_values_are_named(model, kwargs, pattern):
    with pytest.raises(ValueError, match=re.escape(pattern)):
        sampling_explorer(model, TOK, PROMPT, **kwargs)


@pytest.mark.parametrize("prompt, pattern", [
    ([], "prompt_ids=(0,) is not allowed"),
    (torch.zeros(2, 3, dtype=torch.long), "prompt_ids=(2, 3) is not allowed: give one prompt"),
    (torch.zeros(3), "prompt_ids=torch.float32 is not allowed: ids must be integers"),
    ([1, 300], "prompt_ids=[1, 300] is not allowed: ids must lie in [0, vocab_size=256)"),
    (list(range(200)), "prompt_ids=(200,) is not allowed: prompt_ids must be one sequence of 1..128 token ids"),
])
def test_bad_prompts_are_named(model, prompt, pattern):
    with pytest.raises(ValueError, match=re.escape(pattern)):
        sampling_explorer(model, TOK, prompt)


def test_bad_tokenizer_and_bad_stats_arguments_are_named(model, widget):
    with pytest.raises(ValueError, match=re.escape("tokenizer_or_decode='str' is not allowed: give a tokenizer")):
        sampling_explorer(model, "ByteTokenizer", PROMPT)
    with pytest.raises(ValueError, match=re.escape("temperature=-1 is not allowed")):
        sampling_stats(widget.logits, -1)
    with pytest.raises(ValueError, match=re.escape("top_p=1.5 is not allowed")):
        sampling_stats(widget.logits, 1.0, 0, 1.5)
    with pytest.raises(ValueError, match=re.escape("top_k=-2 is not allowed")):
        sampling_stats(widget.logits, 1.0, -2)
    with pytest.raises(ValueError, match=re.escape("logits=(2, 256) is not allowed")):
        sampling_stats(widget.logits[None].repeat(2, 1))
    with pytest.raises(ValueError, match=re.escape("tokens='<3 labels>' is not allowed")):
        draw_sampling(Figure(), widget.logits, ["a", "b", "c"])
