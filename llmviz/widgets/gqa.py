"""GQA explorer: which query heads share which K/V head, and what that saves in the KV cache.

Grouped-query attention (Ainslie et al. 2023, arXiv:2305.13245, §2) splits the H query heads into G groups
that share one K and one V head. HF's ``repeat_kv`` makes the groups contiguous: query head h reads KV head
``h // (H / G)`` (algorithms.md §3). MHA is G = H, MQA is G = 1. The cache shrinks by ``1 − G/H``
(facts.md §13 #32). DeepSeek's MLA (DeepSeek-V2 §2.1, Table 1) caches one compressed latent instead.

Every model number comes from ``llmviz.configs.get_config``; every byte count from
``llmviz.stats.kv_cache_bytes`` on configs derived with ``cfg.replace(num_kv_heads=...)``.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from .._checks import check, check_int
from ..configs import ModelConfig, get_config
from ..stats import kv_cache_bytes
from .figure import FigureWidget

GQA_MODELS = ("llama-2-7b", "llama-2-70b", "llama-3-8b", "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b",
              "qwen3-14b", "qwen3-32b", "qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3")
CUSTOM = "custom"
CUSTOM_SHAPE = "llama-2-7b"  # "custom" keeps this preset's layers and head_dim and changes only the head counts
MLA_REFERENCE = "deepseek-v3"  # the MLA row for models that do not use MLA themselves
MAX_HEADS = 128
MAX_DRAWN = 64  # query heads drawn in the diagram; more would be unreadable on a projector
CONTEXTS = (("1K", 1024), ("4K", 4096), ("8K", 8192), ("32K", 32_768), ("128K", 131_072), ("1M", 1_048_576))
DTYPES = (("fp32 (4 bytes)", 4), ("bf16 (2 bytes)", 2), ("fp8 (1 byte)", 1))
DEFAULTS: dict[str, Any] = dict(model="llama-3-8b", heads=None, kv_heads=None, context=4096, bytes_per_elem=2)

# Okabe-Ito colours (colour-blind safe); groups cycle through the first seven
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
KIND_COLOURS = {"MHA": "#D55E00", "GQA": "#0072B2", "MQA": "#009E73", "MLA": "#CC79A7"}
FS = 11  # points (titles 12): readable on a projector


# --- pure computation ------------------------------------------------------------------------------------

def divisors(n: int) -> list[int]:
    """The KV-head counts a model with ``n`` query heads can use: every divisor of n, ascending."""
    check_int(n, "n_heads", minimum=1)
    return [d for d in range(1, n + 1) if n % d == 0]


def kv_head_of(h: int, n_heads: int, n_kv: int) -> int:
    """The KV head that query head ``h`` reads: ``h // (n_heads / n_kv)`` (HF ``repeat_kv``, contiguous groups)."""
    check_int(n_heads, "n_heads", minimum=1)
    check_int(n_kv, "n_kv", minimum=1)
    check(n_heads % n_kv == 0, "n_kv", n_kv, f"must divide n_heads={n_heads} (each KV head serves a whole group)")
    check_int(h, "h", minimum=0, maximum=n_heads - 1)
    return h // (n_heads // n_kv)


def attention_kind(n_heads: int, n_kv: int) -> str:
    """``"MHA"`` (n_kv = n_heads), ``"MQA"`` (n_kv = 1) or ``"GQA"`` (in between)."""
    return "MHA" if n_kv == n_heads else "MQA" if n_kv == 1 else "GQA"


def gqa_config(model: str, heads: int | None = None, kv_heads: int | None = None) -> ModelConfig:
    """The config the explorer shows: a preset from ``get_config``, or ``"custom"`` = the layers and head_dim of
    ``CUSTOM_SHAPE`` (Llama-2-7B) with ``heads`` query heads and ``kv_heads`` KV heads (default: MHA)."""
    if model != CUSTOM:
        return get_config(model)
    check_int(heads, "heads", minimum=1, maximum=MAX_HEADS)
    kv = heads if kv_heads is None else kv_heads
    check(isinstance(kv, int) and kv >= 1 and heads % kv == 0, "kv_heads", kv,
          f"must be a divisor of heads={heads}: {divisors(heads)}")
    return get_config(CUSTOM_SHAPE).replace(name=CUSTOM, family="custom", num_heads=heads, num_kv_heads=kv)


