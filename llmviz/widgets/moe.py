"""MoE router explorer: watch a real router collapse onto a few experts, and three ways to balance it.

A small :class:`~llmviz.layers.moe.TopKRouter` (or, for DeepSeek-V3's method, a
:class:`~llmviz.layers.moe.DeepSeekV3Router`) is trained for 10-40 SGD steps on synthetic tokens from four
"domains"; the figure shows the expert load over the steps (heatmap, MaxVio before → after), the final load per
domain, and the final load against a Switch-style expert capacity (dropped assignments), with the HF-normalised
balance loss (= k at perfect balance) and the per-micro-batch MaxVio as numbers.

Latency (design.md §5: a redraw should take under 0.1 s): the offered ranges keep every training run under
about 50 ms of CPU (at most 40 steps of at most 512 tokens, on one thread), training is cached on the controls
it depends on (display-only controls such as the capacity factor and the shared experts skip it), and the
figure keeps its Axes and artists between redraws, updating their data and texts.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace

import ipywidgets as W
import numpy as np
import torch
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .._checks import check, check_int
from ..layers.moe import DeepSeekV3Router, TopKRouter, aux_free_bias_update, capacity_drops, max_violation
from .figure import FigureWidget, one_thread

__all__ = ["RouterHistory", "train_router", "summary", "draw_moe", "moe_router_explorer", "METHODS"]

# method value -> label shown in the dropdown
METHODS = {
    "none": "none",
    "aux": "Switch / HF aux loss (micro-batch)",
    "global": "Qwen3 global-batch aux loss",
    "aux_free": "DeepSeek-V3 aux-loss-free bias",
}
EXPERTS = (4, 8, 16, 32, 64)
TOP_K = (1, 2, 3, 4, 6, 8)
TOKENS = (64, 128, 256, 512)
COEFS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
GAMMAS = (0.001, 0.003, 0.01, 0.03, 0.1)
STEPS = (10, 20, 30, 40)   # with LR below; the largest offered run trains in ~50 ms of CPU
DROPLESS = float("inf")  # capacity factor "no limit": every assignment is processed (Qwen3, DeepSeek-V3 drop none)
CAPACITY_FACTORS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, DROPLESS)
MICRO_BATCHES = 4      # the global batch is 4 micro-batches, each from one "domain" (cluster of tokens)
HIDDEN = 16
LR = 1.25         # SGD learning rate (large: few steps, each clipped to a gradient norm of CLIP)
TASK_WEIGHT = 0.1
CLIP = 1.0
COMMON_NORM, CENTRE_NORM, NOISE, INIT_STD = 2.0, 2.5, 0.5, 0.3

# Okabe-Ito colour-blind-safe palette
BLUE, ORANGE, GREEN, VERMILION, GREY, BLACK = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#999999", "#000000"


@dataclass(frozen=True)
class RouterHistory:
    """What :func:`train_router` records. Row t of the per-step arrays is measured on step t's batch with the
    router *before* update t; the last row (t = steps) is the trained router on a fresh batch."""

    num_experts: int
    top_k: int
    tokens: int
    method: str
    load: np.ndarray              # [steps+1, E] assignments per expert in the global batch
    micro_load: np.ndarray        # [steps+1, M, E] the same per micro-batch (= per domain)
    aux_loss: np.ndarray          # [steps+1] HF-normalised balance loss E·Σ f·P on the global batch (= k balanced)
    task_loss: np.ndarray         # [steps+1] -log(gate mass of the chosen experts)
    max_vio: np.ndarray           # [steps+1] MaxVio of the global batch
    micro_max_vio: np.ndarray     # [steps+1] MaxVio averaged over micro-batches
    final_indices: np.ndarray     # [tokens, k] expert ids chosen on the last (evaluation) batch, token order
    bias: np.ndarray              # [E] final DeepSeek correction bias (zeros for the other methods)


def _data(gen: torch.Generator, rows: int, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens for every step, [rows, N, H], and the shared direction ``common`` [H].

    Each global batch is MICRO_BATCHES equal micro-batches; micro-batch m is drawn around centre m (one
    "domain" each, like a sequence of code or of maths). Every token also carries a common component (real
    hidden states share a large mean), which is what a skewed router keys on."""
    common = torch.randn(HIDDEN, generator=gen)
    common = COMMON_NORM * common / common.norm()
    centres = torch.randn(MICRO_BATCHES, HIDDEN, generator=gen)
    centres = CENTRE_NORM * centres / centres.norm(dim=1, keepdim=True)
    noise = torch.randn(rows, MICRO_BATCHES, tokens // MICRO_BATCHES, HIDDEN, generator=gen) * NOISE
    x = common + centres[None, :, None, :] + noise                                 # [rows, M, N/M, H]
    return x.reshape(rows, tokens, HIDDEN), common


def _initial_weight(gen: torch.Generator, experts: int, common: torch.Tensor, skew: float) -> torch.Tensor:
    """[E, H]: random weights orthogonal to ``common`` plus ``skew`` × a profile that falls linearly from
    +1 (expert 0) to -1 (expert E-1) along ``common``: the router's logit for expert e is shifted by about
    ``skew · profile_e`` for every token, so larger skew = more tokens on the low-numbered experts."""
    w = torch.randn(experts, HIDDEN, generator=gen) * INIT_STD
    unit = common / common.norm()
    w = w - (w @ unit)[:, None] * unit[None, :]
    profile = torch.linspace(1.0, -1.0, experts)
    return w + skew * profile[:, None] * common[None, :] / common.norm() ** 2


def _micro_batch_aux(probs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """HF/Switch loss on every micro-batch, averaged (as frameworks do): ``mean_m E Σ_e f_{m,e} P_{m,e}``.

    ``probs [N, E]`` (with grad), ``counts [M, E]`` top-k assignments per micro-batch. Vectorised equivalent of
    ``mean(load_balancing_loss((c,), E, k) for c in logits.chunk(M))`` (tests check it)."""
    m, e = counts.shape
    p_micro = probs.view(m, -1, e).mean(1)                                         # [M, E]
    return e * (counts / (probs.shape[0] // m) * p_micro).sum(-1).mean()


def _global_batch_aux(probs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Qwen3 global-batch loss: f from all micro-batches' counts (Σ f = k), P per micro-batch, averaged.

    Vectorised equivalent of ``global_batch_balancing_loss(list(logits.chunk(M)), E, k)`` (tests check it)."""
    m, e = counts.shape
    f_global = counts.sum(0) / probs.shape[0]                                      # [E], Σ f = k
    return e * (f_global * probs.view(m, -1, e).mean(1)).sum(-1).mean()


@lru_cache(maxsize=256)
def _train_cached(num_experts: int, top_k: int, tokens: int, skew: float, method: str, strength: float,
                  steps: int, seed: int) -> RouterHistory:
    with one_thread():
        return _train(num_experts, top_k, tokens, skew, method, strength, steps, seed)


def _train(num_experts: int, top_k: int, tokens: int, skew: float, method: str, strength: float, steps: int,
           seed: int) -> RouterHistory:
    gen = torch.Generator().manual_seed(seed)
    e, k, m, rows = num_experts, top_k, MICRO_BATCHES, steps + 1
    xs, common = _data(gen, rows, tokens)
    sigmoid = method == "aux_free"
    router = DeepSeekV3Router(HIDDEN, e, k, norm_topk_prob=False) if sigmoid else TopKRouter(HIDDEN, e, k)
    weight = router.weight
    with torch.no_grad():
        weight.copy_(_initial_weight(gen, e, common, skew))
    micro_id = torch.arange(tokens).div(tokens // m, rounding_mode="floor")[:, None] * e   # [N, 1] offsets
    counts_hist, aux_hist, task_hist = [], [], []
    indices = None
    for t in range(rows):
        logits, weights, indices = router(xs[t])                                  # [N, E], [N, k], [N, k]
        if sigmoid:
            task_loss = -torch.log(weights.clamp_min(1e-9)).mean()                # gate s of the chosen experts
            scores = logits.sigmoid()
            probs = scores / scores.sum(-1, keepdim=True)                         # DeepSeek-V3 eq. 19: s'
        else:
            task_loss = -torch.log(weights.sum(-1)).mean()                        # top-k probability mass
            probs = logits.softmax(-1)                                            # [N, E]
        with torch.no_grad():   # c per micro-batch [M, E]; f = c / rows (HF normalisation, Σ f = k)
            counts = torch.bincount((indices + micro_id).reshape(-1), minlength=m * e).view(m, e).float()
            # whole-batch diagnostic; = load_balancing_loss((logits,), e, k) for the softmax router
            aux_hist.append(_global_batch_aux(probs, counts.sum(0, keepdim=True)))
        counts_hist.append(counts)
        task_hist.append(task_loss.detach())
        if t == steps:
            break                                                                 # last row: evaluation only
        if method == "aux":
            loss = TASK_WEIGHT * task_loss + strength * _micro_batch_aux(probs, counts)
        elif method == "global":
            loss = TASK_WEIGHT * task_loss + strength * _global_batch_aux(probs, counts)
        else:
            loss = TASK_WEIGHT * task_loss
        (grad,) = torch.autograd.grad(loss, weight)
        with torch.no_grad():   # SGD with the gradient norm clipped at CLIP (= clip_grad_norm_ + optim.SGD)
            weight.sub_(grad * (LR * torch.clamp(CLIP / (grad.norm() + 1e-6), max=1.0)))
            if sigmoid:
                router.e_score_correction_bias.copy_(
                    aux_free_bias_update(router.e_score_correction_bias, counts.sum(0), strength))
    micro_load = torch.stack(counts_hist)                                         # [rows, M, E]
    load = micro_load.sum(1)                                                      # [rows, E]
    arrays = dict(load=load.numpy(), micro_load=micro_load.numpy(), aux_loss=torch.stack(aux_hist).numpy(),
                  task_loss=torch.stack(task_hist).numpy(), max_vio=max_violation(load).numpy(),
                  micro_max_vio=max_violation(micro_load).mean(-1).numpy(), final_indices=indices.numpy().copy(),
                  bias=router.e_score_correction_bias.detach().numpy().copy() if sigmoid else np.zeros(e))
    for a in arrays.values():
        a.setflags(write=False)
    return RouterHistory(num_experts=e, top_k=k, tokens=tokens, method=method, **arrays)


def train_router(num_experts: int = 8, top_k: int = 2, tokens: int = 256, skew: float = 1.5, method: str = "aux",
                 coef: float = 0.1, gamma: float = 0.03, steps: int = 20, seed: int = 0) -> RouterHistory:
    """Train a small real router on clustered synthetic tokens and record its load balance at every step.

    Data: hidden size 16; every step draws a fresh global batch of ``tokens`` tokens made of 4 micro-batches,
    each from one "domain" (tokens around one cluster centre, plus a component common to all tokens). The
    initial router favours the low-numbered experts, more so as ``skew`` grows.

    Objective (SGD, lr 1.25, gradient norm clipped at 1: few large steps keep a run fast): ``0.1 ×`` a *task
    loss* that rewards the router for being confident in the experts it picks, ``-log Σ_{chosen} p`` (sigmoid
    router, built with ``norm_topk_prob=False`` so the gates are the raw scores: ``-mean log s_chosen``). There
    are no experts here, so this loss stands in for the real signal's rich-get-richer effect (chosen experts
    get trained, so routing to them pays off more): with ``method="none"`` an initial skew persists and even
    an unskewed router collapses. A balance loss alone would have no such pull to fight, and nothing to trade
    off against. Balancing adds:

    * ``"aux"``: ``coef`` × the HF/Switch loss ``E Σ f P`` computed per micro-batch and averaged;
    * ``"global"``: ``coef`` × the global-batch loss of Qwen3 (f over the whole batch, P per micro-batch),
      which lets domains specialise as long as the whole batch is balanced;
    * ``"aux_free"``: a DeepSeek-V3 sigmoid router trained on the task loss only, whose selection bias moves
      by ``gamma`` per step towards balance (no gradient, no extra loss).

    α is relative to this toy task loss (its weight 0.1), not to an LM loss: HF's default 0.001 is too weak
    here, Switch's 0.01 starts to help, 0.1 balances. Likewise γ is large (0.03 against DeepSeek-V3's 0.001)
    because there are only a few dozen steps. Training runs on one torch thread, ~1 ms a step at most for the
    explorer's ranges. Results are cached on the training-relevant arguments (``coef`` only matters for
    aux/global, ``gamma`` only for aux_free), so calling again is free.
    """
    check(method in METHODS, "method", method, f"must be one of {tuple(METHODS)}")
    check_int(num_experts, "num_experts", minimum=2, maximum=256)
    check_int(top_k, "top_k", minimum=1)
    check(top_k < num_experts, "top_k", top_k, f"must be < num_experts={num_experts} (k = E routes every token "
                                               "to every expert: nothing to balance)")
    check_int(tokens, "tokens", minimum=MICRO_BATCHES, maximum=8192)
    check(tokens % MICRO_BATCHES == 0, "tokens", tokens, f"must split into {MICRO_BATCHES} equal micro-batches")
    check(isinstance(skew, (int, float)) and not isinstance(skew, bool) and 0 <= skew <= 10, "skew", skew,
          "must be a number in [0, 10]")
    check(isinstance(coef, (int, float)) and not isinstance(coef, bool) and 0 <= coef <= 100, "coef", coef,
          "the auxiliary-loss coefficient must be a number in [0, 100]")
    check(isinstance(gamma, (int, float)) and not isinstance(gamma, bool) and 0 <= gamma <= 1, "gamma", gamma,
          "the bias update speed must be a number in [0, 1]")
    check_int(steps, "steps", minimum=0, maximum=1000)
    check_int(seed, "seed", minimum=0)
    strength = float(coef) if method in ("aux", "global") else float(gamma) if method == "aux_free" else 0.0
    return _train_cached(num_experts, top_k, tokens, float(skew), method, strength, steps, seed)


_TITLES = {
    "none": "No balancing: routing collapses onto a few experts",
    "aux": "Switch / HF aux loss: every micro-batch spreads out",
    "global": "Qwen3 global-batch loss: the batch balances, domains specialise",
    "aux_free": "DeepSeek-V3 bias: balanced without an auxiliary loss",
}
_NOTES = {
    "none": "Training only rewards confident routing; nothing pushes back.",
    "aux": "Loss = task + α·E·Σ f·P with f, P per micro-batch.",
    "global": "Loss = task + α·E·Σ f·P, f over the global batch, P per micro-batch.",
    "aux_free": "Each step b_i += γ·sign(mean − load_i); b only selects, gates use s.",
}


def summary(h: RouterHistory, capacity_factor: float, shared_experts: int) -> dict:
    """The numbers the figure prints, computed from the history (tests compare the figure with these).

    ``capacity_factor=DROPLESS`` (inf) is no capacity limit, as in Qwen3 and DeepSeek-V3: capacity ``None``,
    nothing dropped."""
    if capacity_factor == DROPLESS:
        drops = SimpleNamespace(capacity=None, total=0)
    else:
        drops = capacity_drops(torch.tensor(h.final_indices), h.num_experts, capacity_factor)
    total = h.num_experts + shared_experts
    active = h.top_k + shared_experts
    return {"max_vio_before": float(h.max_vio[0]), "max_vio_after": float(h.max_vio[-1]),
            "micro_max_vio_after": float(h.micro_max_vio[-1]),
            "capacity": drops.capacity, "dropped": drops.total, "assignments": h.tokens * h.top_k,
            "aux_before": float(h.aux_loss[0]), "aux_after": float(h.aux_loss[-1]),
            "active_experts": active, "total_experts": total, "active_fraction": active / total}


SIZE = (12.0, 5.6)   # inches; 864 x 403 px at DPI
DPI = 72
_STATE = "_llmviz_moe"  # attribute of the figure that keeps its artists between redraws
_FS = 12  # points (titles too; the figure title 15): readable on a projector at 72 dpi


def _build(fig: Figure) -> SimpleNamespace:
    """Axes and artists of the figure, made once; :func:`draw_moe` then only changes their data and texts.

    Three Axes share the expert axis (rows): the load over the steps (heatmap), the final load per domain
    (heatmap) and the final load against the capacity (horizontal histogram, the dropped part hatched)."""
    fig.clear()
    fig.set_size_inches(SIZE)
    a = SimpleNamespace()
    a.title = fig.text(0.5, 0.975, "", ha="center", va="top", fontsize=15, fontweight="bold")
    a.note = fig.text(0.5, 0.9, "", ha="center", va="top", fontsize=_FS)
    a.footer = fig.text(0.5, 0.02, "", ha="center", va="bottom", fontsize=_FS, linespacing=1.4)
    # axis labels as figure texts: fixed places, no label placement from the tick labels at every draw
    fig.text(0.2425, 0.165, "training step", ha="center", va="top", fontsize=_FS)
    fig.text(0.045, 0.48, "expert", ha="right", va="center", rotation=90, fontsize=_FS)
    fig.text(0.7925, 0.165, "token assignments", ha="center", va="top", fontsize=_FS)
    fig.text(0.51, 0.165, "domain", ha="center", va="top", fontsize=_FS)
    a.heat = fig.add_axes((0.055, 0.215, 0.375, 0.53))
    a.dom = fig.add_axes((0.47, 0.215, 0.08, 0.53))
    a.bar = fig.add_axes((0.61, 0.215, 0.365, 0.53))
    norm = TwoSlopeNorm(vcenter=1.0, vmin=0.0, vmax=2.0)
    img = dict(aspect="auto", origin="lower", cmap="PuOr_r", interpolation="nearest", norm=norm)
    a.heat_img = a.heat.imshow(np.ones((2, 2)), **img)
    a.dom_img = a.dom.imshow(np.ones((2, 2)), **img)
    a.kept = a.bar.stairs([0, 0], [0, 1, 2], orientation="horizontal", fill=True, color=BLUE)  # processed
    a.dropped = a.bar.stairs([0, 0], [0, 1, 2], baseline=[0, 0], orientation="horizontal", fill=True,
                             facecolor=VERMILION, edgecolor="white", hatch="//", lw=0)  # over capacity
    a.balanced = a.bar.axvline(1, color=BLACK, ls="--", lw=1.5)
    a.capacity = a.bar.axvline(1, color=ORANGE, lw=2.5)
    for ax in (a.heat, a.dom, a.bar):
        ax.tick_params(labelsize=11)
        ax.minorticks_off()
    a.dom.tick_params(labelleft=False, bottom=False)
    a.dom.set_xticks(range(1, MICRO_BATCHES + 1))  # one column per domain (= micro-batch)
    a.bar.tick_params(labelleft=False)
    a.bar.xaxis.set_major_locator(MaxNLocator(3, integer=True))
    a.dom.set_title("Final load\nper domain", fontsize=_FS, y=1.0)
    a.axes = list(fig.axes)
    return a


def _artists(fig: Figure) -> SimpleNamespace:
    """The figure's artists from the last redraw, or new ones (a fresh figure, or one cleared since)."""
    a = fig.__dict__.get(_STATE)
    if a is None or fig.axes != a.axes:
        a = _build(fig)
        setattr(fig, _STATE, a)
    return a


def draw_moe(fig: Figure, experts: int = 8, top_k: int = 2, tokens: int = 256, skew: float = 1.5,
             shared_experts: int = 0, capacity_factor: float = DROPLESS, method: str = "none", coef: float = 0.1,
             gamma: float = 0.03, steps: int = 20, seed: int = 0) -> None:
    """Draw the explorer's figure on ``fig`` for these control values (trains via the cache, then draws).

    Three panels share the expert axis: the load of every expert over the steps (heatmap; MaxVio before →
    after), the final load per domain (micro-batch), and the final load against the expert capacity (the
    dropped part hatched; ``capacity_factor=DROPLESS``, the default, is no limit, as in Qwen3 and DeepSeek-V3,
    which drop no tokens). The HF-normalised balance loss (= k at perfect balance) and the MaxVio within a
    micro-batch are numbers below. Built for speed (each text costs ~0.1 ms a glyph to render): no layout
    engine, few ticks, and the Axes and artists stay on the figure between redraws (only their data and texts
    change), so the same figure redraws in a fraction of the time of a fresh one, with the same picture.
    """
    check_int(shared_experts, "shared_experts", minimum=0, maximum=16)
    h = train_router(experts, top_k, tokens, skew, method, coef, gamma, steps, seed)
    s = summary(h, capacity_factor, shared_experts)
    e, k = experts, top_k
    a = _artists(fig)
    extra = {"aux": f"  (α = {coef:g})", "global": f"  (α = {coef:g})", "aux_free": f"  (γ = {gamma:g})"}
    a.title.set_text(_TITLES[method] + extra.get(method, ""))
    a.note.set_text(_NOTES[method])
    optimised = "" if method in ("aux", "global") else " (measured, not optimised)"
    a.footer.set_text(f"Balance loss E·Σ f·P{optimised}: {s['aux_before']:.2f} → {s['aux_after']:.2f} "
                      f"(k = {k} = perfect balance).  MaxVio within a micro-batch {s['micro_max_vio_after']:.2f}.\n"
                      f"Each token uses {k} routed + {shared_experts} shared = {s['active_experts']} of "
                      f"{s['total_experts']} experts ({100 * s['active_fraction']:.0f}% of expert parameters).")
    balanced = h.tokens * k / e
    rel = h.load / balanced                                             # [steps+1, E]
    rel_dom = h.micro_load[-1] / (balanced / MICRO_BATCHES)             # [M, E]
    vmax = max(2.0, float(rel.max()), float(rel_dom.max()))
    rows = (-0.5, e - 0.5)
    expert_ticks = [0, e - 1]

    # 1. load over training: experts (rows) x steps, white = balanced
    a.heat_img.set_data(rel.T)
    a.heat_img.set_extent((-0.5, steps + 0.5, *rows))
    a.heat_img.norm.vmax = vmax                                         # shared by both heatmaps
    a.heat.set_xlim(-0.5, steps + 0.5)
    a.heat.set_xticks([0, steps])
    a.heat.set_title(f"Load over training: MaxVio {s['max_vio_before']:.2f} → {s['max_vio_after']:.2f}\n"
                     "white = balanced, orange = over, purple = under", fontsize=_FS, y=1.0)

    # 2. final load per domain: micro-batch balancing spreads every domain, global balancing lets them specialise
    a.dom_img.set_data(rel_dom.T)
    a.dom_img.set_extent((0.5, MICRO_BATCHES + 0.5, *rows))
    a.dom.set_xlim(0.5, MICRO_BATCHES + 0.5)

    # 3. final load against the capacity; the part over capacity is dropped
    final = h.load[-1]
    cap = s["capacity"]
    kept = final if cap is None else np.minimum(final, cap)
    edges = np.arange(e + 1) - 0.5
    a.kept.set_data(kept, edges, 0)
    a.dropped.set_data(final, edges, kept)
    a.balanced.set_xdata([balanced, balanced])
    a.capacity.set_visible(cap is not None)
    a.capacity.set_xdata([cap or 0, cap or 0])
    a.bar.set_xlim(0, max(float(final.max()), cap or 0) * 1.08)
    if cap is None:
        a.bar.set_title("Final load: no capacity limit (as Qwen3): 0 dropped\n"
                        f"every assignment is processed, balanced = {balanced:g} (dashed)",
                        fontsize=_FS, y=1.0)
    else:
        pct = 100 * s["dropped"] / s["assignments"]
        a.bar.set_title(f"Final load: {s['dropped']} of {s['assignments']} assignments dropped ({pct:.1f}%)\n"
                        f"capacity = {cap} (orange), balanced = {balanced:g} (dashed)",
                        fontsize=_FS, y=1.0)
    for ax in (a.heat, a.dom, a.bar):
        ax.set_ylim(*rows)
        ax.set_yticks(expert_ticks)


def _top_k_options(experts: int) -> list[int]:
    return [k for k in TOP_K if k < experts]


def moe_router_explorer(**initial) -> FigureWidget:
    """Interactive MoE router training: experts, top-k, tokens, skew, balancing method and its strength.

    Keyword arguments set the initial control values: ``experts, top_k, tokens, skew, shared_experts,
    capacity_factor, method, coef, gamma, steps, seed`` (see :func:`draw_moe`).
    """
    # opens as Qwen3 trains (no capacity limit) and without balancing: the first picture is the collapse
    values = dict(experts=8, top_k=2, tokens=256, skew=1.5, shared_experts=0, capacity_factor=DROPLESS, method="none",
                  coef=0.1, gamma=0.03, steps=20, seed=0)
    unknown = sorted(set(initial) - set(values))
    check(not unknown, "initial", unknown, f"unknown control; the controls are {sorted(values)}")
    values.update(initial)
    check(values["experts"] in EXPERTS, "experts", values["experts"], f"must be one of {EXPERTS}")
    check(values["top_k"] in _top_k_options(values["experts"]), "top_k", values["top_k"],
          f"must be one of {_top_k_options(values['experts'])} for experts={values['experts']}")
    check(values["tokens"] in TOKENS, "tokens", values["tokens"], f"must be one of {TOKENS}")
    check(isinstance(values["skew"], (int, float)) and 0 <= values["skew"] <= 3, "skew", values["skew"],
          "must be a number in [0, 3]")
    check_int(values["shared_experts"], "shared_experts", minimum=0, maximum=2)
    check(values["capacity_factor"] in CAPACITY_FACTORS, "capacity_factor", values["capacity_factor"],
          f"must be one of {CAPACITY_FACTORS}")
    check(values["method"] in METHODS, "method", values["method"], f"must be one of {tuple(METHODS)}")
    check(values["coef"] in COEFS, "coef", values["coef"], f"must be one of {COEFS}")
    check(values["gamma"] in GAMMAS, "gamma", values["gamma"], f"must be one of {GAMMAS}")
    check(values["steps"] in STEPS, "steps", values["steps"], f"must be one of {STEPS}")
    check_int(values["seed"], "seed", minimum=0, maximum=20)

    style = {"description_width": "initial"}
    slider = dict(continuous_update=False, style=style)
    controls = {
        "experts": W.SelectionSlider(options=EXPERTS, value=values["experts"], description="experts E", **slider),
        "top_k": W.Dropdown(options=_top_k_options(values["experts"]), value=values["top_k"],
                            description="top-k", style=style),
        "tokens": W.SelectionSlider(options=TOKENS, value=values["tokens"], description="tokens / batch", **slider),
        "skew": W.FloatSlider(value=values["skew"], min=0.0, max=3.0, step=0.25, description="router skew",
                              **slider),
        "shared_experts": W.IntSlider(value=values["shared_experts"], min=0, max=2, description="shared experts",
                                      **slider),
        "capacity_factor": W.SelectionSlider(options=[("no limit" if c == DROPLESS else f"{c:g}", c)
                                                      for c in CAPACITY_FACTORS], value=values["capacity_factor"],
                                             description="capacity factor", **slider),
        "method": W.Dropdown(options=[(label, key) for key, label in METHODS.items()], value=values["method"],
                             description="balancing", style=style, layout=W.Layout(width="340px")),
        "coef": W.SelectionSlider(options=COEFS, value=values["coef"], description="aux coef α", **slider),
        "gamma": W.SelectionSlider(options=GAMMAS, value=values["gamma"], description="bias speed γ", **slider),
        "steps": W.SelectionSlider(options=STEPS, value=values["steps"], description="steps", **slider),
        "seed": W.IntSlider(value=values["seed"], min=0, max=20, description="seed", **slider),
    }

    def sync_enabled(*_: object) -> None:
        method = controls["method"].value
        controls["coef"].disabled = method not in ("aux", "global")
        controls["gamma"].disabled = method != "aux_free"

    def sync_top_k(change: dict) -> None:
        """Offer only k < E. Every options list is a prefix of TOP_K, so a k that stays allowed keeps its index."""
        options = _top_k_options(change["new"])
        top_k = controls["top_k"]
        if list(top_k.options) == options:
            return
        if top_k.value not in options:
            top_k.value = options[-1]          # one redraw, with a valid k (it is in the old list too)
        # ipywidgets resets a selection to the first option when the options change (one more training run);
        # while "initialising" it keeps the index, which still points at the same k here
        top_k._initializing_traits_ = True
        try:
            top_k.options = options
        finally:
            top_k._initializing_traits_ = False
        if top_k.value not in options:         # other ipywidgets versions: fall back to a valid choice
            top_k.value = options[-1]

    # registered before FigureWidget's redraw observers, so top-k is valid when the redraw runs
    controls["experts"].observe(sync_top_k, names="value")
    controls["method"].observe(sync_enabled, names="value")
    sync_enabled()
    # 11 in at 72 dpi = 792 px: fits a notebook output area, so fonts show at their size
    return FigureWidget(draw_moe, controls, name="moe_router_explorer", figsize=SIZE, dpi=DPI, columns=4,
                        layout=None, keep=True)
