"""Sparse and structured attention patterns, side by side: the mask, its cost, and how far L layers reach.

``sparse_attention_explorer()`` shows, for one pattern at a time (algorithms.md §1):

(a) the ``T x T`` mask of one layer (rows = queries i, columns = keys j; coloured by the pattern's parts),
(b) its numbers: allowed pairs, density, FLOPs saved against dense causal attention,
(c) the reach after ``L`` stacked layers (``masks.reachability``) and how many layers cover every pair
    (``masks.hops_to_full``): strided + local covers everything in 2 hops, a window alone needs ~T/W layers.

Every mask comes from :mod:`llmviz.masks`; this file only maps control values to builder arguments
(:func:`pattern_mask`, :func:`layer_masks`) and draws (:func:`draw_sparse`, a pure function of the values).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import ipywidgets as W
import numpy as np
import torch
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from torch import Tensor

from .. import masks
from .._checks import check, check_int
from .figure import FigureWidget

__all__ = ["PATTERNS", "pattern_mask", "layer_masks", "pattern_parts", "doc_lengths", "lsh_vectors",
           "sparse_stats", "draw_sparse", "sparse_attention_explorer", "offered_values"]


@dataclass(frozen=True)
class PatternInfo:
    label: str                 # dropdown text
    idea: str                  # the one-line caption shown above the figure
    source: str                # paper and section
    uses: tuple[str, ...]      # controls the pattern reads (besides pattern, T and layers)


PATTERNS: dict[str, PatternInfo] = {
    "dense": PatternInfo(
        "dense causal", "every token sees itself and all earlier tokens: T(T+1)/2 pairs, O(T²)",
        "GPT-2 / GPT-3 dense layers", ()),
    "sliding": PatternInfo(
        "sliding window", "each token sees the W latest keys (itself included): O(T·W)",
        "Mistral §2; GPT-Neo local layers", ("window",)),
    "dilated": PatternInfo(
        "dilated window", "W keys spaced d apart: a window's cost, d times its reach",
        "Longformer §3.1", ("window", "dilation")),
    "strided": PatternInfo(
        "strided (Sparse Transformer)", "previous l tokens + every l-th token: all earlier tokens within 2 hops",
        "Child et al. 2019 §4.3", ("stride",)),
    "fixed": PatternInfo(
        "fixed (Sparse Transformer)", "own block + the last c 'summary' cells of every block",
        "Child et al. 2019 §4.3", ("block", "summary")),
    "longformer": PatternInfo(
        "Longformer", "local band + a few global tokens that see and are seen by everyone",
        "Beltagy et al. 2020 §3.1", ("window", "n_global", "causal")),
    "bigbird": PatternInfo(
        "BigBird", "3-block window + global first and last blocks + r random blocks",
        "Zaheer et al. 2020 §2, App. D (ITC)", ("block", "n_random", "seed", "causal")),
    "lsh": PatternInfo(
        "Reformer LSH", "hash vectors into buckets; attend in your sorted chunk and the one before",
        "Kitaev et al. 2020 §2", ("n_buckets", "block", "seed")),
    "gpt3": PatternInfo(
        "GPT-3 alternating layers", "dense and banded layers alternate: one dense layer reaches everything",
        "Brown et al. 2020 §2.1 (band width unpublished)", ("window", "first")),
    "document": PatternInfo(
        "Llama-3 document mask", "packed documents never see each other: causal AND same document",
        "Dubey et al. 2024 §3.2", ("n_docs", "seed")),
}

T_OPTIONS = (32, 64, 128, 256)          # every option is a multiple of every block option (BigBird)
BLOCK_OPTIONS = (2, 4, 8, 16, 32)
LSH_DIM = 16                            # dimension of the random shared-QK vectors hashed by Reformer LSH
HOPS_CAP = 256                          # hop counts are searched up to this depth (>= T - 1 for every T offered)
DEFAULTS: dict[str, Any] = dict(pattern="strided", T=64, window=8, dilation=2, stride=8, block=8, summary=2,
                                n_global=1, n_random=1, n_buckets=4, seed=0, n_docs=3, first="dense",
                                causal=False, layers=2)

# Okabe-Ito colours (colour-blind safe): not allowed, part 1, part 2; reach: not, via stacking, direct.
GREY, BLUE, ORANGE, SKY = "#f0f0f0", "#0072B2", "#E69F00", "#56B4E9"
_FONT = 12


# ---------------------------------------------------------------- control values -> masks (pure)

def doc_lengths(T: int, n_docs: int, seed: int = 0) -> list[int]:
    """Lengths of ``n_docs`` packed documents filling T tokens: n_docs-1 distinct cut points drawn with ``seed``."""
    check(isinstance(n_docs, int) and 1 <= n_docs <= T, "n_docs", n_docs, f"n_docs must be an integer in [1, T={T}]")
    gen = torch.Generator().manual_seed(seed)
    cuts = sorted((torch.randperm(T - 1, generator=gen)[: n_docs - 1] + 1).tolist())   # in 1..T-1
    edges = [0, *cuts, T]
    return [b - a for a, b in zip(edges[:-1], edges[1:])]


def lsh_vectors(T: int, seed: int = 0, dim: int = LSH_DIM) -> Tensor:
    """The seeded random shared-QK vectors [T, dim] that the Reformer LSH pattern hashes."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(T, dim, generator=gen)                                           # [T, dim]