@dataclass(frozen=True)
class KVRow:
    """One row of :func:`kv_cache_table`."""

    kind: str  # "MHA" | "GQA" | "MQA" | "MLA"
    label: str
    n_kv: int | None  # KV heads (None for MLA)
    bytes_per_token: int
    bytes_total: int  # at seq_len, batch 1
    saving: float  # vs the MHA of ``reference``: 1 − n_kv/n_q (MLA: 1 − MLA bytes / that model's MHA bytes)
    is_config: bool  # what the model's config actually uses
    reference: str = ""  # the model whose MHA ``saving`` is relative to (the row's own model)


def kv_cache_table(cfg: ModelConfig, seq_len: int, bytes_per_elem: int = 2, kv_heads: int | None = None
                   ) -> list[KVRow]:
    """KV-cache bytes of ``cfg`` as MHA, GQA with ``kv_heads`` (default: the config's own), MQA, and MLA.

    All counts are ``llmviz.stats.kv_cache_bytes`` of ``cfg.replace(num_kv_heads=...)``. For an MLA model
    (DeepSeek) the MHA/GQA/MQA rows use ``head_dim = v_head_dim`` (d_h = 128, DeepSeek-V2 Table 1) and no latent;
    the MLA row is the model itself. Other models get the MLA row of the ``deepseek-v3`` preset for contrast: its
    bytes are DeepSeek-V3's (on the same absolute axis) and its ``saving`` is against DeepSeek-V3's own MHA, not
    against ``cfg``'s (``reference`` names the model each row's saving is relative to).
    """
    check_int(seq_len, "seq_len", minimum=0)
    check(bytes_per_elem in (1, 2, 4), "bytes_per_elem", bytes_per_elem, "must be 4 (fp32), 2 (bf16) or 1 (fp8)")
    n_q = cfg.num_heads
    kv = cfg.num_kv_heads if kv_heads is None else kv_heads
    check(isinstance(kv, int) and kv >= 1 and n_q % kv == 0, "kv_heads", kv,
          f"must be a divisor of num_heads={n_q}: {divisors(n_q)}")
    dense = cfg.replace(kv_lora_rank=0, head_dim=cfg.v_head_dim) if cfg.uses_mla else cfg  # plain K/V heads
    own = "MLA" if cfg.uses_mla else attention_kind(n_q, cfg.num_kv_heads)

    def size(c: ModelConfig) -> tuple[int, int]:
        return (kv_cache_bytes(c, seq_len=1, bytes_per_elem=bytes_per_elem),
                kv_cache_bytes(c, seq_len=seq_len, bytes_per_elem=bytes_per_elem))

    rows = []
    for kind, n in (("MHA", n_q), ("GQA", kv), ("MQA", 1)):
        per, total = size(dense.replace(num_kv_heads=n))
        plural = "s" if n > 1 else ""
        label = {"MHA": f"MHA · {n} KV heads", "MQA": "MQA · 1 KV head",
                 "GQA": f"chosen · {n} KV head{plural}" + (f" (= {attention_kind(n_q, n)})" if n in (1, n_q) else "")
                 }[kind]
        mine = own == kind if kind != "GQA" else (own == "GQA" and n == cfg.num_kv_heads)
        rows.append(KVRow(kind, label, n, per, total, 1 - n / n_q, mine, cfg.name))
    mla = cfg if cfg.uses_mla else get_config(MLA_REFERENCE)
    per, total = size(mla)
    mha_of_mla, _ = size(mla.replace(kv_lora_rank=0, head_dim=mla.v_head_dim, num_kv_heads=mla.num_heads))
    label = "MLA · this model" if cfg.uses_mla else f"MLA · {mla.name}\n(another model)"
    rows.append(KVRow("MLA", label, None, per, total, 1 - per / mha_of_mla, cfg.uses_mla, mla.name))
    return rows


def format_percent(x: float) -> str:
    """At most two decimals, no trailing zeros: ``format_percent(0.9375) == "93.75%"``, ``0.75 -> "75%"``."""
    return f"{100 * x:.2f}".rstrip("0").rstrip(".") + "%"


def format_bytes(n: int) -> str:
    """Binary units, 3 significant digits: ``format_bytes(131072) == "128 KiB"``."""
    value, unit = float(n), "B"
    for next_unit in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, next_unit
    return f"{value:.3g} {unit}" if unit != "B" else f"{n} B"


# --- drawing ---------------------------------------------------------------------------------------------

