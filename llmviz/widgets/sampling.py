"""Decoding explorer: what temperature, top-k and top-p (nucleus) sampling do to a model's next-token distribution.

The model runs once, in the constructor, on one prompt (:func:`next_token_logits`); the controls only re-filter
that distribution, in the order ``generate`` samples with it: divide the logits by the temperature, keep the
``top_k`` largest, keep the smallest set whose probability reaches ``top_p`` (Holtzman et al. 2020), renormalise.
The filtering is :func:`llmviz.generate.filter_logits`, the one implementation ``generate`` uses.

The figure shows, for the most likely tokens:

* grey bars: the model's distribution ``softmax(logits)`` (temperature 1);
* orange dashes: after the temperature, ``softmax(logits / T)``, before any token is removed;
* blue bars: what is sampled from, after top-k / top-p and renormalisation (removed tokens: no bar, grey label);

and, in words, how many tokens are kept, the probability mass they held before renormalising, and the entropy
before and after (with ``e^H``, the number of equally likely tokens with the same uncertainty).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import ipywidgets as W
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from .._checks import check, check_int
from ..generate import filter_logits
from .figure import FigureWidget

__all__ = ["TEMPERATURES", "TOP_KS", "TOP_PS", "next_token_logits", "token_label", "sampling_stats",
           "draw_sampling", "sampling_explorer"]

TEMPERATURES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5, 2.0, 3.0)
TOP_KS = (0, 1, 2, 3, 5, 10, 20, 50, 100)       # 0 = off; only k < vocabulary size are offered
TOP_PS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)   # 1.0 = off
DEFAULTS: dict[str, Any] = dict(temperature=1.0, top_k=0, top_p=1.0)
N_SHOW = 20            # bars drawn: the most likely tokens under the model
MAX_SHOW = 40          # more bars than this and the token labels no longer fit
MAX_PROMPT = 4096

# Okabe-Ito colours (colour-blind safe)
GREY, BLUE, ORANGE, DARK = "#c8c8c8", "#0072B2", "#E69F00", "#222222"
DROPPED = "#9a9a9a"
_FONT = 12
SIZE = (11.5, 4.8)     # inches; 920 x 384 px at DPI
DPI = 80
_STATE = "_llmviz_sampling"   # attribute of the figure that keeps its artists between redraws


# ---------------------------------------------------------------- the distribution (computed once)

def _as_prompt(model: nn.Module, prompt_ids: Tensor | Sequence[int]) -> Tensor:
    """prompt ids [T], [1, T] or a list of ints -> LongTensor [1, T], checked against the model's limits."""
    ids = prompt_ids if isinstance(prompt_ids, Tensor) else torch.as_tensor(list(prompt_ids))
    if ids.dim() == 2:
        check(ids.shape[0] == 1, "prompt_ids", tuple(ids.shape), "give one prompt: shape [T] or [1, T]")
        ids = ids[0]
    cfg = getattr(model, "cfg", None)
    limit = getattr(cfg, "max_position_embeddings", MAX_PROMPT) if getattr(cfg, "position", "") == "learned" \
        else MAX_PROMPT
    check(ids.dim() == 1 and 1 <= ids.numel() <= limit, "prompt_ids", tuple(ids.shape),
          f"prompt_ids must be one sequence of 1..{limit} token ids")
    check(not ids.is_floating_point() and ids.dtype != torch.bool, "prompt_ids", ids.dtype, "ids must be integers")
    vocab = getattr(cfg, "vocab_size", None)
    check(int(ids.min()) >= 0 and (vocab is None or int(ids.max()) < vocab), "prompt_ids", ids.tolist()[:8],
          f"ids must lie in [0, vocab_size={vocab})")
    return ids.long()[None]