def pattern_mask(pattern: str, T: int = 64, *, window: int = 8, dilation: int = 2, stride: int = 8, block: int = 8,
                 summary: int = 2, n_global: int = 1, n_random: int = 1, n_buckets: int = 4, seed: int = 0,
                 n_docs: int = 3, causal: bool = False, **_unused: Any) -> Tensor:
    """One layer's bool mask [T, T] (True = query row i may attend to key column j) from ``llmviz.masks``.

    Only the parameters the pattern uses matter (``PATTERNS[p].uses``). For ``"gpt3"`` this is the locally
    banded layer (the dense ones are ``masks.causal``); :func:`layer_masks` gives the whole alternating stack.
    Longformer's global tokens are the first ``n_global`` positions (CLS / question tokens). Other control
    names (``layers``, ``first``) are accepted and ignored, so ``pattern_mask(**widget.values)`` works.
    """
    check(pattern in PATTERNS, "pattern", pattern, f"pattern must be one of {list(PATTERNS)}")
    for name in _unused:
        check(name in DEFAULTS, name, _unused[name], f"unknown parameter; parameters are {list(DEFAULTS)}")
    if pattern == "dense":
        return masks.causal(T)
    if pattern in ("sliding", "gpt3"):
        return masks.sliding_window(T, window)
    if pattern == "dilated":
        return masks.dilated_window(T, window, dilation)
    if pattern == "strided":
        return masks.strided(T, stride)
    if pattern == "fixed":
        return masks.fixed(T, block, summary)
    if pattern == "longformer":
        return masks.longformer(T, window, list(range(n_global)), causal=causal)
    if pattern == "bigbird":
        return masks.bigbird(T, block, n_random, seed, causal=causal)
    if pattern == "lsh":
        return masks.lsh(lsh_vectors(T, seed), n_buckets, block, seed)
    return masks.document(masks.doc_ids_from_lengths(doc_lengths(T, n_docs, seed)))   # "document"


def layer_masks(pattern: str, T: int = 64, *, layers: int = 2, window: int = 8, first: str = "dense",
                **params: Any) -> list[Tensor]:
    """The ``layers`` per-layer masks of a stack: ``masks.gpt3_layers`` for GPT-3, else the same mask repeated."""
    check_int(layers, "layers", minimum=1)
    if pattern == "gpt3":
        return masks.gpt3_layers(T, layers, window, first=first)
    m = pattern_mask(pattern, T, window=window, **params)
    return [m] + [m.clone() for _ in range(layers - 1)]