SIZE = (12.0, 5.4)  # inches; 864 x 389 px at DPI
DPI = 72
_STATE = "_llmviz_gqa"  # attribute of the figure that keeps its two Axes between redraws


def _axes(fig: Figure) -> tuple[Any, Any]:
    """The diagram and bar Axes, made once and kept on the figure (a fresh or cleared figure gets new ones):
    a redraw replaces only their contents, which costs a fraction of building Axes."""
    kept = fig.__dict__.get(_STATE)
    if kept is not None and fig.axes == list(kept):
        return kept
    fig.clear()
    fig.set_size_inches(SIZE)
    ax_g = fig.add_axes((0.075, 0.14, 0.39, 0.69))  # [left, bottom, width, height] in figure fractions
    ax_b = fig.add_axes((0.63, 0.14, 0.34, 0.69))
    ax_g.set_ylim(-0.35, 1.3)
    ax_g.set_yticks([1, 0], ["query\nheads", "KV heads\n(cached)"])
    ax_g.set_xticks([])
    for ax in (ax_g, ax_b):
        ax.tick_params(labelsize=FS, length=0)
        ax.minorticks_off()
    for side in ("top", "right", "bottom", "left"):
        ax_g.spines[side].set_visible(False)
    for side in ("top", "right"):
        ax_b.spines[side].set_visible(False)
    ax_b.set_xticks([])  # each bar carries its size: no scale needed
    ax_b.set_gid("kv_cache")
    setattr(fig, _STATE, (ax_g, ax_b))
    return ax_g, ax_b


def _wipe(ax: Any) -> None:
    """Remove what the previous redraw drew on ``ax`` (data and free texts); keep the Axes itself."""
    for artist in (*ax.lines, *ax.collections, *ax.patches, *ax.texts):
        artist.remove()


def draw_gqa(fig: Figure, model: str, heads: int | None, kv_heads: int, context: int = 4096,
             bytes_per_elem: int = 2) -> None:
    """Draw the head-grouping diagram and the KV-cache bars for these control values (a pure function).

    ``heads`` is used only when ``model == "custom"``; a preset brings its own head count. The figure is set to
    12 x 5.4 in; drawing again on it keeps its two Axes and replaces their contents (the same picture as on a
    fresh figure, in less time).
    """
    cfg = gqa_config(model, heads, kv_heads)
    n_q = cfg.num_heads
    check(isinstance(kv_heads, int) and kv_heads >= 1 and n_q % kv_heads == 0, "kv_heads", kv_heads,
          f"must be a divisor of the {n_q} query heads: {divisors(n_q)}")
    rows = kv_cache_table(cfg, context, bytes_per_elem, kv_heads)
    ax_g, ax_b = _axes(fig)
    _wipe(ax_g)
    _wipe(ax_b)
    _draw_groups(ax_g, cfg, kv_heads)
    _draw_cache(ax_b, cfg, rows, kv_heads, context, bytes_per_elem)


def _label_step(n: int, group: int = 1) -> int:
    """Label every k-th item (a multiple of ``group``) so that at most 8 of ``n`` carry a number (each label
    costs about a millisecond to render)."""
    step = group
    while n > 8 * step:
        step *= 2
    return step


