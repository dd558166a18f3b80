"""Mixture-of-experts routing: which experts each token visits, and how the load is kept balanced.

This file is the *routing half* of an MoE layer. A router maps tokens ``x [N, H]`` to
``(logits [N, E], weights [N, k], indices [N, k])``; an MoE block then computes
``y = Σ_j weights[:, j] · Expert_{indices[:, j]}(x)`` (+ shared experts), so a block can call either router
unchanged.

* :class:`TopKRouter`: Qwen3-MoE (HF ``Qwen3MoeTopKRouter``): softmax over all E experts in float32 → top-k →
  renormalise the k weights if ``norm_topk_prob`` → cast back. Switch (k = 1) and Mixtral use the same scheme.
* :class:`DeepSeekV3Router`: DeepSeek-V3 §2.1.2 eq. 13–16 (HF ``DeepseekV3TopkRouter``): sigmoid affinities,
  a correction bias ``b`` that is used **only to choose** experts (group-limited top-k, group score = sum of
  the group's top-2), gates gathered from the *unbiased* scores, renormalised, × ``routed_scaling_factor``.
* Balancing: :func:`load_balancing_loss` (HF ``load_balancing_loss_func`` = Switch eq. 4–6 with top-k,
  = k at perfect balance), :func:`global_batch_balancing_loss` (Qiu et al. 2025), :func:`aux_free_bias_update`
  (DeepSeek-V3 auxiliary-loss-free balancing), and the diagnostics :func:`expert_load`,
  :func:`max_violation` (MaxVio) and :func:`capacity_drops` (Switch §2.2 expert capacity).

Shapes: N tokens (batch × sequence flattened), H hidden size, E routed experts, k experts per token.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check, check_int

__all__ = ["TopKRouter", "DeepSeekV2Router", "DeepSeekV3Router", "make_router", "group_limited_topk", "expert_load",
           "load_balancing_loss", "global_batch_balancing_loss", "sequence_balance_loss", "aux_free_bias_update",
           "max_violation", "expert_capacity", "capacity_drops", "CapacityDrops"]


def _check_routing(num_experts: int, top_k: int) -> None:
    check_int(num_experts, "num_experts", minimum=1)
    check_int(top_k, "top_k", minimum=1)
    check(top_k <= num_experts, "top_k", top_k, f"a token cannot visit more than num_experts={num_experts} experts")


def _check_hidden(x: torch.Tensor, hidden_size: int) -> None:
    check(isinstance(x, torch.Tensor) and x.dim() >= 1 and x.shape[-1] == hidden_size, "x",
          tuple(x.shape) if isinstance(x, torch.Tensor) else x, f"must be a tensor [..., hidden_size={hidden_size}]")


class TopKRouter(nn.Module):
    """Softmax top-k router of Qwen3-MoE (HF ``Qwen3MoeTopKRouter``, transformers 5.x).

    ``logits = x Wᵀ`` (``W [E, H]``, no bias); ``p = softmax(logits)`` over **all** E experts in float32;
    ``weights, indices = topk(p, k)``; if ``norm_topk_prob`` the k weights are divided by their sum
    (the released Qwen3-30B-A3B / 235B-A22B set it, the config default does not); then cast to the logits'
    dtype. With ``top_k = 1`` and no renormalisation this is the Switch router, ``y = p_i(x) E_i(x)``
    (Fedus et al. 2021, §2.1).
    """

    def __init__(self, hidden_size: int, num_experts: int, top_k: int, norm_topk_prob: bool = False) -> None:
        super().__init__()
        check_int(hidden_size, "hidden_size", minimum=1)
        _check_routing(num_experts, top_k)
        self.hidden_size, self.num_experts, self.top_k = hidden_size, num_experts, top_k
        self.norm_topk_prob = bool(norm_topk_prob)
        self.weight = nn.Parameter(torch.zeros(num_experts, hidden_size))  # [E, H]; the model's init fills it

    @classmethod
    def from_config(cls, cfg) -> "TopKRouter":
        """From a :class:`~llmviz.configs.ModelConfig`: ``num_experts``, ``num_experts_per_tok``, ``norm_topk_prob``."""
        return cls(cfg.hidden_size, cfg.num_experts, cfg.num_experts_per_tok, cfg.norm_topk_prob)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _check_hidden(x, self.hidden_size)
        x = x.reshape(-1, self.hidden_size)                              # [N, H]
        logits = F.linear(x, self.weight)                                 # [N, E]
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32)        # [N, E], over all experts
        weights, indices = torch.topk(probs, self.top_k, dim=-1)          # [N, k], [N, k]
        if self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)         # the k gates sum to 1
        return logits, weights.to(logits.dtype), indices

    def extra_repr(self) -> str:
        return f"hidden={self.hidden_size}, experts={self.num_experts}, top_k={self.top_k}, norm={self.norm_topk_prob}"


def group_limited_topk(scores: torch.Tensor, top_k: int, n_group: int = 1, topk_group: int = 1) -> torch.Tensor:
    """Indices [N, k] of the top-k experts inside the ``topk_group`` best of ``n_group`` contiguous groups.

    DeepSeek-V3 node-limited routing as HF ``DeepseekV3TopkRouter`` writes it: the E experts form ``n_group``
    contiguous blocks of E / n_group; a group's score is the **sum of its two highest** scores; only experts in
    the ``topk_group`` best groups may be chosen. ``scores [N, E]`` are the selection scores (with the bias).
    Indices come sorted by descending score.
    """
    check(isinstance(scores, torch.Tensor) and scores.dim() == 2, "scores",
          tuple(scores.shape) if isinstance(scores, torch.Tensor) else scores, "must be a tensor [N, E]")
    n, e = scores.shape
    check_int(n_group, "n_group", minimum=1)
    check(e % n_group == 0, "n_group", n_group, f"num_experts={e} must split into equal groups")
    check(e // n_group >= 2, "n_group", n_group,
          f"each group needs >= 2 experts (the group score is the sum of its top-2); num_experts={e}")
    check_int(topk_group, "topk_group", minimum=1, maximum=n_group)
    check_int(top_k, "top_k", minimum=1)
    check(top_k <= topk_group * (e // n_group), "top_k", top_k,
          f"must be <= topk_group * experts per group = {topk_group * (e // n_group)}")
    if n_group > 1:
        group_scores = scores.view(n, n_group, e // n_group).topk(2, dim=-1)[0].sum(dim=-1)   # [N, G]
        keep = torch.topk(group_scores, k=topk_group, dim=-1)[1]                             # [N, topk_group]
        group_mask = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, keep, True)
        expert_mask = group_mask.repeat_interleave(e // n_group, dim=1)                      # [N, E]
        scores = scores.masked_fill(~expert_mask, float("-inf"))
    return torch.topk(scores, k=top_k, dim=-1)[1]                                             # [N, k]


class DeepSeekV3Router(nn.Module):
    """Sigmoid router with an auxiliary-loss-free correction bias (DeepSeek-V3 §2.1.2, eq. 13–16; HF
    ``DeepseekV3TopkRouter`` as called by ``DeepseekV3MoE``).

    ``s = sigmoid(x Wᵀ)`` (float32); experts are **chosen** by ``s + b`` (``b`` = ``e_score_correction_bias``, a
    buffer without gradient that :func:`aux_free_bias_update` moves during training), group-limited to
    ``topk_group`` of ``n_group`` groups; the gates are gathered from ``s`` **without** ``b``, divided by their
    sum (+1e-20) if ``norm_topk_prob``, then multiplied by ``routed_scaling_factor`` (2.5 in DeepSeek-V3's
    config.json; not in the paper's equations). Outputs stay float32, as in HF.
    """

    def __init__(self, hidden_size: int, num_experts: int, top_k: int, n_group: int = 1, topk_group: int = 1,
                 norm_topk_prob: bool = True, routed_scaling_factor: float = 1.0) -> None:
        super().__init__()
        check_int(hidden_size, "hidden_size", minimum=1)
        _check_routing(num_experts, top_k)
        check(isinstance(routed_scaling_factor, (int, float)) and routed_scaling_factor > 0, "routed_scaling_factor",
              routed_scaling_factor, "must be a number > 0")
        group_limited_topk(torch.zeros(1, num_experts), top_k, n_group, topk_group)  # validates the grouping
        self.hidden_size, self.num_experts, self.top_k = hidden_size, num_experts, top_k
        self.n_group, self.topk_group = n_group, topk_group
        self.norm_topk_prob, self.routed_scaling_factor = bool(norm_topk_prob), float(routed_scaling_factor)
        self.weight = nn.Parameter(torch.zeros(num_experts, hidden_size, dtype=torch.float32))   # [E, H]
        self.register_buffer("e_score_correction_bias", torch.zeros(num_experts, dtype=torch.float32))  # b [E]

    @classmethod
    def from_config(cls, cfg) -> "DeepSeekV3Router":
        """From a :class:`~llmviz.configs.ModelConfig` (``n_group``, ``topk_group``, ``routed_scaling_factor`` …)."""
        return cls(cfg.hidden_size, cfg.num_experts, cfg.num_experts_per_tok, cfg.n_group, cfg.topk_group,
                   cfg.norm_topk_prob, cfg.routed_scaling_factor)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _check_hidden(x, self.hidden_size)
        x = x.reshape(-1, self.hidden_size)
        logits = F.linear(x.float(), self.weight.float())                   # [N, E] float32
        scores = logits.sigmoid()                                            # s_{i,t}, eq. 15
        choice = scores + self.e_score_correction_bias                       # s + b: selection only, eq. 16
        indices = group_limited_topk(choice.detach(), self.top_k, self.n_group, self.topk_group)  # [N, k]
        weights = scores.gather(1, indices)                                  # g' from s WITHOUT b
        if self.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)  # eq. 13
        return logits, weights * self.routed_scaling_factor, indices

    def extra_repr(self) -> str:
        return (f"hidden={self.hidden_size}, experts={self.num_experts}, top_k={self.top_k}, n_group={self.n_group}, "
                f"topk_group={self.topk_group}, norm={self.norm_topk_prob}, scale={self.routed_scaling_factor}")


class DeepSeekV2Router(nn.Module):
    """Softmax router with group-limited greedy selection (DeepSeek-V2 §2.2, eq. 20-22 and §3.1.2 device-limited
    routing; HF ``DeepseekV2TopkRouter`` with ``topk_method="group_limited_greedy"``).

    ``s = softmax(x Wᵀ)`` over all experts (float32); a group's score is its **highest** expert score (V3 uses
    the sum of the top two); experts outside the ``topk_group`` best groups get score 0; the top-k remaining
    scores are the gates, **not** renormalised, times ``routed_scaling_factor`` (16 in V2's config)."""

    def __init__(self, hidden_size: int, num_experts: int, top_k: int, n_group: int = 1, topk_group: int = 1,
                 routed_scaling_factor: float = 1.0) -> None:
        super().__init__()
        check_int(hidden_size, "hidden_size", minimum=1)
        _check_routing(num_experts, top_k)
        check_int(n_group, "n_group", minimum=1)
        check(num_experts % n_group == 0, "n_group", n_group, f"num_experts={num_experts} must split into equal groups")
        check(1 <= topk_group <= n_group and topk_group * (num_experts // n_group) >= top_k, "topk_group", topk_group,
              f"the {topk_group} chosen groups must hold at least top_k={top_k} experts")
        self.hidden_size, self.num_experts, self.top_k = hidden_size, num_experts, top_k
        self.n_group, self.topk_group, self.routed_scaling_factor = n_group, topk_group, float(routed_scaling_factor)
        self.weight = nn.Parameter(torch.zeros(num_experts, hidden_size, dtype=torch.float32))   # [E, H]

    @classmethod
    def from_config(cls, cfg) -> "DeepSeekV2Router":
        return cls(cfg.hidden_size, cfg.num_experts, cfg.num_experts_per_tok, cfg.n_group, cfg.topk_group,
                   cfg.routed_scaling_factor)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _check_hidden(x, self.hidden_size)
        x = x.reshape(-1, self.hidden_size)
        logits = F.linear(x.float(), self.weight.float())                   # [N, E]
        scores = logits.softmax(dim=-1)
        group = scores.view(-1, self.n_group, self.num_experts // self.n_group).amax(dim=-1)   # [N, G]: group max
        keep = torch.zeros_like(group).scatter_(1, group.topk(self.topk_group, dim=-1)[1], 1.0)
        scores = scores * keep.repeat_interleave(self.num_experts // self.n_group, dim=1)       # 0 outside
        weights, indices = scores.topk(self.top_k, dim=-1)
        return logits, weights * self.routed_scaling_factor, indices


def make_router(cfg) -> nn.Module:
    """The router a config asks for: ``scoring_func="sigmoid"`` → :class:`DeepSeekV3Router`; a softmax DeepSeek
    (V2) → :class:`DeepSeekV2Router`; else :class:`TopKRouter` (Qwen3-MoE)."""
    if cfg.scoring_func == "sigmoid":
        return DeepSeekV3Router.from_config(cfg)
    return (DeepSeekV2Router if cfg.arch == "deepseek" else TopKRouter).from_config(cfg)


# ----------------------------------------------------------------------------------------------- balancing losses

def _as_layers(router_logits, name: str) -> list[torch.Tensor]:
    layers = [router_logits] if isinstance(router_logits, torch.Tensor) else list(router_logits)
    check(len(layers) > 0 and all(isinstance(t, torch.Tensor) and t.dim() == 2 for t in layers), name,
          type(router_logits).__name__, "must be a [N, E] tensor or a non-empty tuple/list of them (one per layer)")
    return layers


def _counts_and_probs(layers: list[torch.Tensor], num_experts: int, top_k: int,
                      attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pooled over layers: assignment counts c [E] (no grad), probability sums [E] (with grad), rows R."""
    _check_routing(num_experts, top_k)
    for t in layers:
        check(t.shape[-1] == num_experts, "router_logits", tuple(t.shape),
              f"last dim must be num_experts={num_experts}")
    device = layers[0].device
    counts = torch.zeros(num_experts, dtype=torch.float32, device=device)
    prob_sum = torch.zeros(num_experts, dtype=torch.float32, device=device)
    rows = torch.zeros((), dtype=torch.float32, device=device)
    mask = None
    if attention_mask is not None:
        mask = attention_mask.reshape(-1).to(device=device, dtype=torch.float32)      # [N], 1 = real token
    for logits in layers:
        probs = torch.softmax(logits, dim=-1).float()                                # [N, E] full softmax
        chosen = torch.topk(probs, top_k, dim=-1)[1].reshape(-1)                     # [N·k]
        if mask is None:
            counts = counts + torch.bincount(chosen, minlength=num_experts).float()
            prob_sum = prob_sum + probs.sum(dim=0)
            rows = rows + probs.shape[0]
        else:
            check(mask.numel() == logits.shape[0], "attention_mask", tuple(attention_mask.shape),
                  f"must hold one entry per router row ({logits.shape[0]})")
            counts = counts.index_add(0, chosen, mask.repeat_interleave(top_k))
            prob_sum = prob_sum + (probs * mask[:, None]).sum(dim=0)
            rows = rows + mask.sum()
    return counts, prob_sum, rows


def load_balancing_loss(router_logits, num_experts: int, top_k: int,
                        attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """HF ``load_balancing_loss_func`` (qwen3_moe, transformers 5.x): Switch eq. 4–6 generalised to top-k.

    Over all layers ℓ and non-padding tokens t (R rows): ``p = softmax(logits)`` (the full softmax, not the
    renormalised gates); ``f_e = #{(ℓ,t): e ∈ topk(p_{ℓ,t}, k)} / R`` (Σ f = k, no gradient);
    ``P_e = (1/R) Σ p_{ℓ,t,e}``; ``aux = E · Σ_e f_e P_e``. f and P are pooled over layers **before** the
    product. Perfect balance (or uniform P) gives **k**, not 1. Padding rows (``attention_mask`` 0) are left out.

    ``router_logits``: tuple/list of ``[N, E]`` per layer (or one tensor); ``attention_mask``: ``[B, T]`` with
    B·T = N.
    """
    layers = _as_layers(router_logits, "router_logits")
    counts, prob_sum, rows = _counts_and_probs(layers, num_experts, top_k, attention_mask)
    f, p = counts / rows, prob_sum / rows                                              # [E], [E]
    return num_experts * torch.sum(f * p)


def global_batch_balancing_loss(micro_batches: Sequence, num_experts: int, top_k: int,
                                global_counts: torch.Tensor | None = None) -> torch.Tensor:
    """Global-batch load-balancing loss (Qiu et al. 2025, "Demons in the Detail", arXiv:2501.11873; Qwen3-MoE).

    The micro-batch loss :func:`load_balancing_loss` balances each micro-batch, which pushes even a
    domain-specific micro-batch (all code, all maths) to spread over every expert. Here the expert
    frequencies ``f`` are counted over the **global batch** (all micro-batches; in a real run all-reduced across
    data-parallel ranks and gradient-accumulation steps) without gradient, with HF normalisation
    ``f = c · k / Σc`` (Σ f = k), and each micro-batch m contributes ``E · Σ_e f_e · P_{m,e}`` with its own
    differentiable mean probabilities ``P_m``. The result is the mean over micro-batches, so with one
    micro-batch it equals :func:`load_balancing_loss`.

    ``micro_batches``: a sequence of micro-batches, each a ``[N_m, E]`` logits tensor or a tuple of them (one
    per layer, pooled as HF does). ``global_counts [E]``: counts gathered elsewhere (then ``micro_batches``
    need only be the local ones).
    """
    check(isinstance(micro_batches, (list, tuple)) and len(micro_batches) > 0, "micro_batches",
          type(micro_batches).__name__, "must be a non-empty list/tuple of micro-batches")
    stats = [_counts_and_probs(_as_layers(mb, "micro_batches[i]"), num_experts, top_k, None) for mb in micro_batches]
    if global_counts is None:
        global_counts = sum(c for c, _, _ in stats)
    check(isinstance(global_counts, torch.Tensor) and global_counts.shape == (num_experts,)
          and bool(global_counts.sum() > 0), "global_counts",
          tuple(global_counts.shape) if isinstance(global_counts, torch.Tensor) else global_counts,
          f"must be a non-zero tensor of expert counts [num_experts={num_experts}]")
    f = (global_counts.detach().float() * top_k / global_counts.sum()).to(stats[0][1].device)   # Σ f = k
    losses = [num_experts * torch.sum(f * (prob_sum / rows)) for _, prob_sum, rows in stats]
    return torch.stack(losses).mean()


def sequence_balance_loss(router_logits: torch.Tensor, indices: torch.Tensor, alpha: float) -> torch.Tensor:
    """DeepSeek-V3's complementary sequence-wise balance loss (§2.1.2, eq. 17-20), per sequence then averaged:
    ``α Σ_i f_i P_i`` with ``f_i = E / (k T) · #(tokens of the sequence routed to i)`` and ``P_i`` the mean over the
    sequence of the normalised affinities ``s'_{i,t} = s_{i,t} / Σ_j s_{j,t}`` (``s = sigmoid(logits)``). It is
    ``α`` when a sequence is perfectly balanced. router_logits [B, T, E], indices [B, T, k]."""
    check(isinstance(router_logits, torch.Tensor) and router_logits.dim() == 3, "router_logits.shape",
          tuple(getattr(router_logits, "shape", ())), "must be [batch, seq_len, num_experts]")
    B, T, E = router_logits.shape
    check(isinstance(indices, torch.Tensor) and indices.dim() == 3 and indices.shape[:2] == (B, T), "indices.shape",
          tuple(getattr(indices, "shape", ())), f"must be [batch={B}, seq_len={T}, top_k]")
    check(isinstance(alpha, (int, float)) and alpha >= 0, "alpha", alpha, "must be >= 0")
    k = indices.shape[-1]
    counts = F.one_hot(indices, E).sum(dim=(1, 2)).float()                            # [B, E]
    f = counts * E / (k * T)
    s = router_logits.float().sigmoid()
    P = (s / s.sum(-1, keepdim=True)).mean(1)                                          # [B, E]
    return alpha * (f * P).sum(-1).mean()


# ----------------------------------------------------------------------------------------- loads and diagnostics

def expert_load(indices: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Tokens routed to each expert: ``indices [N, k]`` → counts ``[E]`` (float)."""
    check_int(num_experts, "num_experts", minimum=1)
    check(isinstance(indices, torch.Tensor) and not indices.is_floating_point(), "indices",
          getattr(indices, "dtype", indices), "must be an integer tensor of expert ids")
    check(indices.numel() == 0 or (int(indices.min()) >= 0 and int(indices.max()) < num_experts), "indices",
          (int(indices.min()), int(indices.max())) if indices.numel() else (), f"ids must lie in [0, {num_experts})")
    return torch.bincount(indices.reshape(-1), minlength=num_experts).float()


def aux_free_bias_update(bias: torch.Tensor, expert_load: torch.Tensor, gamma: float) -> torch.Tensor:
    """DeepSeek-V3 auxiliary-loss-free balancing (§2.1.2): ``b_i ← b_i + γ · sign(mean load − load_i)``.

    After each step an overloaded expert's bias drops by γ and an underloaded one's rises by γ (an expert at
    exactly the mean keeps its bias). ``bias [E]`` and ``expert_load [E]`` (tokens per expert over the whole
    batch); γ = 0.001 for DeepSeek-V3's first 14.3T tokens, 0 afterwards. Returns a new tensor.
    """
    check(isinstance(bias, torch.Tensor) and bias.dim() == 1, "bias", getattr(bias, "shape", bias),
          "must be a 1-D tensor [E]")
    check(isinstance(expert_load, torch.Tensor) and expert_load.shape == bias.shape, "expert_load",
          tuple(getattr(expert_load, "shape", ())), f"must be a tensor with the bias's shape {tuple(bias.shape)}")
    check(isinstance(gamma, (int, float)) and not isinstance(gamma, bool) and math.isfinite(gamma) and gamma >= 0,
          "gamma", gamma, "the bias update speed must be a finite number >= 0")
    load = expert_load.detach().float()
    return bias + gamma * torch.sign(load.mean() - load).to(bias.dtype)


def max_violation(load: torch.Tensor) -> torch.Tensor:
    """MaxVio = (max load − mean load) / mean load (Wang et al. 2024; DeepSeek-V3 Fig. 9), over the last dim.

    0 = perfect balance; E − 1 = every token on one expert (top-1). ``load [..., E]`` → ``[...]``.
    """
    check(isinstance(load, torch.Tensor) and load.dim() >= 1 and load.shape[-1] >= 1, "load",
          getattr(load, "shape", load), "must be a tensor [..., E] of expert loads")
    load = load.float()
    mean = load.mean(dim=-1)
    check(bool((mean > 0).all()), "load", load.tolist() if load.numel() <= 16 else "...",
          "the mean load must be > 0 (MaxVio is relative to it)")
    return (load.max(dim=-1).values - mean) / mean


def expert_capacity(num_tokens: int, num_experts: int, top_k: int, capacity_factor: float) -> int:
    """Switch §2.2: ``capacity = ceil(capacity_factor · tokens · k / E)`` token slots per expert."""
    check_int(num_tokens, "num_tokens", minimum=0)
    _check_routing(num_experts, top_k)
    check(isinstance(capacity_factor, (int, float)) and not isinstance(capacity_factor, bool)
          and math.isfinite(capacity_factor) and capacity_factor > 0, "capacity_factor", capacity_factor,
          "must be a finite number > 0 (1.0 = exactly the balanced share)")
    return math.ceil(capacity_factor * num_tokens * top_k / num_experts - 1e-9)


class CapacityDrops(NamedTuple):
    """Result of :func:`capacity_drops`."""

    capacity: int            # token slots per expert
    dropped: torch.Tensor    # [E] assignments over capacity, per expert
    keep: torch.Tensor       # [N, k] bool: False = this (token, slot) skips its expert (the residual carries it)

    @property
    def total(self) -> int:
        return int(self.dropped.sum())


def capacity_drops(indices: torch.Tensor, num_experts: int, capacity_factor: float) -> CapacityDrops:
    """Which assignments overflow a fixed expert capacity (Switch Transformer §2.2).

    ``capacity = ceil(capacity_factor · N · k / E)``. Each expert accepts assignments **in token order**
    (token 0's k slots, then token 1's, …; as HF Switch's ``cumsum`` over positions) until full; the rest are
    dropped: that token skips the expert and continues through the residual connection.
    ``indices [N, k]`` → :class:`CapacityDrops` (capacity, dropped per expert [E], keep mask [N, k]).
    """
    check(isinstance(indices, torch.Tensor) and indices.dim() == 2, "indices", getattr(indices, "shape", indices),
          "must be a tensor [N, k] of expert ids")
    n, k = indices.shape
    load = expert_load(indices, num_experts)
    cap = expert_capacity(n, num_experts, k, capacity_factor)
    one_hot = F.one_hot(indices.reshape(-1), num_experts)                      # [N·k, E], token order
    position = (one_hot.cumsum(dim=0) * one_hot).sum(dim=-1)                  # 1-based place in its expert's queue
    keep = (position <= cap).reshape(n, k)
    dropped = (load - cap).clamp(min=0)
    return CapacityDrops(cap, dropped, keep)


# ------------------------------------------------------------------------------------------------ the MoE block

class SparseMoE(nn.Module):
    """A mixture-of-experts feed-forward layer: router + E SwiGLU experts (+ always-on shared experts).

    ``y = Σ_j w_j · Expert_{i_j}(x) (+ Shared(x))`` over the k experts the router picked for each token
    (HF ``Qwen3MoeSparseMoeBlock``; DeepSeekMoE §3 adds the shared experts). Each expert only sees the tokens
    routed to it, so a token costs k experts' FLOPs, not E. The last forward's router logits stay in
    ``router_logits`` [N, E] for the load-balancing loss, and the chosen experts in ``router_indices`` [N, k]
    (for ``expert_load`` and DeepSeek-V3's bias update).
    """

    def __init__(self, cfg) -> None:
        from .ffn import SwiGLU

        super().__init__()
        self.router = make_router(cfg)
        self.experts = nn.ModuleList(SwiGLU(cfg.hidden_size, cfg.moe_intermediate_size, activation=cfg.activation)
                                     for _ in range(cfg.num_experts))
        shared = cfg.num_shared_experts * cfg.moe_intermediate_size
        self.shared_experts = SwiGLU(cfg.hidden_size, shared, activation=cfg.activation) if shared else None
        self.router_logits: torch.Tensor | None = None
        self.router_indices: torch.Tensor | None = None   # [N, k]: the experts each token visited (for loads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, H] -> [B, T, H]
        flat = x.reshape(-1, x.shape[-1])                                          # [N, H]
        logits, weights, indices = self.router(flat)                               # [N, E], [N, k], [N, k]
        self.router_logits, self.router_indices = logits, indices
        out = torch.zeros_like(flat)
        for e in indices.unique().tolist():                                        # only experts that got tokens
            token, slot = torch.where(indices == e)                                # which tokens, which of their k
            out.index_add_(0, token, self.experts[e](flat[token]) * weights[token, slot, None].to(flat.dtype))
        if self.shared_experts is not None:
            out = out + self.shared_experts(flat)
        return out.view_as(x)
