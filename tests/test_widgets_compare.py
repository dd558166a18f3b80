"""Comparison explorer: every drawn number is llmviz.compare's, the context options follow the models, every
control changes the picture, bad arguments are refused by name."""
from __future__ import annotations

import html
import math

import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from llmviz.compare import ACCELERATORS, ARCHITECTURE_COLUMNS, architecture, serving_estimate
from llmviz.configs import get_config, list_configs
from llmviz.widgets import comparison_explorer
from llmviz.widgets.compare import (BATCHES, BOUND_COLOURS, DEFAULT_MODELS, KV_DTYPES, MAX_MODELS, WEIGHT_DTYPES,
                                    architecture_table, context_limit, context_options, decoder_models,
                                    draw_comparison, short_name)
from llmviz.widgets.figure import figure_png


def _texts(fig: Figure) -> dict[str, str]:
    """The free texts of the figure, by gid."""
    return {t.get_gid(): t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid()}


def _patch(fig: Figure, gid: str):
    found = [p for ax in fig.axes for p in ax.patches if p.get_gid() == gid]
    assert len(found) == 1, gid
    return found[0]


def _right_end(patch) -> float:
    return patch.get_x() + patch.get_width()


# --- pure parts ------------------------------------------------------------------------------------------

def test_decoder_models_are_the_real_decoder_presets():
    names = decoder_models()
    assert set(DEFAULT_MODELS) <= set(names)
    assert all(not n.startswith("tiny-") for n in names)
    assert all(get_config(n).arch not in ("bert", "transformer") for n in names)
    assert len(names) == sum(not n.startswith("tiny-") and get_config(n).arch not in ("bert", "transformer")
                             for n in list_configs())


@pytest.mark.parametrize("models", [DEFAULT_MODELS, ("gpt2",), ("qwen3-0.6b", "deepseek-v3"), ("llama-3.1-405b",),
                                    ("gpt-1", "llama-3-8b")])
def test_context_options_stay_within_every_model(models):
    options = context_options(models)
    smallest = min(get_config(m).context_length or get_config(m).max_position_embeddings for m in models)
    assert max(options) <= smallest
    assert options == sorted(options)
    if smallest >= 1024:
        assert options[0] == 1024 and all(o & (o - 1) == 0 for o in options)
        assert 2 * max(options) > smallest  # up to the limit, not short of it
    else:  # GPT-1: 512 tokens, offered alone
        assert options == [smallest]


def test_short_accelerator_names():
    assert [short_name(a) for a in ACCELERATORS] == ["H100", "H200", "A100", "RTX 4090", "TPU v5e"]


def test_draw_shows_the_numbers_of_serving_estimate():
    models = ("gpt2", "qwen3-0.6b", "llama-3.1-405b", "deepseek-v3", "gpt3-175b", "qwen3-235b-a22b")
    for acc, batch, bpp, kvb in (("NVIDIA H100 SXM", 1, 2, 2), ("NVIDIA RTX 4090", 128, 0.5, 1)):
        fig = Figure()
        draw_comparison(fig, models, 1024, batch, bpp, kvb, acc)
        texts = _texts(fig)
        chip = short_name(acc)
        bounds = set()
        for m in models:
            e = serving_estimate(get_config(m), acc, 1024, batch, bpp, kvb)
            assert math.isclose(_right_end(_patch(fig, f"weights_{m}")), e.weights / 1e9)
            assert math.isclose(_right_end(_patch(fig, f"total_{m}")), (e.weights + e.kv_cache) / 1e9)
            assert texts[f"devices_{m}"] == f" ×{e.devices} {chip}"
            assert texts[f"rate_{m}"].strip().endswith("tok/s")
            shown = float(texts[f"rate_{m}"].split()[0].replace(",", ""))
            assert math.isclose(shown, e.tokens_per_s, rel_tol=5e-3, abs_tol=0.5)
            bounds.add(e.bound)
        speed = [p for p in fig.axes[1].patches if p.get_gid() == "speed" or p.get_gid() is None]
        assert len(speed) == len(models)
        for p, m in zip(speed, models):
            e = serving_estimate(get_config(m), acc, 1024, batch, bpp, kvb)
            assert math.isclose(_right_end(p), e.tokens_per_s)
            assert to_hex(p.get_facecolor()) == BOUND_COLOURS[e.bound].lower()
        assert texts["memory_label"] == f" one {chip}: {ACCELERATORS[acc].memory / 1e9:.3g} GB"
        assert fig.axes[0].lines[0].get_xdata()[0] == ACCELERATORS[acc].memory / 1e9
        assert "roofline estimate, not a measurement" in fig.axes[1].get_title()
    assert bounds == {"memory", "compute"}  # batch 128 on RTX 4090s: Llama-3.1-405B is compute-bound
    assert serving_estimate(get_config("deepseek-v3"), "NVIDIA H100 SXM", 1024).devices == 17


