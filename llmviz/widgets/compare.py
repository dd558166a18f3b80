"""Comparison explorer: up to six models side by side, the memory they need and how fast they can decode.

Every number comes from ``llmviz.compare`` (nothing is typed per model): ``serving_estimate`` gives the bytes of
the weights and of the KV cache, the fewest accelerators whose memory holds both, and a roofline estimate
(Williams, Waterman & Patterson 2009, "Roofline: an insightful visual performance model", CACM 52(4)) of the
decode speed: a step takes the longer of bytes read / bandwidth and FLOPs / peak, so it is an upper bound on
speed, not a measurement. ``architecture`` gives the table row of each model; ``ACCELERATORS`` the datasheet
numbers. A model's context limit is ``cfg.context_length or cfg.max_position_embeddings``.
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

from .._checks import check, check_int
from ..compare import ACCELERATORS, ServingEstimate, architecture_table, context_label, serving_estimate
from ..configs import ModelConfig, get_config, list_configs
from .figure import FigureWidget

ENCODERS = ("bert", "transformer")  # encoder / encoder-decoder presets: they do not decode token by token
DEFAULT_MODELS = ("llama-2-13b", "llama-3-8b", "qwen3-30b-a3b", "deepseek-v3")  # MHA, GQA, MoE, MLA
MAX_MODELS = 6
DEFAULT_CONTEXT = 32_768  # or the smallest context limit of the chosen models, if that is smaller
MIN_CONTEXT = 1024  # the first context offered (a model whose limit is smaller is offered its limit alone)
BATCHES = (1, 8, 32, 128)
WEIGHT_DTYPES = (("bf16", 2), ("fp8 / int8", 1), ("int4", 0.5))
KV_DTYPES = (("bf16", 2), ("fp8", 1))
DEFAULT_ACCELERATOR = "NVIDIA H100 SXM"

# Okabe-Ito colours (colour-blind safe)
WEIGHTS_COLOUR, CACHE_COLOUR = "#0072B2", "#E69F00"
BOUND_COLOURS = {"memory": "#56B4E9", "compute": "#D55E00"}
FS = 11  # points (titles 12): readable on a projector


# --- pure computation ------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def decoder_models() -> tuple[str, ...]:
    """The real presets that decode token by token (no ``tiny-`` preset, no BERT, no encoder-decoder)."""
    return tuple(n for n in list_configs() if not n.startswith("tiny-") and get_config(n).arch not in ENCODERS)


@lru_cache(maxsize=None)
def _config(name: str) -> ModelConfig:
    return get_config(name)


def context_limit(name: str) -> int:
    """The longest context the model is made for: ``cfg.context_length or cfg.max_position_embeddings``."""
    cfg = _config(name)
    return cfg.context_length or cfg.max_position_embeddings


def context_options(models: Sequence[str]) -> list[int]:
    """Powers of two from 1,024 up to the smallest context limit of ``models``: valid for every one of them (a
    limit under 1,024, GPT-1's 512, is offered alone)."""
    limit = min(context_limit(m) for m in models)
    if limit < MIN_CONTEXT:
        return [limit]
    return [MIN_CONTEXT << k for k in range(int(math.log2(limit // MIN_CONTEXT)) + 1)]


def _limiting(models: Sequence[str]) -> str:
    """``"gpt2 stops at 1K"``: the model(s) whose context limit caps the options."""
    limit = min(context_limit(m) for m in models)
    names = [m for m in models if context_limit(m) == limit]
    who = ", ".join(names[:2]) + (f" and {len(names) - 2} more" if len(names) > 2 else "")
    return f"{who} {'stops' if len(names) == 1 else 'stop'} at {context_label(limit)}"


def check_models(models: Any) -> tuple[str, ...]:
    """``models`` as a tuple of 1 to 6 distinct decoder presets (``decoder_models()``), else ValueError."""
    check(isinstance(models, (list, tuple)), "models", models, "must be a list or tuple of preset names")
    check(1 <= len(models) <= MAX_MODELS, "models", models, f"choose 1 to {MAX_MODELS} models, not {len(models)}")
    allowed = decoder_models()
    for m in models:
        if isinstance(m, str) and m in list_configs() and get_config(m).arch in ENCODERS:
            check(False, "models", m, f"{get_config(m).arch} is an encoder"
                  f"{'-decoder' if get_config(m).arch == 'transformer' else ''}: it does not decode token by token;"
                  f" choose from {list(allowed)}")
        check(m in allowed, "models", m, f"must be one of the real decoder presets {list(allowed)}")
    check(len(set(models)) == len(models), "models", models, "lists a model twice")
    return tuple(models)


def check_seq_len(seq_len: Any, models: Sequence[str]) -> int:
    """``seq_len`` must be one of ``context_options(models)``: within every model's context limit."""
    check_int(seq_len, "seq_len", minimum=1)
    for m in models:
        check(seq_len <= context_limit(m), "seq_len", seq_len,
              f"{m}'s context stops at {context_limit(m):,} tokens")
    options = context_options(models)
    check(seq_len in options, "seq_len", seq_len, f"must be one of {options}")
    return seq_len


@lru_cache(maxsize=4096)
def estimate(name: str, accelerator: str, seq_len: int, batch: int, bytes_per_param: float,
             kv_bytes_per_elem: int) -> ServingEstimate:
    """``llmviz.compare.serving_estimate`` of a preset, cached (a notebook session revisits the same values)."""
    return serving_estimate(_config(name), accelerator, seq_len, batch, bytes_per_param, kv_bytes_per_elem)


def short_name(accelerator: str) -> str:
    """The chip without vendor and form factor: ``"NVIDIA H100 SXM" -> "H100"``, ``"Google TPU v5e" -> "TPU v5e"``."""
    words = accelerator.split()[1:]
    return " ".join(words[:words.index("SXM")] if "SXM" in words else words) or accelerator


def _gb(n_bytes: float) -> str:
    """Decimal gigabytes, about 3 significant digits: ``1.342e12 -> "1,342"``, ``2.9e8 -> "0.29"``."""
    v = n_bytes / 1e9
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _tick(v: float) -> str:
    """Plain tick labels: ``0.01``, ``1``, ``100``, ``1K``, ``1M``."""
    return f"{v:g}" if v < 1e3 else f"{v / 1e3:g}K" if v < 1e6 else f"{v / 1e6:g}M"


def _dtype_label(options: tuple, value: float) -> str:
    return next((label for label, v in options if v == value), f"{value:g} B")


# --- drawing ---------------------------------------------------------------------------------------------

SIZE = (12.0, 5.0)  # inches; 864 x 360 px at DPI
DPI = 72
_STATE = "_llmviz_compare"  # attribute of the figure that keeps its Axes and legends between redraws
_LEFT = (0.135, 0.24, 0.36, 0.62)  # [left, bottom, width, height] in figure fractions
_RIGHT = (0.59, 0.24, 0.36, 0.62)
CHAR_PX = 7.0  # about the width of a character at FS points and DPI: room right of a bar for its label
BAND = 0.6  # rows of blank band under the bars, for the accelerator's memory label
TEXT_BOX = dict(facecolor="white", edgecolor="none", pad=1.0)  # labels stay readable across the dashed line


def _axes(fig: Figure) -> tuple[Any, Any]:
    """The memory and speed Axes, made once and kept on the figure (a fresh or cleared figure gets new ones),
    with their legends: a redraw replaces only their contents, which costs a fraction of building Axes."""
    kept = fig.__dict__.get(_STATE)
    if kept is not None and fig.axes == list(kept):
        return kept
    fig.clear()
    fig.set_size_inches(SIZE)
    ax_m, ax_s = fig.add_axes(_LEFT), fig.add_axes(_RIGHT)
    for ax in (ax_m, ax_s):
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_minor_locator(NullLocator())
        ax.tick_params(labelsize=FS, length=3)
        ax.tick_params(axis="y", length=0)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    ax_m.set_gid("memory")
    ax_s.set_gid("speed")
    ax_s.set_yticks([])
    ax_m.legend(handles=[Patch(color=WEIGHTS_COLOUR, label="weights"), Patch(color=CACHE_COLOUR, label="KV cache")],
                loc="upper left", bbox_to_anchor=(0.0, -0.2), ncol=2, fontsize=FS, frameon=False, borderaxespad=0,
                handlelength=1.2, columnspacing=1.0)
    ax_s.legend(handles=[Patch(color=BOUND_COLOURS[b], label=f"{b}-bound") for b in BOUND_COLOURS],
                loc="upper left", bbox_to_anchor=(0.0, -0.2), ncol=2, fontsize=FS, frameon=False, borderaxespad=0,
                handlelength=1.2, columnspacing=1.0)
    setattr(fig, _STATE, (ax_m, ax_s))
    return ax_m, ax_s


def _wipe(ax: Any) -> None:
    """Remove what the previous redraw drew on ``ax`` (data and free texts); keep the Axes and its legend."""
    for artist in (*ax.lines, *ax.collections, *ax.patches, *ax.texts):
        artist.remove()


def _log_range(ax: Any, fig: Figure, lo: float, hi: float, text_px: float) -> None:
    """Log x from the power of ten at or below ``lo`` to past ``hi`` by ``text_px`` pixels (room for the bar
    labels), ticks at powers of ten with plain labels."""
    x0 = 10.0 ** math.floor(math.log10(lo))
    width_px = ax.get_position().width * fig.get_figwidth() * fig.dpi
    decades = math.log10(hi / x0)
    extra = decades * text_px / max(width_px - text_px, 1.0)
    x1 = hi * 10.0 ** extra
    ax.set_xlim(x0, x1)
    powers = range(round(math.log10(x0)), math.floor(math.log10(x1)) + 1)
    step = 1 if len(powers) <= 6 else 2
    ticks = [10.0 ** p for p in powers[::step]]
    ax.set_xticks(ticks, [_tick(t) for t in ticks])


def draw_comparison(fig: Figure, models: Sequence[str], seq_len: int, batch: int = 1, bytes_per_param: float = 2,
                    kv_bytes_per_elem: int = 2, accelerator: str = DEFAULT_ACCELERATOR) -> None:
    """Draw memory (left) and decode speed (right) of ``models`` for these control values (a pure function).

    Left: per model, on a log axis, the bar of weights + KV cache (orange) with the weights bar (blue) drawn over
    it from the same left edge, so the orange tip is the cache; a dashed line at one accelerator's memory; the
    fewest accelerators that hold both at the bar's end. Right: tokens/s summed over the batch, each model on
    its devices of the left panel, coloured by what bounds the step in the roofline model (Williams et al.
    2009): memory bandwidth or compute. All from ``llmviz.compare.serving_estimate``. The figure is set to 12 x 5
    in; drawing again on it keeps its two Axes and replaces their contents.
    """
    models = check_models(models)
    check_seq_len(seq_len, models)
    check(batch in BATCHES, "batch", batch, f"must be one of {list(BATCHES)}")
    check(accelerator in ACCELERATORS, "accelerator", accelerator, f"must be one of {list(ACCELERATORS)}")
    est = [estimate(m, accelerator, seq_len, batch, bytes_per_param, kv_bytes_per_elem) for m in models]
    acc = ACCELERATORS[accelerator]
    chip = short_name(accelerator)
    ax_m, ax_s = _axes(fig)
    _wipe(ax_m)
    _wipe(ax_s)
    n = len(models)
    rows = max(n, 3)  # bars keep their size when fewer models are shown
    y = np.arange(n)
    weights = np.array([e.weights for e in est]) / 1e9
    totals = np.array([e.weights + e.kv_cache for e in est]) / 1e9
    memory = acc.memory / 1e9

    # memory: weights + cache (orange), the weights (blue) over it: log x, so two overlaid bars, not a stack
    room = CHAR_PX * (len(f" ×{max(e.devices for e in est)} {chip}") + 1)
    _log_range(ax_m, fig, weights.min(), max(totals.max(), memory), room)
    x0 = ax_m.get_xlim()[0]
    for yy, m, w, t in zip(y, models, weights, totals):
        ax_m.barh(yy, t - x0, left=x0, height=0.62, color=CACHE_COLOUR, gid=f"total_{m}", zorder=3)
        ax_m.barh(yy, w - x0, left=x0, height=0.62, color=WEIGHTS_COLOUR, gid=f"weights_{m}", zorder=3)
    for yy, m, e, t in zip(y, models, est, totals):  # above the dashed line, under the bars
        ax_m.text(t, yy, f" ×{e.devices} {chip}", va="center", fontsize=FS, gid=f"devices_{m}", bbox=TEXT_BOX,
                  zorder=2.5)
    ax_m.axvline(memory, color="black", linestyle="--", linewidth=1.5, gid="memory_line", zorder=1.5)
    ax_m.text(memory, rows - 0.5 + BAND, f" one {chip}: {_gb(acc.memory)} GB", va="bottom", ha="left", fontsize=FS,
              gid="memory_label")
    ax_m.set_yticks(y, [f"{m}\n{_gb(e.weights)} + {_gb(e.kv_cache)} GB" for m, e in zip(models, est)])
    ax_m.set_ylim(rows - 0.5 + BAND, -0.5)  # first model on top; a band at the bottom for the memory label
    ax_m.set_xlabel("GB (log x): weights bar drawn over weights + cache", fontsize=FS)
    ax_m.set_title(f"memory for batch {batch} × {context_label(seq_len)} tokens\n"
                   f"weights {_dtype_label(WEIGHT_DTYPES, bytes_per_param)} + KV cache "
                   f"{_dtype_label(KV_DTYPES, kv_bytes_per_elem)}: fewest {chip}s that hold both", fontsize=FS + 1)

    # speed: tokens/s over the batch (log x), coloured by the roofline bound
    rates = np.array([e.tokens_per_s for e in est])
    _log_range(ax_s, fig, rates.min(), rates.max(), CHAR_PX * (len(f" {_rate(rates.max())} tok/s") + 1))
    x0 = ax_s.get_xlim()[0]
    ax_s.barh(y, rates - x0, left=x0, height=0.62, color=[BOUND_COLOURS[e.bound] for e in est], gid="speed")
    for yy, m, r in zip(y, models, rates):
        ax_s.text(r, yy, f" {_rate(r)} tok/s", va="center", fontsize=FS, gid=f"rate_{m}")
    ax_s.set_ylim(rows - 0.5 + BAND, -0.5)
    ax_s.set_xlabel(f"tokens/s summed over the batch, on the {chip}s at left (log x)", fontsize=FS)
    ax_s.set_title(f"decode speed: roofline estimate, not a measurement\n"
                   f"{chip}: {acc.bandwidth / 1e12:.3g} TB/s, {acc.flops / 1e12:,.0f} TFLOP/s dense BF16 each",
                   fontsize=FS + 1)


# --- the widget ------------------------------------------------------------------------------------------

class _ComparisonWidget(FigureWidget):
    """A FigureWidget with a status line and the architecture table; it holds redraws while the context
    options follow the models, and keeps the last picture while the selection is not 1 to 6 models."""

    note = ""  # why the context changed, shown until the models change again

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.status = widgets.HTML(value="")
        self.table = widgets.HTML(value="")
        super().__init__(*args, **kwargs)
        c = self.controls
        controls = widgets.HBox([c["models"], widgets.VBox([c[k] for k in c if k != "models"])])
        self.children = (controls, self.status, self.image, self.table)

    def redraw(self, *args: object) -> None:
        if self._held:
            return
        models = self.controls["models"].value
        if not 1 <= len(models) <= MAX_MODELS:
            why = "no model is selected" if not models else f"{len(models)} models are selected"
            self._say(f"⚠ Select 1 to {MAX_MODELS} models ({why}): the picture shows the last valid selection.")
            return
        super().redraw()
        self.table.value = architecture_table(models)
        self._say(self.note or f"contexts offered up to {context_label(max(context_options(models)))}: "
                  f"{_limiting(models)} · ctrl/⌘-click picks several models (1 to {MAX_MODELS})")

    def _say(self, text: str) -> None:
        self.status.value = f"<span style='font-size:14px'>{html.escape(text)}</span>"


def comparison_explorer(models: Sequence[str] = DEFAULT_MODELS, seq_len: int | None = None, batch: int = 1,
                        accelerator: str = DEFAULT_ACCELERATOR, bytes_per_param: float = 2,
                        kv_bytes_per_elem: int = 2) -> widgets.Widget:
    """Interactive comparison of 1 to 6 models: memory, devices needed and decode speed on an accelerator, and
    their architecture table (``llmviz.compare``; roofline model of Williams et al. 2009).

    ``models``: real decoder presets (``decoder_models()``; default MHA, GQA, MoE and MLA models). ``seq_len``:
    a power of two from 1,024 up to the smallest context limit of ``models`` (default: 32,768 or that limit if
    smaller, 4,096 for the defaults, whose Llama-2-13B stops at 4K). ``batch``: one of ``BATCHES``.
    ``accelerator``: a name of ``llmviz.compare.ACCELERATORS``. ``bytes_per_param``: 2, 1 or 0.5;
    ``kv_bytes_per_elem``: 2 or 1.

    >>> w = comparison_explorer()
    >>> w.controls["models"].value = ("gpt2", "llama-3-8b")   # the context drops to 1K, the status says why
    """
    models = check_models(models)
    options = context_options(models)
    if seq_len is None:
        seq_len = max(o for o in options if o <= DEFAULT_CONTEXT) if options[0] <= DEFAULT_CONTEXT else options[0]
    check_seq_len(seq_len, models)
    check(batch in BATCHES, "batch", batch, f"must be one of {list(BATCHES)}")
    check(accelerator in ACCELERATORS, "accelerator", accelerator, f"must be one of {list(ACCELERATORS)}")
    check(bytes_per_param in [b for _, b in WEIGHT_DTYPES], "bytes_per_param", bytes_per_param,
          f"must be one of {[b for _, b in WEIGHT_DTYPES]} ({', '.join(label for label, _ in WEIGHT_DTYPES)})")
    check(kv_bytes_per_elem in [b for _, b in KV_DTYPES], "kv_bytes_per_elem", kv_bytes_per_elem,
          f"must be one of {[b for _, b in KV_DTYPES]} ({', '.join(label for label, _ in KV_DTYPES)})")

    style = {"description_width": "initial"}
    model_w = widgets.SelectMultiple(options=list(decoder_models()), value=models, rows=12, description="models",
                                     style=style)
    context_w = widgets.Dropdown(options=[(context_label(o), o) for o in options], value=seq_len,
                                 description="context (tokens)", style=style)
    batch_w = widgets.Dropdown(options=list(BATCHES), value=batch, description="batch", style=style)
    weights_w = widgets.Dropdown(options=list(WEIGHT_DTYPES), value=bytes_per_param, description="weights dtype",
                                 style=style)
    kv_w = widgets.Dropdown(options=list(KV_DTYPES), value=kv_bytes_per_elem, description="KV cache dtype",
                            style=style)
    acc_w = widgets.Dropdown(options=list(ACCELERATORS), value=accelerator, description="accelerator", style=style)
    box: dict[str, _ComparisonWidget] = {}

    # runs before the widget's own redraw (registered first); the redraw waits until the context is in line
    def on_models(change: dict) -> None:
        chosen = change["new"]
        if not 1 <= len(chosen) <= MAX_MODELS or "w" not in box:
            return  # the redraw says so and keeps the last picture
        w = box["w"]
        offered = context_options(chosen)
        old = context_w.value
        w.note = ""
        if [o for _, o in context_w.options] != offered:
            with w.held():
                context_w.options = [(context_label(o), o) for o in offered]  # resets the value to the first
                below = [o for o in offered if o <= old]
                context_w.value = max(below) if below else min(offered)
        if old not in offered:
            w.note = f"context set to {context_label(context_w.value)}: {_limiting(chosen)}"

    model_w.observe(on_models, names="value")
    controls = dict(models=model_w, seq_len=context_w, batch=batch_w, bytes_per_param=weights_w,
                    kv_bytes_per_elem=kv_w, accelerator=acc_w)
    w = _ComparisonWidget(draw_comparison, controls, name="comparison_explorer", figsize=SIZE, dpi=DPI, layout=None,
                          keep=True)
    box["w"] = w
    return w
