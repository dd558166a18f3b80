"""Attention viewer: what every head of every layer of an llmviz model looks at (bertviz-like, no JavaScript).

One forward pass with ``keep_weights=True`` on every block's :class:`~llmviz.layers.Attention` stores the
attention probabilities ``softmax(QKᵀ/√d + mask)`` (Vaswani et al. 2017, §3.2.1, eq. 1); row i says how query
token i mixes the values of the tokens it may see: j <= i in a decoder (causal mask), every token in an encoder
such as BERT (the figure's titles say which, read from the maps). :func:`attention_rollout` combines the layers
(Abnar & Zuidema 2020). The maps are computed once, in the constructor; the controls only change the view:

* layer and head both chosen: one large heatmap with token labels; below it the selected query's row as bars
  over the key tokens (or, with no query chosen, the mean attention each key receives); beside it the keys
  that query reads most, in words (what bertviz's head view shows, without JavaScript);
* "all heads" / "all layers": a grid of small heatmaps (all heads of a layer, one head across layers, or the
  whole layers x heads overview), drawn as one image so that even 12 x 12 heads redraw quickly;
* query: highlights one query row in every heatmap.

Token labels are plain texts (half the cost of tick labels), there is no layout engine, each view's Axes stay
on the figure between redraws and the PNG is 80 dpi: a redraw of the one-head view costs ~70-120 ms of CPU for
T = 8-32 on a slow shared CPU (each token label about 1 ms), the grids ~40 ms.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import ipywidgets as W
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from .._checks import check
from .figure import FigureWidget, kept_view
__all__ = ["attention_maps", "attention_rollout", "draw_attention", "attention_viewer"]

MAX_T = 128           # the viewer is for short inputs; token labels stay legible up to ~32
MAX_LABELS = 32       # beyond this, label every k-th token only
CMAP = "Blues"        # sequential single-hue map: colour-blind safe, white = 0
GAP = "#b0b0b0"       # colour between the tiles of a grid
HIGHLIGHT = "#D55E00"  # Okabe-Ito vermillion: the selected query row
_FONT = 12
DPI = 80              # 920 px wide: a smaller PNG to encode than at 100 dpi; text stays 11-13 pt


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    """``model.blocks[i].attn`` for every block; each must support ``keep_weights`` (llmviz Attention)."""
    blocks = getattr(model, "blocks", None)
    check(isinstance(blocks, nn.ModuleList) and len(blocks) > 0, "model", type(model).__name__,
          "model must be an llmviz model (decoder or BERT encoder) with a non-empty .blocks list")
    attns = [getattr(b, "attn", None) for b in blocks]
    check(all(a is not None and hasattr(a, "keep_weights") for a in attns), "model", type(model).__name__,
          "every model.blocks[i].attn must be an llmviz Attention module (with keep_weights)")
    return attns


def _as_ids(model: nn.Module, input_ids: Tensor | Sequence[int]) -> Tensor:
    """input ids [T], [1, T] or a list of ints -> LongTensor [1, T], checked against the vocabulary."""
    ids = input_ids if isinstance(input_ids, Tensor) else torch.as_tensor(list(input_ids))
    if ids.dim() == 2:
        check(ids.shape[0] == 1, "input_ids", tuple(ids.shape), "give one sequence: shape [T] or [1, T]")
        ids = ids[0]
    check(ids.dim() == 1 and 1 <= ids.numel() <= MAX_T, "input_ids", tuple(ids.shape),
          f"input_ids must be one sequence of 1..{MAX_T} token ids")
    check(not ids.is_floating_point() and ids.dtype != torch.bool, "input_ids", ids.dtype, "ids must be integers")
    embed = getattr(model, "embed", None)
    vocab = embed.num_embeddings if isinstance(embed, nn.Embedding) else None
    check(int(ids.min()) >= 0 and (vocab is None or int(ids.max()) < vocab), "input_ids", ids.tolist()[:8],
          f"ids must lie in [0, vocab_size={vocab})")
    return ids.long()[None]                                              # [1, T]


def attention_maps(model: nn.Module, input_ids: Tensor | Sequence[int]) -> Tensor:
    """Attention probabilities of every layer and head for one sequence: FloatTensor [layers, heads, T, T].

    Runs one forward pass in eval mode without gradients, with ``keep_weights=True`` on every block's
    attention; the ``keep_weights`` / ``weights`` attributes and the train/eval modes are restored afterwards,
    even if the forward fails. Row i of each map sums to 1 over the keys query i may see: j <= i in a decoder
    (causal), all T tokens in a bidirectional encoder (BERT; one unpadded sequence, so no padding mask).
    """
    ids = _as_ids(model, input_ids)                                      # [1, T]
    attns = _attention_modules(model)
    saved = [(a.keep_weights, a.weights) for a in attns]
    modes = [(m, m.training) for m in model.modules()]
    try:
        for a in attns:
            a.keep_weights = True
        model.eval()
        with torch.no_grad():
            model(ids)
        maps = torch.stack([a.weights[0] for a in attns])               # [layers, heads, T, T]
    finally:
        for m, training in modes:
            m.training = training
        for a, (keep, weights) in zip(attns, saved):
            a.keep_weights, a.weights = keep, weights
    return maps.float()


def attention_rollout(maps: Tensor) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"): how much each input
    token contributes to each position after 1, 2, ..., L layers. ``maps`` [layers, heads, T, T] (from
    :func:`attention_maps`) -> [layers, T, T].

    Per layer: average the heads, add the identity for the residual connection and renormalise the rows,
    ``Â = (mean_h A + I) / row sums``; then multiply through the layers, ``R_l = Â_l R_{l-1}`` with ``R_0 = I``.
    Row i of ``R_l`` sums to 1: the share of each input token j in position i's vector after layer l. (A fully
    masked row, all zeros, becomes the identity row: that position keeps only its own residual.)
    """
    a = maps if isinstance(maps, Tensor) else torch.as_tensor(np.asarray(maps))
    check(a.dim() == 4 and a.shape[-1] == a.shape[-2] and a.shape[0] >= 1 and a.shape[1] >= 1, "maps",
          tuple(a.shape), "maps must be attention probabilities [layers, heads, T, T]")
    check(bool((a >= 0).all()) and bool(torch.isfinite(a).all()), "maps", "negative or non-finite entries",
          "maps must hold attention probabilities (>= 0, finite)")
    eye = torch.eye(a.shape[-1], dtype=torch.float64)
    mixed = a.double().mean(1) + eye                                     # [layers, T, T]: heads averaged + residual
    mixed = mixed / mixed.sum(-1, keepdim=True)
    rollout, out = eye, []
    for layer in mixed:
        rollout = layer @ rollout
        out.append(rollout)
    return torch.stack(out).float()