def pattern_parts(pattern: str, T: int = 64, **params: Any) -> list[tuple[str, Tensor]]:
    """The mask split into disjoint named parts for colouring (their union is the pattern's mask / stack)."""
    m = pattern_mask(pattern, T, **params)
    p = {**DEFAULTS, **params}
    if pattern == "strided":
        local = masks.strided(T, p["stride"], part="local")
        return [("local", local), ("stride", m & ~local)]
    if pattern == "fixed":
        own = masks.fixed(T, p["block"], p["summary"], part="block")
        return [("own block", own), ("summary cells", m & ~own)]
    if pattern == "longformer":
        band = masks.longformer(T, p["window"], (), causal=p["causal"])
        return [("band", band), ("global", m & ~band)]
    if pattern == "bigbird":
        base = masks.bigbird(T, p["block"], 0, causal=p["causal"])
        return [("window + global", base), ("random", m & ~base)]
    if pattern == "gpt3":
        return [("band", m), ("dense layers only", masks.causal(T) & ~m)]
    return [({"dense": "allowed", "lsh": "same bucket, near chunk", "document": "same doc"}.get(pattern, "window"), m)]


def hops_and_never(mask: Tensor, cap: int = HOPS_CAP) -> tuple[int | None, bool]:
    """``(masks.hops_to_full(mask, max_layers=cap), never)``; ``never`` is True when no depth covers every pair."""
    hops = masks.hops_to_full(mask, max_layers=cap)
    return hops, hops is None and masks.hops_to_full(mask) is None


def _relevant(values: dict[str, Any]) -> tuple:
    """The values that matter for the current pattern, as a hashable key (irrelevant ones are dropped)."""
    info = PATTERNS[values["pattern"]]
    keep = ("pattern", "T", "layers", *info.uses)
    return tuple((k, values[k]) for k in keep)


@lru_cache(maxsize=128)
def _stats(key: tuple) -> dict[str, Any]:
    v = dict(key)
    pattern, T, L = v.pop("pattern"), v.pop("T"), v.pop("layers")
    stack = layer_masks(pattern, T, layers=L, **v)                       # L x [T, T]
    one = pattern_mask(pattern, T, **v)                                  # [T, T] the pattern's (banded) layer
    full = masks.causal(T)
    is_causal = not bool((one & ~full).any())
    target = full if is_causal else torch.ones(T, T, dtype=torch.bool)  # the pairs "everything" means
    reach = masks.reachability(stack)                                    # [T, T] after L layers
    hops, never = hops_and_never(one)
    first = stack[0]
    return dict(
        mask=one, parts=pattern_parts(pattern, T, **v), stack=stack, reach=reach, direct=first,
        pairs=round(sum(int(m.sum()) for m in stack) / L) if pattern == "gpt3" else int(one.sum()),
        density=sum(masks.density(m) for m in stack) / L if pattern == "gpt3" else masks.density(one),
        flops_saved=sum(masks.flops_saved(m) for m in stack) / L if pattern == "gpt3" else masks.flops_saved(one),
        reach_frac=float((reach & target).sum()) / float(target.sum()), is_causal=is_causal,
        hops=hops, never=never)


def sparse_stats(**values: Any) -> dict[str, Any]:
    """Everything the figure shows, for the control values: ``mask`` [T, T], ``stack`` (L masks), ``reach``
    [T, T] (= ``masks.reachability(stack)``), ``pairs``, ``density``, ``flops_saved`` (GPT-3: mean over the
    L layers), ``reach_frac`` (share of causal / all pairs reached), ``hops`` (= ``masks.hops_to_full`` of
    one layer's mask with ``max_layers=HOPS_CAP``), ``never`` (True if more layers never help)."""
    pattern = values.get("pattern", DEFAULTS["pattern"])
    check(pattern in PATTERNS, "pattern", pattern, f"pattern must be one of {list(PATTERNS)}")
    return dict(_stats(_relevant({**DEFAULTS, **values})))