def test_text_is_readable_on_a_projector():
    fig = Figure()
    draw_comparison(fig, DEFAULT_MODELS, 4096)
    sizes = [t.get_fontsize() for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontsize"))
             if t.get_text().strip()]
    assert sizes and min(sizes) >= 11


def test_draw_on_a_used_figure_equals_a_fresh_one():
    used = Figure()
    for values in (dict(models=("gpt2",), seq_len=1024, batch=128, bytes_per_param=0.5,
                        accelerator="Google TPU v5e"),
                   dict(models=("llama-3.1-405b", "qwen3-0.6b", "deepseek-v2"), seq_len=32768, kv_bytes_per_elem=1)):
        draw_comparison(used, **values)
    target = dict(models=DEFAULT_MODELS, seq_len=4096, batch=8, bytes_per_param=1, accelerator="NVIDIA H200 SXM")
    draw_comparison(used, **target)
    fresh = Figure()
    draw_comparison(fresh, **target)
    assert len(used.axes) == len(fresh.axes) == 2
    assert figure_png(used, dpi=40) == figure_png(fresh, dpi=40)


def test_architecture_table_has_a_row_per_model():
    table = architecture_table(DEFAULT_MODELS)
    assert table.count("<tr>") == len(DEFAULT_MODELS) + 1  # header + one row each
    for m in DEFAULT_MODELS:
        for c in ARCHITECTURE_COLUMNS:
            assert html.escape(architecture(get_config(m))[c]) in table
    deepseek_row = table.split("deepseek-v3")[1]
    assert "MLA" in deepseek_row and "MoE" in deepseek_row


# --- the widget ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def w():
    return comparison_explorer()


def _models(widget, models):
    widget.controls["models"].value = tuple(models)


def test_defaults(w):
    assert w.values == dict(models=DEFAULT_MODELS, seq_len=4096, batch=1, bytes_per_param=2, kv_bytes_per_elem=2,
                            accelerator="NVIDIA H100 SXM")  # llama-2-13b stops at 4K, below the 32K default
    assert [o for _, o in w.controls["seq_len"].options] == [1024, 2048, 4096]
    assert w.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "llama-2-13b stops at 4K" in w.status.value
    assert w.table.value.count("<tr>") == len(DEFAULT_MODELS) + 1
    assert w.status in w.children and w.table in w.children
    wide = comparison_explorer(models=("llama-3-8b", "deepseek-v3"))
    assert wide.values["seq_len"] == 8192  # llama-3-8b: 8K
    assert comparison_explorer(models=("qwen3-8b", "deepseek-v3")).values["seq_len"] == 32768


def test_context_follows_the_models(w):
    _models(w, DEFAULT_MODELS)
    w.controls["seq_len"].value = 4096
    before = w.image.value
    _models(w, DEFAULT_MODELS + ("gpt2",))
    assert [o for _, o in w.controls["seq_len"].options] == [1024]
    assert w.controls["seq_len"].value == 1024
    assert "context set to 1K: gpt2 stops at 1K" in w.status.value
    assert w.image.value != before
    _models(w, ("gpt2", "gpt2-medium"))
    assert "gpt2, gpt2-medium stop at 1K" in w.status.value
    _models(w, ("llama-3-8b", "qwen3-8b"))  # more contexts offered; the value stays
    assert [o for _, o in w.controls["seq_len"].options] == [1024, 2048, 4096, 8192]
    assert w.controls["seq_len"].value == 1024
    assert "context set" not in w.status.value and "llama-3-8b stops at 8K" in w.status.value
    for models in (("qwen3-0.6b",), ("deepseek-v3", "llama-3.1-405b"), ("gpt-1", "qwen3-8b")):
        _models(w, models)
        assert max(o for _, o in w.controls["seq_len"].options) <= min(context_limit(m) for m in models)
        assert w.controls["seq_len"].value in [o for _, o in w.controls["seq_len"].options]


