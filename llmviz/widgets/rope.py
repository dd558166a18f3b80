"""RoPE explorer: how the base, the head size and context scaling shape rotary position embeddings.

Four panels, one idea each (algorithms.md §2), shown one at a time (``panel``, default (a): one idea per
figure, and the fast path) or all four together for a lecture overview (about four times slower to redraw):

(a) one dimension pair rotates with position (RoFormer eq. 13: ``R(mθ_i)``), computed by the package's own
    ``RotaryEmbedding`` + ``apply_rope`` on a unit vector;
(b) the wavelength ``λ_i = 2π/θ_i`` of every pair against the training context, before and after a
    context-extension scaling (HF ``ROPE_INIT_FUNCTIONS``; algorithms.md §2.4-2.5);
(c) the long-term decay bound ``(1/(d/2)) Σ_j |S_j|`` of RoFormer §3.4.3 (eq. 35-37, Fig. 2) for base 10k and 1M;
(d) the rotate-half (HF Llama/Qwen) and interleaved (RoFormer, GPT-J, DeepSeek) layouts are one rotation up to
    the permutation ``P = [0, 2, 4, ..., 1, 3, 5, ...]`` (algorithms.md §2.2), checked live.

The pure helpers (``rope_wavelengths``, ``rope_decay_bound``, ``rope_bands``, ``layout_permutation``, ...) reuse
``llmviz.layers.position``; nothing here re-derives the RoPE frequencies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator

from .._checks import check, check_int
from ..configs import get_config
from ..layers.position import RotaryEmbedding, apply_rope, rope_inv_freq
from .figure import FigureWidget, kept_view

# --- presets, all read from the real configs -------------------------------------------------------------
BASE_PRESETS: dict[str, float] = {
    "10,000 (Llama 1/2)": get_config("llama-2-7b").rope_theta,
    "500,000 (Llama 3)": get_config("llama-3-8b").rope_theta,
    "1,000,000 (Qwen3)": get_config("qwen3-8b").rope_theta,
}
_LLAMA31_SCALING = get_config("llama-3.1-8b").rope_scaling  # factor 8, low 1, high 4, original 8192
CUSTOM_BASE = 0.0  # value of the preset dropdown's "custom" entry: the slider decides
HEAD_DIMS = (32, 64, 96, 128, 192, 256)
SCALINGS: dict[str, str] = {  # dropdown label -> HF rope_type
    "none": "default",
    "linear (PI)": "linear",
    "NTK (dynamic)": "dynamic",
    "YaRN": "yarn",
    "llama3 (Llama 3.1)": "llama3",
}
ORIGINAL_CONTEXTS = (  # trained context lengths L: 2,048 / 4,096 / 8,192 / 32,768
    get_config("llama-1-7b").max_position_embeddings,
    get_config("llama-2-7b").max_position_embeddings,  # also DeepSeek-V3's YaRN original length
    get_config("llama-3-8b").max_position_embeddings,  # also Llama 3.1's llama3-scaling original length
    get_config("qwen3-0.6b").context_length,  # Qwen3's native (pre-training) context; YaRN ×4 extends it
)
BASE_EXP_RANGE = (2.0, 7.0)  # log10 range of the base slider: 100 .. 10,000,000
MAX_POSITION = 131_072
MAX_FACTOR = 64
N_TRAIL = 16  # positions m-15 .. m drawn in panel (a)
DEFAULTS: dict[str, Any] = dict(base=10_000.0, head_dim=128, position=100, pair=8, scaling="default", factor=4,
                                original_context=4096, panel="a")

# Okabe-Ito colours (colour-blind safe)
BLUE, ORANGE, VERMILION, BLACK, GREY = "#0072B2", "#E69F00", "#D55E00", "#000000", "#999999"
FS, FS_BIG = 11, 14  # points (titles one more): FS in the 12-in overview, FS_BIG for one 9-in panel


# --- pure computation ------------------------------------------------------------------------------------

def rope_scaling_dict(kind: str, factor: float = 1.0, original_context: int = 4096) -> dict | None:
    """The HF ``rope_scaling`` dict for a scaling ``kind`` (``default`` -> ``None``).

    ``llama3`` takes ``low_freq_factor`` / ``high_freq_factor`` from the Llama-3.1-8B preset; ``yarn`` keeps HF's
    ``beta_fast=32``, ``beta_slow=1`` (algorithms.md §2.5). ``original_context`` is L, the trained length.
    """
    check(kind in SCALINGS.values(), "scaling", kind, f"must be one of {tuple(SCALINGS.values())}")
    if kind == "default":
        return None
    check(isinstance(factor, (int, float)) and factor >= 1, "factor", factor, "the scaling factor must be >= 1")
    out: dict[str, Any] = {"rope_type": kind, "factor": float(factor)}
    if kind == "llama3":
        out.update(low_freq_factor=_LLAMA31_SCALING["low_freq_factor"],
                   high_freq_factor=_LLAMA31_SCALING["high_freq_factor"])
    if kind in ("llama3", "yarn"):
        out["original_max_position_embeddings"] = int(original_context)
    return out


def _inv_freq(dim: int, base: float, scaling: dict | None, max_position_embeddings: int | None,
              seq_len: int | None) -> np.ndarray:
    check(isinstance(dim, int) and dim >= 2 and dim % 2 == 0, "dim", dim,
          "RoPE rotates pairs of dimensions, so dim must be an even integer >= 2")
    check(isinstance(base, (int, float)) and base > 1, "base", base, "the RoPE base must be > 1")
    if (scaling or {}).get("rope_type") == "dynamic":
        check(max_position_embeddings is not None, "max_position_embeddings", max_position_embeddings,
              "dynamic NTK scaling needs the original context length")
    inv, _ = rope_inv_freq(dim, float(base), scaling, max_position_embeddings, seq_len)  # [dim/2] float32
    return inv.double().numpy()


def rope_wavelengths(dim: int, base: float, scaling: dict | None = None, max_position_embeddings: int | None = None,
                     seq_len: int | None = None) -> np.ndarray:
    """``λ_i = 2π/θ_i`` in tokens, one per pair i = 0..dim/2-1 (algorithms.md §2.4): [dim/2].

    ``scaling`` is an HF ``rope_scaling`` dict (see :func:`rope_scaling_dict`); the frequencies come from
    ``llmviz.layers.position.rope_inv_freq`` (= HF ``ROPE_INIT_FUNCTIONS``). ``dynamic`` needs
    ``max_position_embeddings`` (L) and uses ``seq_len`` (T) as the current length.
    """
    return 2 * math.pi / _inv_freq(dim, base, scaling, max_position_embeddings, seq_len)


def rope_bands(dim: int, base: float, scaling: dict | None = None, max_position_embeddings: int | None = None,
               seq_len: int | None = None) -> np.ndarray:
    """What a scaling does to each pair: ``"kept"`` (θ unchanged), ``"divided"`` (θ/factor) or ``"blended"``
    (in between: the YaRN ramp, the llama3 smooth band, or NTK's new base): [dim/2] of str."""
    ref = _inv_freq(dim, base, None, None, None)
    new = _inv_freq(dim, base, scaling, max_position_embeddings, seq_len)
    ratio = new / ref  # [dim/2]
    factor = float((scaling or {}).get("factor") or 1.0)
    bands = np.full(ratio.shape, "blended", dtype=object)
    bands[np.isclose(ratio, 1.0 / factor, rtol=1e-5)] = "divided"
    bands[np.isclose(ratio, 1.0, rtol=1e-5)] = "kept"  # wins when factor == 1
    return bands


def rope_band_counts(bands: np.ndarray) -> dict[str, int]:
    """``{"kept": n, "blended": n, "divided": n}`` from :func:`rope_bands`."""
    return {k: int((bands == k).sum()) for k in ("kept", "blended", "divided")}


def rope_band_edges(bands: np.ndarray) -> tuple[int, int]:
    """``(low, high)``: the last pair of the leading "kept" run and the first pair of the trailing "divided" run.

    For YaRN these are HF's ``low`` / ``high`` correction indices (``find_correction_range`` with truncation):
    the ramp is 0 up to ``low`` and 1 from ``high`` on. ``-1`` / ``dim/2`` when a run is empty.
    """
    n = len(bands)
    low = -1
    while low + 1 < n and bands[low + 1] == "kept":
        low += 1
    high = n
    while high - 1 >= 0 and bands[high - 1] == "divided":
        high -= 1
    return low, high


def rope_decay_bound(rel: Any, dim: int = 128, base: float = 10_000.0) -> np.ndarray:
    """RoFormer §3.4.3 relative upper bound ``(1/(d/2)) Σ_{j=1}^{d/2} |S_j|``, ``S_j = Σ_{k<j} e^{i·r·θ_k}``,
    for each relative distance r in ``rel``: [len(rel)]. Equals ``(d/2+1)/2`` at r = 0 (algorithms.md §2.3)."""
    rel = np.atleast_1d(np.asarray(rel, dtype=np.float64))  # [R]
    check(bool(np.all(rel >= 0)), "rel", rel.min(initial=0), "relative distances must be >= 0")
    theta = _inv_freq(dim, base, None, None, None)  # [d/2]
    s = np.cumsum(np.exp(1j * rel[:, None] * theta[None, :]), axis=1)  # [R, d/2]: S_1 .. S_{d/2}
    return np.abs(s).mean(axis=1)


def layout_permutation(dim: int) -> torch.Tensor:
    """``P = [0, 2, 4, ..., d-2, 1, 3, ..., d-1]`` (de-interleave): ``interleaved(x)[P] == rotate_half(x[P])``
    (algorithms.md §2.2; HF ``convert_llama_weights_to_hf.permute`` does this to W_q, W_k): LongTensor [dim]."""
    check(isinstance(dim, int) and dim >= 2 and dim % 2 == 0, "dim", dim, "must be an even integer >= 2")
    return torch.cat([torch.arange(0, dim, 2), torch.arange(1, dim, 2)])


def _rotary(dim: int, base: float, scaling: dict | None, original_context: int, interleaved: bool) -> RotaryEmbedding:
    return RotaryEmbedding(dim, float(base), scaling, max_position_embeddings=int(original_context),
                           interleaved=interleaved)


def layout_mismatch(dim: int, base: float, position: int, scaling: dict | None = None, original_context: int = 4096,
                    seed: int = 0) -> float:
    """``max |interleaved_rope(x)[P] − rotate_half_rope(x[P])|`` for a random x at ``position``: 0 or float32
    round-off (~1e-7), since both compute the same products on permuted memory.

    Both sides run the package's ``RotaryEmbedding`` + ``apply_rope`` (HF GPT-J ``rotate_every_two`` and HF
    Llama ``rotate_half``)."""
    perm = layout_permutation(dim)
    x = torch.randn(1, dim, generator=torch.Generator().manual_seed(seed))  # [T=1, d]
    pos = torch.tensor([int(position)])
    cos_i, sin_i = _rotary(dim, base, scaling, original_context, True)(pos)  # [1, d] θ0 θ0 θ1 θ1 ...
    cos_h, sin_h = _rotary(dim, base, scaling, original_context, False)(pos)  # [1, d] θ0 θ1 ... θ0 θ1 ...
    inter = apply_rope(x, cos_i, sin_i, interleaved=True)  # [1, d]
    half = apply_rope(x[:, perm], cos_h, sin_h, interleaved=False)  # [1, d]
    return float((inter[:, perm] - half).abs().max())


def rope_pair_trail(dim: int, base: float, pair: int, position: int, n: int = N_TRAIL, scaling: dict | None = None,
                    original_context: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """``(positions [k], points [k, 2])``: where RoPE sends the unit vector of pair ``pair`` (rotate-half layout:
    dims ``pair`` and ``pair + dim/2``) at positions ``max(0, position-n+1) .. position``.

    The points are ``(cos mθ_i, sin mθ_i)`` times YaRN's attention factor (1 otherwise)."""
    half = dim // 2
    check_int(pair, "pair", minimum=0, maximum=half - 1)
    check_int(position, "position", minimum=0)
    pos = torch.arange(max(0, position - n + 1), position + 1)  # [k]
    x = torch.zeros(len(pos), dim)
    x[:, pair] = 1.0  # [k, d]: x_i = 1, x_{i+d/2} = 0
    cos, sin = _rotary(dim, base, scaling, original_context, False)(pos)  # [k, d]
    y = apply_rope(x, cos, sin)  # [k, d]
    return pos.numpy(), y[:, [pair, pair + half]].double().numpy()


LAYOUT_CHECKS = tuple((b, m) for b in (1e2, 1e4, 5e5, 1e6, 1e7) for m in (0, 1, 100, 4096, MAX_POSITION))


@lru_cache(maxsize=16)
def _layout_check(dim: int) -> float:
    """Panel (d)'s check: the largest :func:`layout_mismatch` over ``LAYOUT_CHECKS`` (bases 100 .. 1e7, positions
    0 .. 131,072), so that the panel depends on head_dim and the pair only."""
    return max(layout_mismatch(dim, b, m) for b, m in LAYOUT_CHECKS)


@lru_cache(maxsize=64)
def _decay_curve(dim: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    rel = np.unique(np.r_[0, np.round(np.geomspace(1, MAX_POSITION, 220))]).astype(np.int64)  # [R]
    return rel, rope_decay_bound(rel, dim, base)


def _preset_label(base: float) -> str | None:
    for label, value in BASE_PRESETS.items():
        if math.isclose(base, value, rel_tol=1e-6):
            return label
    return None


def _scaling_label(kind: str) -> str:
    return next(label for label, value in SCALINGS.items() if value == kind)


# --- drawing ---------------------------------------------------------------------------------------------

PANELS: dict[str, str] = {  # dropdown label -> panel key: one idea per figure; the overview last (slower)
    "(a) one pair rotating": "a",
    "(b) wavelengths vs context": "b",
    "(c) long-term decay: 10k vs 1M": "c",
    "(d) two memory layouts": "d",
    "all four (overview, slower)": "all",
}
SIZE_ONE, SIZE_ALL = (9.0, 6.0), (12.0, 8.6)  # inches; at 72 dpi one panel is 648 x 432 px
DPI = 72
_STATE = "_llmviz_rope"  # attribute of the figure that keeps the panels' Axes between redraws


def _tokens(v: float, _pos: Any = None) -> str:
    """Plain-text tick labels for token counts (1k, 10k, 1M): faster than mathtext and easier to read."""
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


_TOKENS = FuncFormatter(_tokens)


@dataclass(frozen=True)
class _View:
    """Everything a panel needs, derived once from the control values."""

    base: float
    dim: int
    position: int
    pair: int
    kind: str  # HF rope_type
    scale: dict | None  # HF rope_scaling dict, None for "default"
    factor: float
    L: int  # original (training) context
    target: int  # factor * L when scaled, else L
    fs: float  # font size of labels and ticks (points)

    @property
    def fs_title(self) -> float:
        return self.fs + 1


def _setup(ax: Any, key: str, fs: float) -> None:
    """What a panel's Axes keeps between redraws: scales, locators, tick style, grid (set once)."""
    if key == "b":
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10))
        ax.yaxis.set_major_formatter(_TOKENS)
    elif key == "c":
        ax.set_xscale("symlog", linthresh=1)
        ax.xaxis.set_major_locator(FixedLocator([0, 1, 10, 100, 1e3, 1e4, 1e5]))
        ax.xaxis.set_major_formatter(_TOKENS)
    ax.tick_params(labelsize=fs)
    ax.minorticks_off()  # fewer artists to render
    if key != "d":
        ax.grid(True, alpha=0.25)


def _panel_axes(fig: Figure, panel: str) -> list[Any]:
    """The Axes of ``panel`` ("all": four), kept on the figure: each view's Axes are built once and put back
    when the view is chosen again; only their data, texts and limits change between redraws (building and
    clearing Axes is the largest part of a redraw after the text). A figure cleared by someone else (or a
    fresh one) starts over."""
    size = SIZE_ALL if panel == "all" else SIZE_ONE
    if not np.allclose(fig.get_size_inches(), size):
        fig.set_size_inches(size)

    def build(fig: Figure) -> list[Any]:
        if panel == "all":
            grid = fig.add_gridspec(2, 2, left=0.075, right=0.985, bottom=0.075, top=0.925, wspace=0.3, hspace=0.42)
            axes = [fig.add_subplot(grid[i // 2, i % 2]) for i in range(4)]
        else:
            left = {"a": 0.1, "b": 0.105, "c": 0.085, "d": 0.185}[panel]
            axes = [fig.add_axes((left, 0.115, 0.975 - left, 0.745))]
        for ax, key in zip(axes, "abcd" if panel == "all" else panel):
            _setup(ax, key, FS if panel == "all" else FS_BIG)
        return axes

    return kept_view(fig, _STATE, panel, build)


def _wipe(ax: Any) -> None:
    """Remove what the previous redraw drew on ``ax`` (data, free texts, legend); keep the Axes itself."""
    for artist in (*ax.lines, *ax.collections, *ax.images, *ax.patches, *ax.texts):
        artist.remove()
    if ax.legend_ is not None:
        ax.legend_.remove()


def _title(ax: Any, text: str, v: _View) -> None:
    ax.set_title(text, fontsize=v.fs_title, y=1.0)  # an explicit y skips the automatic title placement


def draw_rope(fig: Figure, base: float, head_dim: int, position: int, pair: int, scaling: str = "default",
              factor: float = 4, original_context: int = 4096, panel: str = "all",
              base_preset: float | None = None) -> None:
    """Draw the RoPE panels for these control values on ``fig`` (a pure function of the values).

    ``scaling`` is an HF rope_type (``default``, ``linear``, ``dynamic``, ``yarn``, ``llama3``); ``panel`` is one
    of ``"a"``-``"d"`` (one idea, large type, 9 x 6 in: the explorer's fast default) or ``"all"`` (the 2 x 2
    overview at 12 x 8.6 in for a lecture: about four times the redraw cost of one panel, ~0.2 s of CPU). The
    figure is resized to match. Drawing again on the same figure reuses its Axes (see ``_panel_axes``); the
    result is the same as on a fresh figure. ``base_preset`` is only the preset dropdown's state (the base
    slider decides) and is ignored here.
    """
    check(isinstance(head_dim, int) and head_dim >= 2 and head_dim % 2 == 0, "head_dim", head_dim,
          "must be an even integer >= 2")
    check_int(pair, "pair", minimum=0, maximum=head_dim // 2 - 1)
    check(panel in PANELS.values(), "panel", panel, f"must be one of {tuple(PANELS.values())}")
    L = int(original_context)
    scale = rope_scaling_dict(scaling, factor, L)
    view = _View(float(base), head_dim, int(position), pair, scaling, scale, factor, L,
                 int(round(factor * L)) if scale else L, FS if panel == "all" else FS_BIG)
    painters = {"a": _draw_pair, "b": _draw_wavelengths, "c": _draw_decay, "d": _draw_layouts}
    for ax, key in zip(_panel_axes(fig, panel), "abcd" if panel == "all" else panel):
        _wipe(ax)
        painters[key](ax, view)


_CIRCLE = (np.cos(np.linspace(0, 2 * np.pi, 121)), np.sin(np.linspace(0, 2 * np.pi, 121)))  # unit circle


def _draw_pair(ax: Any, v: _View) -> None:
    """(a) RoFormer eq. 13: the pair (x_i, x_{i+d/2}) of a unit vector, rotated by R(mθ_i) for the last positions."""
    pos, pts = rope_pair_trail(v.dim, v.base, v.pair, v.position, scaling=v.scale, original_context=v.L)  # [k], [k, 2]
    ax.plot(_CIRCLE[0], _CIRCLE[1], color=GREY, lw=1)
    if v.scale is not None:  # the same pair without scaling, for comparison
        _, ref = rope_pair_trail(v.dim, v.base, v.pair, v.position, n=1)
        ax.plot([0, ref[-1, 0]], [0, ref[-1, 1]], color=BLACK, lw=1.5, ls="--", zorder=4, label="without scaling")
    if len(pts) > 1:
        ax.scatter(pts[:-1, 0], pts[:-1, 1], s=40, color=BLUE, alpha=np.linspace(0.15, 0.6, len(pts) - 1), lw=0,
                   label=f"earlier positions {pos[0]:,}..{pos[-2]:,}")
    x, y = pts[-1]
    r = float(np.hypot(x, y))
    ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops=dict(arrowstyle="-|>", color=VERMILION, lw=2.5))
    ax.plot([x], [y], "o", color=VERMILION, ms=8, label=f"position m = {v.position:,}")
    notes = [_scaling_note(v)] if v.scale is not None else []
    if abs(r - 1) > 1e-4:
        notes.append(f"|v| = {r:.3f}: YaRN's attention factor")
    if notes:
        ax.text(0.02, 0.03, "\n".join(notes), transform=ax.transAxes, fontsize=v.fs)
    # circle on the right of the axes box, legend on the left; equal aspect without moving the box
    lim = max(1.3, 1.15 * r)
    box = ax.get_position()
    fig_w, fig_h = ax.figure.get_size_inches()
    width = 2 * lim * (box.width * fig_w) / (box.height * fig_h)  # data units that fill the box width
    ax.set_xlim(lim - max(width, 2 * lim), lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xticks([-1, 0, 1])
    ax.set_yticks([-1, 0, 1])
    ax.set_xlabel(f"dim {v.pair}  (x_i)", fontsize=v.fs)
    ax.set_ylabel(f"dim {v.pair + v.dim // 2}  (x_i+d/2)", fontsize=v.fs)
    theta = float(_inv_freq(v.dim, v.base, v.scale, v.L, v.position + 1)[v.pair])  # dynamic: T = m+1, as HF
    turns = v.position * theta / (2 * np.pi)
    _title(ax, f"(a) Pair i = {v.pair} turns θ_i = {theta:.3g} rad per token:\n"
               f"at position m = {v.position:,} it has turned {turns:,.3g} times", v)
    ax.legend(fontsize=v.fs, loc="upper left", framealpha=0.8)


def _scaling_note(v: _View) -> str:
    """What the chosen scaling does to pair i at position m (panel a): e.g. "llama3 ×4, L = 4,096: θ_i kept"."""
    head = f"{_scaling_label(v.kind)} ×{v.factor:g}" + (f", L = {v.L:,}" if v.kind in _NEEDS_L else "")
    if v.kind == "dynamic" and v.position + 1 <= v.L:
        return f"{head}: inactive while m + 1 ≤ L"
    ratio = float(_inv_freq(v.dim, v.base, v.scale, v.L, v.position + 1)[v.pair]
                  / _inv_freq(v.dim, v.base, None, None, None)[v.pair])
    if math.isclose(ratio, 1.0, rel_tol=1e-5):
        return f"{head}: θ_i kept"
    if math.isclose(ratio, 1 / v.factor, rel_tol=1e-5):
        return f"{head}: θ_i ÷ {v.factor:g}"
    return f"{head}: θ_i × {ratio:.3g}"


def _draw_wavelengths(ax: Any, v: _View) -> None:
    """(b) algorithms.md §2.4-2.5: λ_i = 2π/θ_i against the context, before and after scaling."""
    half = v.dim // 2
    i = np.arange(half)
    lam = rope_wavelengths(v.dim, v.base)  # [d/2]
    n_long = int((lam > v.L).sum())
    if n_long:
        ax.axvspan(half - n_long - 0.5, half - 0.5, color=GREY, alpha=0.18, lw=0)
    ax.axhline(v.L, color=BLACK, ls="--", lw=1.5, label=f"original context L = {v.L:,}")
    ax.plot(i, lam, "o-", color=BLUE, ms=3.5, lw=1.5, label=f"base {v.base:,.0f}",
            gid="wavelength_unscaled")
    ys = [lam, [v.L]]
    if v.scale is not None:
        dyn = dict(max_position_embeddings=v.L, seq_len=v.target) if v.kind == "dynamic" else {}
        lam_s = rope_wavelengths(v.dim, v.base, v.scale, **dyn)  # [d/2]
        counts = rope_band_counts(rope_bands(v.dim, v.base, v.scale, **dyn))
        n_long_s = int((lam_s > v.target).sum())
        ax.axhline(v.target, color=GREY, ls=":", lw=2, label=f"target context {v.factor:g}·L = {v.target:,}")
        label = (f"{_scaling_label(v.kind)} ×{v.factor:g}: {n_long_s} pairs have λ > {v.factor:g}·L\n"
                 f"(kept {counts['kept']} · blended {counts['blended']} · ÷{v.factor:g} {counts['divided']})")
        ax.plot(i, lam_s, "s-", color=ORANGE, ms=3, lw=1.5, label=label, gid="wavelength_scaled")
        ys += [lam_s, [v.target]]
    ax.plot([v.pair], [lam[v.pair]], "o", color=VERMILION, ms=9, zorder=5)
    lo, hi = np.log10(min(float(np.min(y)) for y in ys)), np.log10(max(float(np.max(y)) for y in ys))
    pad = 0.05 * (hi - lo)  # matplotlib's default margin, in log space
    ax.set_ylim(10 ** (lo - pad), 10 ** (hi + pad))
    ax.set_xlim(-0.5, half - 0.5)
    ax.set_xticks([0, half // 2, half - 1])
    ax.set_xlabel(f"pair index i  (0 = fastest; pair {v.pair} in vermilion)", fontsize=v.fs)
    ax.set_ylabel("wavelength λ_i  (tokens per turn)", fontsize=v.fs)
    _title(ax, f"(b) Wavelength λ_i = 2π/θ_i of each pair (head_dim {v.dim}):\n"
               f"{n_long} of {half} pairs never complete a turn within L (shaded)", v)
    ax.legend(fontsize=v.fs, loc="lower right", framealpha=0.85)


def _draw_decay(ax: Any, v: _View) -> None:
    """(c) RoFormer §3.4.3, eq. 37 / Fig. 2: the relative upper bound against the distance, base 10k vs 1M."""
    refs = [(1e4, BLUE), (1e6, VERMILION)]
    chosen_is_ref = any(math.isclose(v.base, b, rel_tol=1e-6) for b, _ in refs)
    for b, colour in refs:
        rel, bound = _decay_curve(v.dim, b)
        me = math.isclose(v.base, b, rel_tol=1e-6)
        ax.plot(rel, bound, color=colour, lw=3 if me else 1.8, gid=f"decay_{b:g}",
                label=f"base {b:,.0f}" + ("  (chosen)" if me else ""))
    if not chosen_is_ref:
        rel, bound = _decay_curve(v.dim, v.base)
        ax.plot(rel, bound, color=BLACK, lw=2.5, ls="--", label=f"base {v.base:,.0f}  (chosen)", gid="decay_chosen")
    ax.axvline(v.L, color=GREY, ls=":", lw=1.5)
    ax.text(v.L, 0.97, f" L = {v.L:,}", transform=ax.get_xaxis_transform(), fontsize=v.fs, va="top",
            color="#555555")
    ax.set_xlim(0, MAX_POSITION)
    ax.set_ylim(0, (v.dim / 2 + 1) / 2 * 1.05)
    ax.set_xlabel("relative distance m − n  (tokens)", fontsize=v.fs)
    ax.set_ylabel("bound (1/(d/2)) Σ_j |S_j|", fontsize=v.fs)
    _title(ax, "(c) Long-term decay (RoFormer §3.4.3): far tokens interact\n"
               "less, and a larger base decays more slowly", v)
    ax.legend(fontsize=v.fs, loc="lower left", framealpha=0.8)


def _draw_layouts(ax: Any, v: _View) -> None:
    """(d) algorithms.md §2.2: which dimensions pair up in each layout, and the live check of the permutation."""
    dim, pair, half = v.dim, v.pair, v.dim // 2
    perm = layout_permutation(dim).numpy()  # rotate-half slot j holds interleaved dim perm[j]
    slot_of = np.argsort(perm)  # interleaved dim k sits at rotate-half slot slot_of[k]
    k = np.arange(dim)
    ext = dict(aspect="auto", cmap="cividis", vmin=0, vmax=half - 1, interpolation="nearest")
    ax.imshow((k // 2)[None, :], extent=(-0.5, dim - 0.5, 2.0, 2.6), **ext)  # interleaved: pair of dim k = k // 2
    ax.imshow((k % half)[None, :], extent=(-0.5, dim - 0.5, 0.0, 0.6), **ext)  # rotate-half: pair = k mod d/2
    segs = np.stack([np.c_[k, np.full(dim, 2.0)], np.c_[slot_of, np.full(dim, 0.6)]], axis=1)  # [d, 2, 2]
    ax.add_collection(LineCollection(segs, colors=GREY, linewidths=0.6, alpha=0.5))
    mine = [2 * pair, 2 * pair + 1]
    ax.add_collection(LineCollection(segs[mine], colors=VERMILION, linewidths=3))
    for row_y, xs in ((2.3, mine), (0.3, [pair, pair + half])):
        ax.plot(xs, [row_y, row_y], "s", ms=9, mfc="none", mec=VERMILION, mew=2.5)
    err = _layout_check(dim)
    ax.set_xlim(-0.5, dim - 0.5)
    ax.set_ylim(-0.05, 2.65)
    ax.set_xticks([0, half, dim - 1])
    ax.set_yticks([2.3, 0.3], ["interleaved\n(x₂ᵢ, x₂ᵢ₊₁)", "rotate-half\n(xᵢ, xᵢ₊d/₂)"])
    ax.set_xlabel(f"slot in the head (colour = pair index; pair {pair} in vermilion)", fontsize=v.fs)
    _title(ax, "(d) Two layouts, one rotation: P = [0, 2, 4, …, 1, 3, 5, …]\n"
               f"max |interleaved(x)[P] − rotate_half(x[P])| = {err:.1e} (any base, m ≤ 131k)", v)


# --- the widget ------------------------------------------------------------------------------------------

_ALWAYS = frozenset({"panel", "head_dim"})
_USES: dict[str, frozenset[str]] = {  # panel -> controls its picture depends on (besides factor / L, below)
    "a": frozenset({"base_preset", "base", "pair", "position", "scaling"}),
    "b": frozenset({"base_preset", "base", "pair", "scaling", "original_context"}),  # L and f·L are drawn
    "c": frozenset({"base_preset", "base", "original_context"}),  # the decay bound ignores scaling; L is drawn
    "d": frozenset({"pair"}),  # the layouts depend on head_dim and the pair only; the check is base-independent
}
_USES["all"] = frozenset().union(*_USES.values())
_NEEDS_L = ("dynamic", "yarn", "llama3")  # scalings whose frequencies depend on the trained context L


def rope_controls_used(panel: str, scaling: str) -> frozenset[str]:
    """The names of the controls that change the picture of ``panel`` under ``scaling`` (an HF rope_type): the
    explorer disables the others. The factor applies only to a scaling, L to the panels that draw it and to the
    scalings that use it (linear PI ignores L); (c) and (d) do not depend on the scaling at all."""
    check(panel in PANELS.values(), "panel", panel, f"must be one of {tuple(PANELS.values())}")
    check(scaling in SCALINGS.values(), "scaling", scaling, f"must be one of {tuple(SCALINGS.values())}")
    used = set(_ALWAYS | _USES[panel])
    if "scaling" in used and scaling != "default":
        used.add("factor")
        if scaling in _NEEDS_L:
            used.add("original_context")
    return frozenset(used)


def _check_initial(v: dict[str, Any]) -> None:
    lo, hi = 10 ** BASE_EXP_RANGE[0], 10 ** BASE_EXP_RANGE[1]
    check(isinstance(v["base"], (int, float)) and not isinstance(v["base"], bool) and lo <= v["base"] <= hi,
          "base", v["base"], f"the RoPE base must be a number in [{lo:,.0f}, {hi:,.0f}]")
    check(v["head_dim"] in HEAD_DIMS, "head_dim", v["head_dim"], f"must be one of {HEAD_DIMS}")
    check_int(v["position"], "position", minimum=0, maximum=MAX_POSITION)
    check_int(v["pair"], "pair", minimum=0, maximum=v["head_dim"] // 2 - 1)
    kinds = {**{k: k for k in SCALINGS.values()}, **SCALINGS}
    check(v["scaling"] in kinds, "scaling", v["scaling"], f"must be one of {tuple(SCALINGS.values())}")
    v["scaling"] = kinds[v["scaling"]]
    check_int(v["factor"], "factor", minimum=1, maximum=MAX_FACTOR)
    check(v["original_context"] in ORIGINAL_CONTEXTS, "original_context", v["original_context"],
          f"must be one of {ORIGINAL_CONTEXTS}")
    check(v["panel"] in PANELS.values(), "panel", v["panel"], f"must be one of {tuple(PANELS.values())}")


def rope_explorer(**initial: Any) -> FigureWidget:
    """Interactive RoPE explorer (RoFormer §3.2-3.4, HF ``modeling_rope_utils``).

    Keyword initial values: ``base`` (100 .. 1e7), ``head_dim`` (one of ``HEAD_DIMS``), ``position`` (0 ..
    131,072), ``pair`` (0 .. head_dim/2 − 1), ``scaling`` (``default``, ``linear``, ``dynamic``, ``yarn``,
    ``llama3``), ``factor`` (1 .. 64), ``original_context`` (one of ``ORIGINAL_CONTEXTS``) and ``panel``
    (``"a"``-``"d"``: one idea in large type, default ``"a"``; ``"all"``: the four together for a lecture
    overview, whose redraws take about four times as long, ~0.2 s of CPU on a slow machine against ~50 ms).
    Controls the shown panel does not depend on are disabled (:func:`rope_controls_used`), e.g. the factor while
    the scaling is "none", or the base and position in panel (d).

    >>> w = rope_explorer(base=1e6, head_dim=128)
    >>> w.controls["scaling"].value = "yarn"     # redraws
    """
    unknown = sorted(set(initial) - set(DEFAULTS))
    check(not unknown, unknown[0] if unknown else "", initial.get(unknown[0]) if unknown else None,
          f"rope_explorer takes only {sorted(DEFAULTS)}")
    v = {**DEFAULTS, **initial}
    _check_initial(v)
    style = {"description_width": "initial"}
    preset_options = [(label, value) for label, value in BASE_PRESETS.items()] + [("custom (slider)", CUSTOM_BASE)]
    label = _preset_label(v["base"])
    base_preset = widgets.Dropdown(options=preset_options, value=BASE_PRESETS[label] if label else CUSTOM_BASE,
                                   description="base preset", style=style)
    base = widgets.FloatLogSlider(value=float(v["base"]), base=10, min=BASE_EXP_RANGE[0], max=BASE_EXP_RANGE[1],
                                  step=0.05, description="base θ", readout_format=",.0f", style=style,
                                  continuous_update=False)
    head_dim = widgets.Dropdown(options=list(HEAD_DIMS), value=v["head_dim"], description="head_dim", style=style)
    position = widgets.IntSlider(value=v["position"], min=0, max=MAX_POSITION, description="position m",
                                 style=style, continuous_update=False)
    pair = widgets.IntSlider(value=v["pair"], min=0, max=v["head_dim"] // 2 - 1, description="pair i", style=style,
                             continuous_update=False)
    scaling = widgets.Dropdown(options=list(SCALINGS.items()), value=v["scaling"], description="context scaling",
                               style=style)
    factor = widgets.IntSlider(value=v["factor"], min=1, max=MAX_FACTOR, description="factor s", style=style,
                               continuous_update=False)
    original = widgets.Dropdown(options=[(f"{n:,}", n) for n in ORIGINAL_CONTEXTS], value=v["original_context"],
                                description="original context L", style=style)
    panel = widgets.Dropdown(options=list(PANELS.items()), value=v["panel"], description="show", style=style)

    # keep the controls consistent; these observers run before the widget's redraw (registered first)
    def on_preset(change: dict) -> None:
        if change["new"] != CUSTOM_BASE:
            base.value = change["new"]  # redraws through the slider

    def on_base(change: dict) -> None:
        found = _preset_label(change["new"])
        base_preset.value = BASE_PRESETS[found] if found else CUSTOM_BASE

    def on_head_dim(change: dict) -> None:
        pair.max = change["new"] // 2 - 1  # clamps pair.value

    base_preset.observe(on_preset, names="value")
    base.observe(on_base, names="value")
    head_dim.observe(on_head_dim, names="value")
    controls = dict(base_preset=base_preset, base=base, head_dim=head_dim,  # three rows of three
                    pair=pair, position=position, panel=panel,
                    scaling=scaling, factor=factor, original_context=original)
    size = SIZE_ALL if v["panel"] == "all" else SIZE_ONE
    w = FigureWidget(draw_rope, controls, name="rope_explorer", figsize=size, dpi=DPI, columns=3, layout=None, keep=True)
    base_preset.unobserve(w.redraw, names="value")  # the preset only moves the slider, which redraws

    def on_applicable(_change: object = None) -> None:  # grey out what the shown panel does not depend on
        used = rope_controls_used(panel.value, scaling.value)
        for name, control in controls.items():
            control.disabled = name not in used

    panel.observe(on_applicable, names="value")
    scaling.observe(on_applicable, names="value")
    on_applicable()
    return w