def _hops_text(s: dict, pattern: str, T: int, window: int) -> str:
    """One or two lines on ``hops_to_full``: how many stacked layers connect every pair."""
    what = "all j <= i" if s["is_causal"] else "all pairs"
    if s["hops"] is not None:
        text = f"covers {what} in {s['hops']} hop{'s' if s['hops'] > 1 else ''}"
    elif s["never"]:
        text = f"never covers {what}"
    else:
        text = f"needs > {HOPS_CAP} layers to cover {what}"
    if pattern == "gpt3":
        text = f"band alone {text};\na dense layer: 1 hop"
    if pattern in ("sliding", "gpt3"):
        text += f"\n(window: ⌈(T−1)/(W−1)⌉ = {math.ceil((T - 1) / (window - 1))} layers)"
    return text


def _rgb(cats: np.ndarray, palette: list[str]) -> np.ndarray:
    """Integer categories [T, T] -> RGB image [T, T, 3] uint8 (the fast path of imshow)."""
    lut = (np.array([to_rgb(c) for c in palette]) * 255).round().astype(np.uint8)   # [n, 3]
    return lut[cats]


SIZE = (11.0, 4.5)   # inches; 880 x 360 px at DPI
DPI = 80
_STATE = "_llmviz_sparse"  # attribute of the figure that keeps its artists between redraws


def _artists(fig: Figure) -> SimpleNamespace:
    """The Axes, image and texts of the figure, made once and kept on it (a fresh or cleared figure gets new
    ones): a redraw then only sets their data and strings, a fraction of the cost of building them."""
    a = fig.__dict__.get(_STATE)
    if a is not None and fig.axes == [a.ax]:
        return a
    fig.clear()
    fig.set_size_inches(SIZE)
    a = SimpleNamespace(ax=fig.add_axes((0.065, 0.1, 0.6, 0.76)))
    a.title = fig.suptitle("", fontsize=13, y=0.97)
    a.image = a.ax.imshow(np.zeros((2, 2, 3), dtype=np.uint8), interpolation="nearest")
    for side in ("top", "right", "bottom", "left"):
        a.ax.spines[side].set_visible(False)
    a.ax.tick_params(labelsize=11)
    a.ax.set_ylabel("query position i", fontsize=_FONT)
    a.labels = [a.ax.text(0, 0, text, ha="center", va=va, fontsize=_FONT)
                for text, va in (("key j", "top"), ("input j", "top"), ("", "bottom"), ("", "bottom"))]
    a.numbers = fig.text(0.69, 0.84, "", fontsize=_FONT, va="top", ha="left", linespacing=1.5)
    setattr(fig, _STATE, a)
    return a