@torch.no_grad()
def next_token_logits(model: nn.Module, prompt_ids: Tensor | Sequence[int]) -> Tensor:
    """The model's logits for the token after ``prompt_ids``: FloatTensor [vocab] (one forward pass, eval mode,
    no gradients; the model's train/eval mode is restored)."""
    ids = _as_prompt(model, prompt_ids)
    was_training = model.training
    model.eval()
    try:
        logits = model(ids)
    finally:
        model.train(was_training)
    check(isinstance(logits, Tensor) and logits.dim() == 3 and logits.shape[:2] == ids.shape, "model",
          type(model).__name__, "model(ids [1, T]) must return logits [1, T, vocab]")
    return logits[0, -1].float()


def token_label(decode: Callable[[list[int]], str], token_id: int, width: int = 8) -> str:
    """A short, visible label for one token: spaces as ␣, control characters escaped (\\n, \\x04), undecodable
    pieces (a lone UTF-8 continuation byte) as <id>."""
    text = decode([int(token_id)])
    if not text or "\ufffd" in text:
        return f"<{int(token_id)}>"
    text = _visible(text.replace(" ", "␣"))
    return text if len(text) <= width else text[: width - 1] + "…"


def _visible(text: str) -> str:
    """Control characters escaped (\\n, \\x04): the figure's fonts have no glyphs for them."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _entropy(p: Tensor) -> float:
    p = p.double()
    nz = p > 0
    return float(-(p[nz] * p[nz].log()).sum())


def _check_values(temperature: float, top_k: int, top_p: float) -> None:
    check(isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature > 0,
          "temperature", temperature, "temperature must be a number > 0 (temperature -> 0 is greedy decoding)")
    check_int(top_k, "top_k", minimum=0)
    check(isinstance(top_p, (int, float)) and not isinstance(top_p, bool) and 0 < top_p <= 1, "top_p", top_p,
          "top_p must be in (0, 1] (1 = off)")


def sampling_stats(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> dict[str, Any]:
    """Everything the figure shows, for logits [vocab] and the control values (``top_k=0`` and ``top_p=1`` = off).

    ``p_model`` = softmax(logits); ``p_temp`` = softmax(logits / T); ``p_final`` = softmax(filter_logits(logits / T,
    top_k, top_p)), what ``generate`` samples from; ``kept`` (bool [vocab]); ``n_kept``; ``mass_kept`` = the share
    of ``p_temp`` the kept tokens hold; the entropies ``h_model``, ``h_temp``, ``h_final`` in nats; ``order``: token
    ids by decreasing model probability.
    """
    check(isinstance(logits, Tensor) and logits.dim() == 1 and logits.numel() >= 2, "logits",
          tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__,
          "logits must be a 1-D tensor [vocab] with at least 2 entries")
    _check_values(temperature, top_k, top_p)
    logits = logits.float()
    scaled = logits / temperature
    filtered = filter_logits(scaled[None], top_k or None, top_p if top_p < 1 else None)[0]   # [vocab]
    kept = torch.isfinite(filtered)
    p_model, p_temp, p_final = (torch.softmax(x, dim=-1) for x in (logits, scaled, filtered))
    return dict(p_model=p_model, p_temp=p_temp, p_final=p_final, kept=kept, n_kept=int(kept.sum()),
                mass_kept=float(p_temp[kept].sum()), h_model=_entropy(p_model), h_temp=_entropy(p_temp),
                h_final=_entropy(p_final), order=torch.argsort(p_model, descending=True, stable=True))


# ---------------------------------------------------------------- drawing (a pure function of the values)

def _artists(fig: Figure, n: int) -> SimpleNamespace:
    """The Axes, bars, markers and texts for ``n`` tokens, made once and kept on the figure (a fresh or cleared
    figure, or another ``n``, gets new ones): a redraw only sets heights, colours and strings."""
    a = fig.__dict__.get(_STATE)
    if a is not None and fig.axes == [a.ax] and a.n == n:
        return a
    fig.clear()
    fig.set_size_inches(SIZE)
    a = SimpleNamespace(n=n, ax=fig.add_axes((0.07, 0.2, 0.57, 0.66)))
    ax = a.ax
    x = np.arange(n)
    a.model_bars = ax.bar(x, np.zeros(n), width=0.85, color=GREY, label="model: softmax(logits)")
    a.final_bars = ax.bar(x, np.zeros(n), width=0.5, color=BLUE, label="sampled from, after top-k / top-p")
    (a.temp,) = ax.plot(x, np.zeros(n), ls="none", marker="_", ms=15, mew=3, color=ORANGE,
                        label="after temperature: softmax(logits / T)")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xticks([])
    ax.tick_params(labelsize=11)
    ax.set_ylabel("probability of the next token", fontsize=_FONT)
    tr = ax.get_xaxis_transform()                                   # x in data, y in axes fraction
    a.labels = [ax.text(i, -0.03, "", transform=tr, ha="center", va="top", rotation=90, fontsize=11) for i in x]
    ax.legend(fontsize=10.5, loc="upper right", frameon=False)
    a.title = fig.suptitle("", fontsize=13, y=0.975)
    a.numbers = fig.text(0.665, 0.84, "", fontsize=_FONT, va="top", ha="left", linespacing=1.55)
    setattr(fig, _STATE, a)
    return a


def draw_sampling(fig: Figure, logits: Tensor, tokens: Sequence[str], temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0, n_show: int = N_SHOW, context: str = "") -> None:
    """Draw the ``n_show`` most likely tokens of ``logits`` [vocab] before and after temperature, top-k and top-p
    (see :func:`sampling_stats`). ``tokens``: one label per vocabulary entry; ``context``: the prompt's end, for
    the title. Pure: the same values give the same figure."""
    s = sampling_stats(logits, temperature, top_k, top_p)
    V = logits.numel()
    check(len(tokens) == V, "tokens", f"<{len(tokens)} labels>", f"tokens must hold one label per logit ({V})")
    check_int(n_show, "n_show", minimum=2, maximum=min(V, MAX_SHOW))
    a = _artists(fig, n_show)
    top = s["order"][:n_show]
    pm, pt, pf, kept = (s[k][top].numpy() for k in ("p_model", "p_temp", "p_final", "kept"))
    for bar, h in zip(a.model_bars, pm):
        bar.set_height(float(h))
    for bar, h, k in zip(a.final_bars, pf, kept):
        bar.set_height(float(h) if k else 0.0)
    a.temp.set_ydata(pt)
    for label, t, k in zip(a.labels, top.tolist(), kept):
        label.set_text(tokens[t])
        label.set_color(DARK if k else DROPPED)
    a.ax.set_ylim(0, max(0.05, 1.12 * float(max(pm.max(), pt.max(), pf.max()))))

    shown = _visible(context)
    shown = "…" + shown[-28:] if len(shown) > 28 else shown
    a.title.set_text(f"Next token after “{shown}”: temperature T, then top-k, then top-p, renormalised"
                     if context else "Next-token distribution: temperature T, then top-k, then top-p, renormalised")
    best = int(s["order"][0])
    rest = 1.0 - float(s["p_model"][top].sum())
    k_text = "off" if top_k == 0 else f"{top_k}"
    p_text = "off" if top_p >= 1 else f"{top_p:g}"
    lines = [
        f"T = {temperature:g} · top-k = {k_text} · top-p = {p_text}",
        "",
        f"kept: {s['n_kept']:,} of {V:,} tokens, holding",
        f"  {100 * s['mass_kept']:.1f}% of softmax(logits / T)",
        "entropy (e^H = equally likely tokens):",
        f"  model      {s['h_model']:.2f} nats, e^H = {math.exp(s['h_model']):.1f}",
        f"  sampled   {s['h_final']:.2f} nats, e^H = {math.exp(s['h_final']):.1f}",
        "",
        f"most likely: '{tokens[best]}', p = {float(s['p_model'][best]):.2f}",
        f"not drawn: {V - n_show:,} tokens, {100 * rest:.1f}%",
        "grey label: removed by top-k / top-p",
    ]
    a.numbers.set_text("\n".join(lines))


# ---------------------------------------------------------------- the widget

def _decoder(tokenizer_or_decode: Any) -> Callable[[list[int]], str]:
    decode = getattr(tokenizer_or_decode, "decode", tokenizer_or_decode)
    check(callable(decode), "tokenizer_or_decode", type(tokenizer_or_decode).__name__,
          "give a tokenizer with .decode(ids) or a function ids -> str")
    return decode


def _slider(options: list, value: Any, description: str) -> W.SelectionSlider:
    return W.SelectionSlider(options=options, value=value, description=description, continuous_update=False,
                             style={"description_width": "initial"}, layout=W.Layout(width="330px"))


def sampling_explorer(model: nn.Module, tokenizer_or_decode: Any, prompt_ids: Tensor | Sequence[int],
                      n_show: int = N_SHOW, **initial: Any) -> FigureWidget:
    """Move temperature, top-k and top-p over ``model``'s next-token distribution after ``prompt_ids``.

    ``tokenizer_or_decode``: a tokenizer with ``.decode(list_of_ids) -> str`` (``ByteTokenizer``, a
    ``tokenizers.Tokenizer``) or such a function, for the token labels and the title; ``prompt_ids``: LongTensor
    [T] or [1, T] (or a list of ints). The logits are computed once, here; the widget keeps them as ``.logits``
    [vocab] and the labels as ``.tokens``, so ``sampling_stats(w.logits, **w.values)`` gives the numbers shown.
    Keyword initial values: ``temperature`` (one of ``TEMPERATURES``), ``top_k`` (one of ``TOP_KS`` below the
    vocabulary size; 0 = off), ``top_p`` (one of ``TOP_PS``; 1.0 = off).

    >>> w = sampling_explorer(model, ByteTokenizer(), tok.encode("The return value of "), top_p=0.9)
    >>> w.controls["temperature"].value = 0.5          # redraws
    """
    decode = _decoder(tokenizer_or_decode)
    unknown = sorted(set(initial) - set(DEFAULTS))
    check(not unknown, unknown[0] if unknown else "", initial.get(unknown[0]) if unknown else None,
          f"sampling_explorer takes only {sorted(DEFAULTS)} as initial values")
    ids = _as_prompt(model, prompt_ids)
    logits = next_token_logits(model, ids)                            # [vocab], computed once
    V = logits.numel()
    check_int(n_show, "n_show", minimum=2, maximum=min(V, MAX_SHOW))
    top_ks = [k for k in TOP_KS if k < V]
    offered = {"temperature": list(TEMPERATURES), "top_k": top_ks, "top_p": list(TOP_PS)}
    v = {**DEFAULTS, **initial}
    for name, value in v.items():
        ok = value in offered[name] and not isinstance(value, bool)
        check(ok, name, value, f"{name} must be one of the offered values {offered[name]}")
    tokens = [token_label(decode, i) for i in range(V)]
    context = decode(ids[0].tolist())
    controls = {
        "temperature": _slider([(f"{t:g}", t) for t in TEMPERATURES], float(v["temperature"]), "temperature T"),
        "top_k": _slider([("off" if k == 0 else str(k), k) for k in top_ks], int(v["top_k"]), "top-k"),
        "top_p": _slider([("off" if p == 1 else f"{p:g}", p) for p in TOP_PS], float(v["top_p"]), "top-p"),
    }

    def draw(fig: Figure, temperature: float, top_k: int, top_p: float) -> None:
        draw_sampling(fig, logits, tokens, temperature, top_k, top_p, n_show=n_show, context=context)

    w = FigureWidget(draw, controls, name="sampling_explorer", figsize=SIZE, dpi=DPI, columns=3, layout=None,
                     keep=True)
    w.logits, w.tokens = logits, tokens
    return w