def test_a_bad_selection_keeps_the_last_picture(w):
    _models(w, DEFAULT_MODELS)
    before, table = w.image.value, w.table.value
    _models(w, ())
    assert "Select 1 to 6 models" in w.status.value and "no model" in w.status.value
    assert w.image.value == before and w.table.value == table
    _models(w, decoder_models()[:MAX_MODELS + 1])
    assert "7 models are selected" in w.status.value
    assert w.image.value == before
    w.controls["batch"].value = 8  # another control while the selection is bad: still no garbage
    assert w.image.value == before and "Select 1 to 6" in w.status.value
    _models(w, ("llama-3-8b",))
    assert w.image.value != before and "Select" not in w.status.value
    assert w.table.value.count("<tr>") == 2
    w.controls["batch"].value = 1


def test_every_control_changes_the_picture(w):
    _models(w, DEFAULT_MODELS)
    for name, v in dict(seq_len=4096, batch=1, bytes_per_param=2, kv_bytes_per_elem=2,
                        accelerator="NVIDIA H100 SXM").items():
        w.controls[name].value = v
    moves = {"models": [("llama-3-8b",), ("qwen3-0.6b", "deepseek-v3"), DEFAULT_MODELS],
             "seq_len": [1024, 2048, 4096], "batch": [b for b in BATCHES if b != 1] + [1],
             "bytes_per_param": [b for _, b in WEIGHT_DTYPES[1:]] + [2], "kv_bytes_per_elem": [1, 2],
             "accelerator": [a for a in ACCELERATORS if a != "NVIDIA H100 SXM"] + ["NVIDIA H100 SXM"]}
    assert set(moves) == set(w.controls)
    assert [b for _, b in KV_DTYPES] == [2, 1]
    for name, values in moves.items():
        for v in values:
            assert w.controls[name].value != v
            before = w.image.value
            w.controls[name].value = v
            assert w.image.value != before, (name, v)


def test_a_models_change_redraws_once(monkeypatch):
    w = comparison_explorer()
    calls, original = [], w.draw

    def counting(fig, **values):
        calls.append(values)
        original(fig, **values)

    monkeypatch.setattr(w, "draw", counting)
    _models(w, ("gpt2", "llama-3-8b"))  # the context drops 4K -> 1K: one redraw, with the new context
    _models(w, ("llama-3-8b",))
    assert [(c["models"], c["seq_len"]) for c in calls] == [(("gpt2", "llama-3-8b"), 1024), (("llama-3-8b",), 1024)]


def test_initial_values():
    w = comparison_explorer(models=("qwen3-8b",), seq_len=131072, batch=32, accelerator="NVIDIA H200 SXM",
                            bytes_per_param=0.5, kv_bytes_per_elem=1)
    assert w.values == dict(models=("qwen3-8b",), seq_len=131072, batch=32, bytes_per_param=0.5,
                            kv_bytes_per_elem=1, accelerator="NVIDIA H200 SXM")


@pytest.mark.parametrize("kwargs, name", [
    (dict(models=("llama-9",)), "models"), (dict(models=("bert-base-uncased",)), "models"),
    (dict(models=("transformer-base",)), "models"), (dict(models=("tiny-llama",)), "models"),
    (dict(models=()), "models"), (dict(models=decoder_models()[:7]), "models"), (dict(models="gpt2"), "models"),
    (dict(models=("gpt2", "gpt2")), "models"), (dict(seq_len=8192), "seq_len"), (dict(seq_len=3000), "seq_len"),
    (dict(seq_len=0), "seq_len"), (dict(batch=0), "batch"), (dict(batch=2), "batch"),
    (dict(accelerator="TPU"), "accelerator"), (dict(bytes_per_param=3), "bytes_per_param"),
    (dict(kv_bytes_per_elem=0.5), "kv_bytes_per_elem")])
def test_bad_arguments_are_refused_by_name(kwargs, name):
    with pytest.raises(ValueError, match=name):
        comparison_explorer(**kwargs)


def test_bad_arguments_say_what_is_allowed():
    with pytest.raises(ValueError, match="BERT|bert is an encoder"):
        comparison_explorer(models=("llama-3-8b", "bert-base-uncased"))
    with pytest.raises(ValueError, match="llama-2-13b's context stops at 4,096"):
        comparison_explorer(seq_len=8192)
    with pytest.raises(ValueError, match="seq_len"):
        draw_comparison(Figure(), ("gpt2",), 2048)