def draw_sparse(fig: Figure, pattern: str = "strided", T: int = 64, layers: int = 2, **values: Any) -> None:
    """Draw mask | reach | numbers for the control values (a pure function of them; see ``sparse_stats``).

    Built for speed (each text costs ~0.6 ms a line + ~0.1 ms a glyph on a slow CPU): one Axes shows both
    panels as one RGB image, no layout engine, few ticks, the colour key inside the numbers text, and the
    Axes, image and texts stay on the figure between redraws (only their data and strings change; the
    picture is the same as on a fresh figure).
    """
    values = {**DEFAULTS, **values, "pattern": pattern, "T": T, "layers": layers}
    check(pattern in PATTERNS, "pattern", pattern, f"pattern must be one of {list(PATTERNS)}")
    info = PATTERNS[pattern]
    s = sparse_stats(**values)
    a = _artists(fig)
    a.title.set_text(f"{info.label}: {info.idea}")
    off = round(T * 1.2)                                                 # x offset of the reach panel

    # (a) the mask of one layer, coloured by part: 0 = masked, k = part k
    cats = np.zeros((T, T), dtype=np.int64)
    for k, (_, part) in enumerate(s["parts"]):
        cats[part.numpy()] = k + 1
    # (c) reach after L layers: 2 = directly (layer 1), 1 = via stacking, 0 = unreachable
    rc = np.where(s["direct"].numpy(), 2, np.where(s["reach"].numpy(), 1, 0))   # [T, T]
    img = np.full((T, off + T, 3), 255, dtype=np.uint8)                  # [T, off + T, 3], white gap
    img[:, :T] = _rgb(cats, [GREY, BLUE, ORANGE])
    img[:, off:] = _rgb(rc, [GREY, SKY, BLUE])
    a.image.set_data(img)
    a.image.set_extent((-0.5, off + T - 0.5, T - 0.5, -0.5))
    a.ax.set_xlim(-0.5, off + T - 0.5)
    a.ax.set_ylim(T - 0.5, -0.5)
    ticks = [0, T // 2, T - 1]
    a.ax.set_xticks(ticks + [off + t for t in ticks], [str(t) for t in ticks] * 2)
    a.ax.set_yticks(ticks)
    a.labels[0].set_position((T / 2, T * 1.09))
    a.labels[1].set_position((off + T / 2, T * 1.09))
    a.labels[2].set_position((T / 2, -0.03 * T))
    a.labels[2].set_text("layers: band vs dense" if pattern == "gpt3" else "mask of one layer")
    a.labels[3].set_position((off + T / 2, -0.03 * T))
    a.labels[3].set_text(f"reach after {layers} layer{'s' if layers > 1 else ''}: {100 * s['reach_frac']:.1f}%")

    # (b) the numbers and the colour key (short: each glyph costs ~0.1 ms of redraw)
    names = [name for name, _ in s["parts"]]
    key = f"blue: {names[0]}" + (f" · orange: {names[1]}" if len(names) > 1 else "")
    mean = " (layer mean)" if pattern == "gpt3" else ""
    lines = [
        f"pairs: {s['pairs']:,} of {T * T:,}{mean}",
        f"density: {100 * s['density']:.1f}%",
        f"FLOPs saved vs dense causal: {100 * s['flops_saved']:.1f}%",
        _hops_text(s, pattern, T, values["window"]),
        "",
        key,
        "dark: layer 1 · light: via stacking",
    ]
    a.numbers.set_text("\n".join(lines))


# ---------------------------------------------------------------- the widget

def offered_values(control: W.ValueWidget) -> list:
    """Every value a control offers right now (dropdown options; slider min..max by step; both booleans)."""
    if isinstance(control, W.Checkbox):
        return [False, True]
    if isinstance(control, (W.Dropdown, W.ToggleButtons, W.SelectionSlider)):
        return [o[1] if isinstance(o, tuple) else o for o in control.options]
    return list(range(control.min, control.max + 1, control.step))


def _controls() -> dict[str, W.ValueWidget]:
    st = {"description_width": "initial"}
    lay = W.Layout(width="300px")

    def slider(desc: str, value: int, lo: int, hi: int, step: int = 1) -> W.IntSlider:
        return W.IntSlider(value=value, min=lo, max=hi, step=step, description=desc, style=st, layout=lay,
                           continuous_update=False)

    d = DEFAULTS
    return {
        "pattern": W.Dropdown(options=[(p.label, k) for k, p in PATTERNS.items()], value=d["pattern"],
                              description="pattern", style=st, layout=W.Layout(width="300px")),
        "T": W.Dropdown(options=list(T_OPTIONS), value=d["T"], description="T (tokens)", style=st, layout=lay),
        "layers": slider("layers L", d["layers"], 1, 8),
        "window": slider("window W", d["window"], 2, 64, 2),           # even: Longformer needs it
        "dilation": slider("dilation d", d["dilation"], 1, 8),
        "stride": slider("stride l", d["stride"], 2, 32),
        "block": W.Dropdown(options=list(BLOCK_OPTIONS), value=d["block"], description="block / chunk",
                            style=st, layout=lay),
        "summary": slider("summary c", d["summary"], 1, d["block"]),   # c <= block
        "n_global": slider("global tokens", d["n_global"], 0, 8),
        "n_random": slider("random blocks", d["n_random"], 0, d["T"] // d["block"] - 5),
        "n_buckets": slider("LSH buckets", d["n_buckets"], 2, 16, 2),  # even: argmax over [xR; -xR]
        "seed": slider("seed", d["seed"], 0, 99),
        "n_docs": slider("documents", d["n_docs"], 1, 8),
        "first": W.Dropdown(options=["dense", "local"], value=d["first"], description="GPT-3 first layer",
                            style=st, layout=lay),
        "causal": W.Checkbox(value=d["causal"], description="causal (decoder)", style=st, indent=False),
    }


def _link(c: dict[str, W.ValueWidget]) -> None:
    """Keep ranges valid and grey out unused controls. Registered BEFORE FigureWidget's redraw observers, so a
    redraw always sees consistent values (traitlets calls observers in registration order)."""

    def set_max(slider: W.IntSlider, hi: int) -> None:
        if slider.value > hi:
            slider.value = hi              # move the value first (this redraws with a valid combination)
        slider.max = hi

    def on_block(*_: object) -> None:
        set_max(c["summary"], c["block"].value)                          # fixed: summary <= block
        on_size()

    def on_size(*_: object) -> None:
        set_max(c["n_random"], max(0, c["T"].value // c["block"].value - 5))   # BigBird: r <= nb - 5
        on_pattern()

    def on_pattern(*_: object) -> None:
        uses = PATTERNS[c["pattern"].value].uses
        for name, control in c.items():
            if name not in ("pattern", "T", "layers"):
                control.disabled = name not in uses or (name == "n_random" and control.max == 0)

    c["block"].observe(on_block, names="value")
    c["T"].observe(on_size, names="value")
    c["pattern"].observe(on_pattern, names="value")
    on_block()


def sparse_attention_explorer(**initial: Any) -> FigureWidget:
    """Pick a sparse attention pattern and its parameters; see its mask, its cost and its reach over L layers.

    Patterns (algorithms.md §1): dense causal; sliding window (Mistral §2); dilated window (Longformer §3.1);
    strided and fixed (Sparse Transformer, Child et al. 2019 §4.3); Longformer (§3.1); BigBird ITC (Zaheer et
    al. 2020 §2); Reformer LSH on seeded random vectors (Kitaev et al. 2020 §2); GPT-3 alternating dense /
    banded layers (Brown et al. 2020 §2.1); Llama-3 document mask (Dubey et al. 2024 §3.2).

    Keyword arguments set initial control values (names: ``DEFAULTS``); each must be a value the control
    offers, else ValueError. Sliders only offer valid combinations: window and LSH buckets are even, T is a
    multiple of every block size, summary <= block, random blocks <= T//block - 5.

    >>> w = sparse_attention_explorer(pattern="longformer", T=128, window=16)
    >>> w.controls["n_global"].value = 3          # redraws
    """
    c = _controls()
    for name in initial:
        check(name in c, name, initial[name], f"unknown control; controls are {list(c)}")
    _link(c)
    for name in ("pattern", "T", "block", *c):                           # ranges depend on T and block: first
        if name in initial:
            value = initial[name]
            offered = offered_values(c[name])
            ok = value in offered and type(value) is type(offered[0])
            check(ok, name, value, f"{name} must be one of the offered values {offered}")
            c[name].value = value
    return FigureWidget(draw_sparse, c, name="sparse_attention_explorer", figsize=SIZE, dpi=DPI, columns=4,
                        layout=None, keep=True)