def _pitch(T: int) -> int:
    """Distance between tile origins in a grid: T cells plus a gap that grows with T."""
    return T + max(1, T // 16)


def _grid(maps: np.ndarray, ncols: int) -> tuple[np.ndarray, int, int]:
    """Tiles [n, T, T] -> one image with NaN gaps (drawn grey) between tiles; returns (image, rows, cols)."""
    n, T, _ = maps.shape
    rows, p = math.ceil(n / ncols), _pitch(T)
    img = np.full((rows * p - (p - T), ncols * p - (p - T)), np.nan)
    for k in range(n):
        r, c = divmod(k, ncols)
        img[r * p: r * p + T, c * p: c * p + T] = maps[k]
    return img, rows, ncols


def _tick_labels(tokens: Sequence[str]) -> tuple[list[int], list[str]]:
    step = math.ceil(len(tokens) / MAX_LABELS)
    idx = list(range(0, len(tokens), step))
    return idx, [tokens[i] if len(tokens[i]) <= 12 else tokens[i][:11] + "…" for i in idx]


def _token_labels(ax, axis: str, positions: Sequence[int], labels: Sequence[str]) -> None:
    """Token labels beside an axis as plain texts: half the cost of tick labels (no Tick objects)."""
    if axis == "y":
        tr = ax.get_yaxis_transform()                                    # x in axes fraction, y in data
        for p, label in zip(positions, labels):
            ax.text(-0.01, p, label, transform=tr, ha="right", va="center", fontsize=11)
    else:
        tr = ax.get_xaxis_transform()                                    # x in data, y in axes fraction
        for p, label in zip(positions, labels):
            ax.text(p, -0.03, label, transform=tr, ha="center", va="top", rotation=90, fontsize=11)


def _cmap() -> Colormap:
    return colormaps[CMAP].with_extremes(bad=GAP)


_CMAP = _cmap()
_STATE = "_llmviz_viewer"  # attribute of the figure that keeps each view's Axes between redraws


def _view_axes(fig: Figure, view: str, rects: list[tuple[float, float, float, float]]) -> list:
    """The Axes of ``view`` ("single": heatmap + bars, "grid": one), placed at ``rects`` and emptied of the
    previous redraw's contents. Each view's Axes are built once and put back when the view is chosen again
    (building Axes costs more than drawing them); a fresh figure, or one cleared by someone else, starts over."""

    def build(fig: Figure) -> list:
        axes = [fig.add_axes(r) for r in rects]
        if view == "grid":  # tiles separated by grey gaps: no frame, no tick marks
            for side in ("top", "right", "bottom", "left"):
                axes[0].spines[side].set_visible(False)
            axes[0].tick_params(length=0)
        else:               # the bars under the heatmap
            axes[1].spines["top"].set_visible(False)
            axes[1].spines["right"].set_visible(False)
        return axes

    axes = kept_view(fig, _STATE, view, build)
    for text in tuple(fig.texts):  # free figure texts, but not the suptitle (draw_attention sets it anew)
        if text is not fig._suptitle:
            text.remove()
    for ax, rect in zip(axes, rects):
        ax.set_position(rect)
        for artist in (*ax.lines, *ax.collections, *ax.images, *ax.patches, *ax.texts):
            artist.remove()
        ax.set_xlim(0, 1)  # autoscaling starts from scratch (the removed artists' data limits are forgotten)
        ax.set_ylim(0, 1)
        ax.relim()
        ax.set_autoscale_on(True)
    return axes


def _draw_single(fig: Figure, a: np.ndarray, tokens: Sequence[str], layer: int, head: int, kv_head: int | None,
                 query: int, causal: bool = True) -> None:
    """One head: labelled heatmap [T, T]; below it, one query's row as bars (or the mean attention each key
    receives); on the right, the keys that query reads most. Fixed positions (no layout engine)."""
    T = a.shape[0]
    idx, labels = _tick_labels(tokens)
    pad = 6 + 6.5 * max(len(t) for t in labels)                          # points: room for the rotated labels
    width, height = fig.get_size_inches()
    bottom = (pad + 26) / 72 + 0.05                                      # inches below the bars
    bars_h, gap, top = 1.0, 0.2, 0.4
    left = ((pad + 24) / 72 + 0.05) / width                              # figure fraction left of the axes
    y0 = bottom + bars_h + gap
    ax, ax_b = _view_axes(fig, "single", [(left, y0 / height, 0.68 - left, (height - top - y0) / height),  # heatmap
                                          (left, bottom / height, 0.68 - left, bars_h / height)])        # bars
    ax.imshow(a, cmap=_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
    ax.set_xticks([])
    ax.set_yticks([])
    _token_labels(ax, "y", idx, labels)
    ax.set_ylabel("query token i", fontsize=_FONT, labelpad=pad)
    kv = f" (KV head {kv_head})" if kv_head is not None else ""

    # the bars: one query's attention over the keys, or the mean attention each key receives
    if query >= 0:
        ax.add_patch(Rectangle((-0.5, query - 0.5), T, 1, fill=False, edgecolor=HIGHLIGHT, linewidth=2.5))
        row, colour, what = a[query], HIGHLIGHT, f"row {query}"
    else:
        row, colour, what = a.mean(0), "#0072B2", "mean over rows"
    ax_b.bar(np.arange(T), row, width=0.8, color=colour)
    ax_b.set_xlim(-0.5, T - 0.5)
    ax_b.set_ylim(0, max(float(row.max()) * 1.1, 0.05))
    ax_b.set_xticks([])
    _token_labels(ax_b, "x", idx, labels)
    ax_b.set_xlabel("key token j (attended to)", fontsize=_FONT, labelpad=pad)
    ax_b.set_ylabel(what, fontsize=11)
    ax_b.set_yticks([0, round(float(row.max()), 2)])
    ax_b.tick_params(axis="y", labelsize=11)

    # the words: what the selected query reads most
    if query >= 0:
        best = np.argsort(-a[query], kind="stable")[: min(5, query + 1 if causal else T)]
        lines = [f"layer {layer}, head {head}{kv}", "", f"query {query} '{tokens[query]}' reads:"]
        lines += [f"  {a[query, j]:.2f}  '{tokens[j]}' (j={j})" for j in best]
    else:
        lines = [f"layer {layer}, head {head}{kv}", "", "pick a query row to see", "which tokens it reads most"]
    fig.text(0.72, 1 - top / height, "\n".join(lines), fontsize=_FONT, va="top", linespacing=1.5)


def _draw_grid(fig: Figure, maps: np.ndarray, layer: int, head: int, query: int, causal: bool = True) -> None:
    """Several heads: one image of tiles (all heads of a layer, one head over layers, or all of them)."""
    L, H, T, _ = maps.shape
    (ax,) = _view_axes(fig, "grid", [(0.06, 0.05, 0.9, 0.84)])
    if layer < 0 and head < 0:                                           # layers x heads overview
        img, rows, cols = _grid(maps.reshape(L * H, T, T), H)
        ax.set_xticks([c * _pitch(T) + (T - 1) / 2 for c in range(H)], [f"h{h}" for h in range(H)], fontsize=11)
        ax.set_yticks([r * _pitch(T) + (T - 1) / 2 for r in range(L)], [f"layer {r}" for r in range(L)],
                      fontsize=11)
        title, names = f"all {L} layers x {H} heads", None
    else:
        tiles = maps[layer] if layer >= 0 else maps[:, head]              # [n, T, T]
        img, rows, cols = _grid(tiles, min(len(tiles), 4 if len(tiles) <= 8 else 6))
        ax.set_xticks([])
        ax.set_yticks([])
        if layer >= 0:
            title, names = f"all {H} heads of layer {layer}", [f"head {h}" for h in range(H)]
        else:
            title, names = f"head {head} in every layer", [f"layer {r}" for r in range(L)]
        for k, name in enumerate(names):
            r, c = divmod(k, cols)
            ax.text(c * _pitch(T) + (T - 1) / 2, r * _pitch(T) - 0.7, name, ha="center", va="bottom", fontsize=11)
    ax.imshow(img, cmap=_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    if query >= 0:
        ax.add_collection(_row_boxes(cols, T, query, L * H if names is None else len(names)))
    ax.set_title(title + (f", query row {query} highlighted" if query >= 0 else "")
                 + f"  (rows: query i, columns: key j{' <= i' if causal else ''})", fontsize=_FONT + 1,
                 pad=18 if names else 6, y=1.0)


def _row_boxes(cols: int, T: int, query: int, n: int) -> LineCollection:
    """Outline of row ``query`` in each of the first ``n`` tiles of a grid ``cols`` tiles wide."""
    segs = []
    for k in range(n):
        r, c = divmod(k, cols)
        x0, y0 = c * _pitch(T) - 0.5, r * _pitch(T) + query - 0.5
        segs.append([(x0, y0), (x0 + T, y0), (x0 + T, y0 + 1), (x0, y0 + 1), (x0, y0)])
    return LineCollection(segs, colors=HIGHLIGHT, linewidths=1.5)


def draw_attention(fig: Figure, maps: Tensor | np.ndarray, tokens: Sequence[str], layer: int = -1, head: int = -1,
                   query: int = -1, n_kv_heads: int | None = None) -> None:
    """Draw attention ``maps`` [layers, heads, T, T]. ``layer`` / ``head`` = -1 means "all"; ``query`` = -1: none.

    Both chosen: labelled heatmap + the query's bars + its top keys in words; otherwise a grid of small heatmaps.
    Maps with nothing above the diagonal are titled causal (a decoder's), others bidirectional (an encoder's).
    ``n_kv_heads`` (GQA) adds "KV head h // (heads / n_kv_heads)" to the one-head view. Pure: same input, same
    figure.
    """
    a = maps.numpy() if isinstance(maps, Tensor) else np.asarray(maps)
    L, H, T, _ = a.shape
    check(-1 <= layer < L, "layer", layer, f"layer must be -1 (all) or in [0, {L})")
    check(-1 <= head < H, "head", head, f"head must be -1 (all) or in [0, {H})")
    check(-1 <= query < T, "query", query, f"query must be -1 (none) or in [0, {T})")
    causal = bool((np.triu(a, 1) == 0).all())                            # decoder maps; an encoder's are full
    if layer >= 0 and head >= 0:
        kv_head = head // (H // n_kv_heads) if n_kv_heads and n_kv_heads < H else None   # GQA group
        _draw_single(fig, a[layer, head], tokens, layer, head, kv_head, query, causal)
    else:
        _draw_grid(fig, a, layer, head, query, causal)
    # after the Axes: a figure is cleared when its Axes are first built
    if causal:
        title = ("attention weights softmax(QKᵀ/√d + causal mask), white = 0 → dark blue = 1: "
                 "row i = how token i mixes tokens j ≤ i")
    else:
        title = ("attention weights softmax(QKᵀ/√d), bidirectional, white = 0 → dark blue = 1: "
                 "row i = how token i mixes all tokens j")
    fig.suptitle(title, fontsize=13, y=0.985)


def attention_viewer(model: nn.Module, input_ids: Tensor | Sequence[int],
                     tokens: Sequence[str] | None = None) -> FigureWidget:
    """Layers x heads attention heatmaps of ``model`` on one input (Vaswani et al. 2017, §3.2; bertviz's views).

    ``input_ids``: LongTensor [T] or [1, T] (or a list of ints), 1 <= T <= 128; ``tokens``: the T strings to
    label the axes with (default: the ids as text). The attention is computed once, here
    (:func:`attention_maps`); the controls (layer, head, query row; -1 = all / none) only change the view.

    >>> w = attention_viewer(build_model(get_config("tiny-llama")), [5, 17, 42, 8])
    >>> w.controls["head"].value = 1              # one large heatmap of layer 0, head 1
    """
    ids = _as_ids(model, input_ids)[0]                                   # [T]
    T = ids.numel()
    if tokens is None:
        tokens = [str(t) for t in ids.tolist()]
    check(not isinstance(tokens, str) and len(tokens) == T, "tokens", tokens if isinstance(tokens, str) else
          f"<{len(tokens)} tokens>", f"tokens must be a list of T={T} strings, one per input id")
    tokens = [str(t) for t in tokens]
    maps = attention_maps(model, ids).numpy()                            # [layers, heads, T, T]
    L, H = maps.shape[:2]
    n_kv = getattr(_attention_modules(model)[0], "num_kv_heads", H)
    st, lay = {"description_width": "initial"}, W.Layout(width="260px")
    controls = {
        "layer": W.Dropdown(options=[("all layers", -1)] + [(f"layer {l}", l) for l in range(L)], value=0,
                            description="layer", style=st, layout=lay),
        "head": W.Dropdown(options=[("all heads", -1)] + [(f"head {h}", h) for h in range(H)], value=-1,
                           description="head", style=st, layout=lay),
        "query": W.Dropdown(options=[("none", -1)] + [(f"{i}: {t}", i) for i, t in enumerate(tokens)], value=-1,
                            description="query row", style=st, layout=lay),
    }

    def draw(fig: Figure, layer: int, head: int, query: int) -> None:
        draw_attention(fig, maps, tokens, layer, head, query, n_kv_heads=n_kv)

    height = min(8.0, max(6.0, 4.5 + 0.11 * T))                         # room for T token labels at 11 pt
    return FigureWidget(draw, controls, name="attention_viewer", figsize=(11.5, height), dpi=DPI, layout=None, keep=True)