def _draw_groups(ax: Any, cfg: ModelConfig, n_kv: int) -> None:
    """Query heads (top) joined to the KV head they read (bottom), one colour per group (HF ``repeat_kv``)."""
    n_q = cfg.num_heads
    n_rep = n_q // n_kv
    shown = min(n_q, MAX_DRAWN)
    h = np.arange(shown)  # query heads drawn
    g = h // n_rep  # [shown] KV head of each: kv_head_of(h, n_q, n_kv), vectorised
    groups = np.unique(g)
    kv_x = h.reshape(len(groups), -1).mean(1) if shown % n_rep == 0 else np.array([h[g == k].mean() for k in groups])
    palette = np.array(PALETTE)
    colours = palette[g % len(PALETTE)]
    segs = np.stack([np.c_[h, np.ones(shown)], np.c_[kv_x[np.searchsorted(groups, g)], np.zeros(shown)]], axis=1)
    ax.add_collection(LineCollection(segs, colors=colours, linewidths=2 if shown <= 32 else 1.2))
    size = 260 if shown <= 16 else 110 if shown <= 32 else 40
    ax.scatter(h, np.ones(shown), s=size, marker="s", c=colours, edgecolors="black", linewidths=0.5, zorder=3)
    ax.scatter(kv_x, np.zeros(len(groups)), s=size * 1.6, marker="o", c=palette[groups % len(PALETTE)],
               edgecolors="black", linewidths=0.8, zorder=3)
    for i in range(0, shown, _label_step(shown, n_rep if n_rep <= shown // 2 else 1)):  # at group starts
        ax.text(i, 1.09, str(i), ha="center", va="bottom", fontsize=FS)
    kv_step = _label_step(len(groups))
    for k, x in zip(groups[::kv_step], kv_x[::kv_step]):
        ax.text(x, -0.1, str(k), ha="center", va="top", fontsize=FS)
    ax.set_xlim(-1, max(shown, 2))
    notes = [f"showing query heads 0–{shown - 1} of {n_q}"] if shown < n_q else []  # the title gives the count
    if cfg.uses_mla:
        notes.append("MLA (its config) rebuilds each head's K, V from one cached latent")
    elif n_kv != cfg.num_kv_heads:
        notes.append(f"what if? The config has {cfg.num_kv_heads} KV heads")
    ax.set_xlabel("\n".join(notes), fontsize=FS)
    name = "custom" if cfg.name == CUSTOM else cfg.name
    ax.set_title(f"{name}: {n_q} query heads share {n_kv} KV heads ({attention_kind(n_q, n_kv)})\n"
                 f"groups of {n_rep}: query head h reads KV head h // {n_rep}", fontsize=FS + 1, y=1.0)


def _draw_cache(ax: Any, cfg: ModelConfig, rows: list[KVRow], n_kv: int, context: int, bytes_per_elem: int) -> None:
    """Bars of KV-cache bytes at ``context`` tokens, from ``llmviz.stats.kv_cache_bytes``."""
    y = np.arange(len(rows))[::-1]  # MHA on top
    totals = np.array([r.bytes_total for r in rows], dtype=float)
    unit_bytes = next((1024.0 ** p for p in (4, 3, 2, 1) if totals.max() >= 1024.0 ** p), 1.0)
    ax.barh(y, totals / unit_bytes, color=[KIND_COLOURS[r.kind] for r in rows], height=0.6,
            edgecolor=["black" if r.is_config else "none" for r in rows], linewidth=2)
    for yy, r in zip(y, rows):  # each saving against the MHA of the row's own model, named when it is another
        ref = "MHA" if r.reference == cfg.name else f"{r.reference}'s MHA"
        text = format_bytes(r.bytes_total) + (f"  (−{format_percent(r.saving)} vs {ref})" if r.saving > 0 else "")
        ax.text(r.bytes_total / unit_bytes, yy, "  " + text, va="center", fontsize=FS, gid=f"cache_{r.kind}")
    labels = [f"{r.label}{'  ★' if r.is_config else ''}\n{r.bytes_per_token:,} B/token" for r in rows]
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.5, len(rows) - 0.5)
    ax.set_xlim(0, max(totals.max() / unit_bytes, 1.0) * 1.55)
    head_dim = cfg.v_head_dim if cfg.uses_mla else cfg.head_dim
    ax.set_xlabel(f"cache at batch 1, bytes on one axis   ★ = the model's config\nB/token = {cfg.num_layers} layers × 2 (K, V) × n_kv"
                  f" × {head_dim} × {bytes_per_elem} B", fontsize=FS)
    dtype = next(label for label, b in DTYPES if b == bytes_per_elem).split(" ")[0]
    ctx = next((label for label, n in CONTEXTS if n == context), f"{context:,}")
    saving = 1 - n_kv / cfg.num_heads
    ax.set_title(f"KV cache for {ctx} tokens in {dtype}\n"
                 f"saving vs this model's MHA: 1 − {n_kv}/{cfg.num_heads} = {format_percent(saving)}",
                 fontsize=FS + 1, y=1.0)


# --- the widget ------------------------------------------------------------------------------------------

def _model_label(name: str) -> str:
    cfg = get_config(name)
    kind = "MLA" if cfg.uses_mla else attention_kind(cfg.num_heads, cfg.num_kv_heads)
    return f"{name} ({kind}: {cfg.num_heads} q / {cfg.num_kv_heads} kv)"


def gqa_explorer(**initial: Any) -> FigureWidget:
    """Interactive GQA explorer (Ainslie et al. 2023 §2; HF ``repeat_kv``; ``llmviz.stats.kv_cache_bytes``).

    Keyword initial values: ``model`` (one of ``GQA_MODELS`` or ``"custom"``), ``heads`` (custom only, 1 .. 128),
    ``kv_heads`` (a divisor of the head count; default: the model's own), ``context`` (one of ``CONTEXTS``' token
    counts) and ``bytes_per_elem`` (4, 2 or 1).

    >>> w = gqa_explorer(model="qwen3-8b")
    >>> w.controls["kv_heads"].value = 1          # what if Qwen3-8B used MQA?
    """
    unknown = sorted(set(initial) - set(DEFAULTS))
    check(not unknown, unknown[0] if unknown else "", initial.get(unknown[0]) if unknown else None,
          f"gqa_explorer takes only {sorted(DEFAULTS)}")
    v = {**DEFAULTS, **initial}
    options = list(GQA_MODELS) + [CUSTOM]
    check(v["model"] in options, "model", v["model"], f"must be one of {options}")
    if v["model"] == CUSTOM:
        heads0 = 32 if v["heads"] is None else v["heads"]
        check_int(heads0, "heads", minimum=1, maximum=MAX_HEADS)
        kv0 = heads0 if v["kv_heads"] is None else v["kv_heads"]
    else:
        cfg = get_config(v["model"])
        heads0 = cfg.num_heads
        check(v["heads"] in (None, heads0), "heads", v["heads"],
              f"{v['model']} has {heads0} query heads; choose model='custom' to set your own")
        kv0 = cfg.num_kv_heads if v["kv_heads"] is None else v["kv_heads"]
    check(isinstance(kv0, int) and not isinstance(kv0, bool) and kv0 >= 1 and heads0 % kv0 == 0, "kv_heads", kv0,
          f"must be a divisor of the {heads0} query heads: {divisors(heads0)}")
    contexts = [n for _, n in CONTEXTS]
    check(v["context"] in contexts, "context", v["context"], f"must be one of {contexts}")
    check(v["bytes_per_elem"] in (4, 2, 1), "bytes_per_elem", v["bytes_per_elem"],
          "must be 4 (fp32), 2 (bf16) or 1 (fp8)")

    style = {"description_width": "initial"}
    model = widgets.Dropdown(options=[(_model_label(n), n) for n in GQA_MODELS] + [("custom (set the heads)", CUSTOM)],
                             value=v["model"], description="model", style=style)
    heads = widgets.IntSlider(value=heads0, min=1, max=MAX_HEADS, description="query heads", style=style,
                              disabled=v["model"] != CUSTOM, continuous_update=False)
    kv_heads = widgets.Dropdown(options=divisors(heads0), value=kv0, description="KV heads", style=style)
    context = widgets.SelectionSlider(options=list(CONTEXTS), value=v["context"], description="context",
                                      style=style, continuous_update=False)
    dtype = widgets.Dropdown(options=list(DTYPES), value=v["bytes_per_elem"], description="dtype", style=style)
    box: dict[str, FigureWidget] = {}

    @contextmanager
    def held() -> Iterator[None]:
        if "w" in box:
            with box["w"].held():
                yield
        else:
            yield

    # these observers run before the widget's own redraw (registered first); redraws wait until they finish
    def on_heads(change: dict) -> None:
        with held():
            if model.value != CUSTOM and change["new"] != get_config(model.value).num_heads:
                model.value = CUSTOM  # a preset's head count is fixed: changing it makes a custom model
            old = kv_heads.value
            choices = divisors(change["new"])
            kv_heads.options = choices  # resets the value to the first option
            kv_heads.value = max(d for d in choices if d <= old)

    def on_model(change: dict) -> None:
        with held():
            heads.disabled = change["new"] != CUSTOM
            if change["new"] != CUSTOM:
                cfg = get_config(change["new"])
                heads.value = cfg.num_heads
                if list(kv_heads.options) != divisors(cfg.num_heads):
                    kv_heads.options = divisors(cfg.num_heads)
                kv_heads.value = cfg.num_kv_heads

    heads.observe(on_heads, names="value")
    model.observe(on_model, names="value")
    controls = dict(model=model, heads=heads, kv_heads=kv_heads, context=context, bytes_per_elem=dtype)
    w = FigureWidget(draw_gqa, controls, name="gqa_explorer", figsize=SIZE, dpi=DPI, columns=3, layout=None,
                     keep=True)
    box["w"] = w
    return w
