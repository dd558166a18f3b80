"""Post-training with preferences: InstructGPT's SFT, reward model and PPO (Ouyang et al. 2022 §3.5), DPO
(Rafailov et al. 2023) and GRPO's advantages (Shao et al. 2024, DeepSeekMath §4.1).

Conventions (algorithms.md §7): a sequence is ``prompt + response`` in one row of ``input_ids`` [B, T];
``response_mask`` [B, T] is 1 on the response tokens. ``log π(y|x)`` is the **sum** of the response tokens'
log-probabilities (no length averaging). Token t is predicted from the logits at position t − 1, so the first token
of a row can never be a response token.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check, check_int
from .configs import get_config

__all__ = ["token_logprobs", "sequence_logprobs", "sft_loss", "ptx_loss", "RewardModel", "reward_loss", "ranking_loss",
           "kl_penalty_rewards", "gae", "ppo_policy_loss", "ppo_value_loss", "kl_estimate", "dpo_loss",
           "implicit_reward", "grpo_advantages", "paper_coefficients"]


def _check_pair(a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
    check(isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape, f"{b_name}.shape",
          tuple(getattr(b, "shape", ())), f"must equal {a_name}.shape {tuple(getattr(a, 'shape', ()))}")


def _check_response(input_ids: torch.Tensor, response_mask: torch.Tensor) -> None:
    check(isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2 and input_ids.shape[1] >= 2, "input_ids.shape",
          tuple(getattr(input_ids, "shape", ())), "must be [batch, seq_len] with seq_len >= 2 (prompt + response)")
    _check_pair(input_ids, "input_ids", response_mask, "response_mask")
    check(not bool(response_mask[:, 0].any()), "response_mask[:, 0]", response_mask[:, 0].tolist()[:8],
          "the first token has no logits before it, so it cannot be a response token")
    empty = (response_mask.sum(-1) == 0).nonzero().flatten().tolist()
    check(not empty, "response_mask", f"rows {empty[:8]} have no response token",
          "every row needs at least one response token (1 in response_mask)")


def token_logprobs(model: nn.Module, input_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log π(x_t | x_<t)`` for t = 1 … T−1: [B, T−1] (position t−1's logits scored at token t). Score with the
    temperature the samples were drawn with (the N-details of RLHF: a mismatch biases the KL)."""
    logits = model(input_ids[:, :-1]).float() / temperature              # [B, T-1, V]
    return torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def sequence_logprobs(model: nn.Module, input_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """``log π(y | x)``: the sum of the response tokens' log-probabilities, [B] (prompt masked; no length
    averaging, the DPO / RLHF convention)."""
    _check_response(input_ids, response_mask)
    return (token_logprobs(model, input_ids) * response_mask[:, 1:].float()).sum(-1)


def sft_loss(model: nn.Module, input_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Supervised fine-tuning (InstructGPT step 1): next-token cross-entropy on the response tokens only, averaged
    over them (the prompt is context, not a target)."""
    _check_response(input_ids, response_mask)
    m = response_mask[:, 1:].float()
    return -(token_logprobs(model, input_ids) * m).sum() / m.sum()


def ptx_loss(model: nn.Module, pretrain_ids: torch.Tensor, gamma: float) -> torch.Tensor:
    """PPO-ptx's pretraining term (InstructGPT eq. 2, ``+ γ E_x∼D_pretrain[log π(x)]``) as a loss to add to PPO's:
    ``−γ ·`` the mean next-token log-likelihood of pretraining text [B, T]."""
    check(isinstance(pretrain_ids, torch.Tensor) and pretrain_ids.dim() == 2 and pretrain_ids.shape[1] >= 2,
          "pretrain_ids.shape", tuple(getattr(pretrain_ids, "shape", ())), "must be [batch, seq_len >= 2]")
    check(isinstance(gamma, (int, float)) and gamma >= 0, "gamma", gamma, "must be >= 0 (0 = plain PPO)")
    return -gamma * token_logprobs(model, pretrain_ids).mean()


def _last_response_index(response_mask: torch.Tensor) -> torch.Tensor:
    positions = torch.arange(response_mask.shape[1], device=response_mask.device)
    return (positions * (response_mask != 0)).argmax(-1)                 # [B]: the last position with mask 1


class RewardModel(nn.Module):
    """InstructGPT's reward model (§3.5): an LM backbone without its unembedding and a scalar head, read at the
    **last response token** (not "the token before the first pad", which scores only the prompt when the pad id
    also occurs inside the text). ``backbone`` must provide ``hidden_states(input_ids) -> [B, T, H]`` (every
    llmviz decoder does); the head starts at zero, so every answer starts with reward 0."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        check(hasattr(backbone, "hidden_states"), "backbone", type(backbone).__name__,
              "must be an llmviz decoder with hidden_states(input_ids)")
        self.backbone = backbone
        self.head = nn.Linear(backbone.cfg.hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
        """input_ids [B, T], response_mask [B, T] -> rewards [B]."""
        _check_response(input_ids, response_mask)
        h = self.backbone.hidden_states(input_ids)                        # [B, T, H]
        last = _last_response_index(response_mask)
        return self.head(h[torch.arange(len(h)), last]).squeeze(-1)


def reward_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss ``−mean log σ(r_w − r_l)`` over pairs (InstructGPT eq. 1)."""
    _check_pair(r_chosen, "r_chosen", r_rejected, "r_rejected")
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def ranking_loss(rewards: torch.Tensor) -> torch.Tensor:
    """InstructGPT eq. 1 for one batch of prompts: ``rewards`` [P, K] are the RM scores of each prompt's K answers
    ranked best first; the loss is the mean of ``−log σ(r_i − r_j)`` over all C(K, 2) pairs i < j of every prompt
    (all pairs of a prompt in one batch: the paper's remedy for overfitting when pairs are shuffled apart)."""
    check(isinstance(rewards, torch.Tensor) and rewards.dim() == 2 and rewards.shape[1] >= 2, "rewards.shape",
          tuple(getattr(rewards, "shape", ())), "must be [prompts, K >= 2] ranked best first")
    i, j = torch.triu_indices(rewards.shape[1], rewards.shape[1], offset=1)   # all pairs i < j (i ranked higher)
    return reward_loss(rewards[:, i], rewards[:, j])


def kl_penalty_rewards(logp: torch.Tensor, ref_logp: torch.Tensor, score: torch.Tensor, response_mask: torch.Tensor,
                       beta: float) -> torch.Tensor:
    """Per-token PPO rewards of RLHF: ``−β (log π − log π_SFT)`` on every response token, plus the reward model's
    ``score`` [B] on the last response token; 0 elsewhere. logp, ref_logp, response_mask: [B, T], aligned with each
    other (with :func:`token_logprobs`' [B, T−1] output, pass ``response_mask[:, 1:]``)."""
    _check_pair(logp, "logp", ref_logp, "ref_logp")
    _check_pair(logp, "logp", response_mask, "response_mask")
    check(isinstance(score, torch.Tensor) and score.shape == logp.shape[:1], "score.shape",
          tuple(getattr(score, "shape", ())), f"must be [batch] = ({logp.shape[0]},)")
    check(isinstance(beta, (int, float)) and beta >= 0, "beta", beta, "the KL coefficient must be >= 0")
    m = response_mask.float()
    check(bool((m.sum(-1) > 0).all()), "response_mask", "a row without response tokens", "each row needs one")
    rewards = -beta * (logp - ref_logp) * m
    rewards[torch.arange(len(m)), _last_response_index(m)] += score
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16): ``δ_t = r_t + γ V_{t+1} − V_t`` with
    ``V_T = 0``, ``A_t = Σ_l (γλ)^l δ_{t+l}``; returns ``(advantages, returns = A + V)``, each [B, T]."""
    _check_pair(rewards, "rewards", values, "values")
    check(rewards.dim() == 2, "rewards.shape", tuple(rewards.shape), "must be [batch, T]")
    for name, x in (("gamma", gamma), ("lam", lam)):
        check(isinstance(x, (int, float)) and 0 <= x <= 1, name, x, "must be in [0, 1]")
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
        next_value = values[:, t]
    return advantages, advantages + values


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.float()
    check(bool(m.sum() > 0), "mask", "all zero", "at least one token must count")
    return (x * m).sum() / m.sum()


def ppo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                    clip: float = 0.2) -> torch.Tensor:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), as a loss: ``−mean min(ρ A, clip(ρ, 1±ε) A)`` over the
    masked tokens, with ``ρ = exp(logp − old_logp)``. On the first epoch ρ = 1 and it equals ``−mean A``."""
    for name, x in (("old_logp", old_logp), ("advantages", advantages), ("mask", mask)):
        _check_pair(logp, "logp", x, name)
    check(isinstance(clip, (int, float)) and 0 < clip < 1, "clip", clip, "ε must be in (0, 1)")
    ratio = torch.exp(logp - old_logp)
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)
    return -_masked_mean(surrogate, mask)


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                   clip: float = 0.2) -> torch.Tensor:
    """Clipped value loss (OpenAI lm-human-preferences): ``½ mean max((V − R)², (V_clipped − R)²)`` with
    ``V_clipped = old_V + clip(V − old_V, ±ε)``, over the masked tokens."""
    for name, x in (("old_values", old_values), ("returns", returns), ("mask", mask)):
        _check_pair(values, "values", x, name)
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * _masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-sample estimates of KL(π ‖ π_ref) from samples of π (Schulman 2020, "Approximating KL divergence"), with
    ``log r = ref_logp − logp``: ``k1 = −log r`` (unbiased, can be negative), ``k2 = ½ (log r)²`` (biased, ≥ 0),
    ``k3 = (r − 1) − log r`` (unbiased and ≥ 0; GRPO's eq. 4)."""
    _check_pair(logp, "logp", ref_logp, "ref_logp")
    log_r = ref_logp - logp
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r ** 2
    check(kind == "k3", "kind", kind, "must be 'k1', 'k2' or 'k3'")
    return torch.expm1(log_r) - log_r


def implicit_reward(pi_logp: torch.Tensor, ref_logp: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """DPO's implicit reward ``β log(π(y|x) / π_ref(y|x))`` (Rafailov et al. eq. 5), from sequence log-probs."""
    _check_pair(pi_logp, "pi_logp", ref_logp, "ref_logp")
    return beta * (pi_logp - ref_logp)


def dpo_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float = 0.1) -> torch.Tensor:
    """``−mean log σ(β [(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])`` (Rafailov et al. eq. 7)
    over the batch, from sequence log-probs [B] (``sequence_logprobs``; the reference ones without gradient).
    Equals log 2 while the policy is the reference."""
    for name, x in (("pi_rejected", pi_rejected), ("ref_chosen", ref_chosen), ("ref_rejected", ref_rejected)):
        _check_pair(pi_chosen, "pi_chosen", x, name)
    check(isinstance(beta, (int, float)) and beta > 0, "beta", beta, "must be > 0")
    margin = implicit_reward(pi_chosen, ref_chosen, beta) - implicit_reward(pi_rejected, ref_rejected, beta)
    return -F.logsigmoid(margin).mean()


def grpo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """GRPO's outcome advantages (DeepSeekMath §4.1.2): ``rewards`` [B] come in consecutive groups of
    ``group_size`` answers to the same question; each becomes ``(r − group mean) / group std`` (Bessel-corrected
    std, as TRL's ``scale_rewards="group"``), the same for every token of the answer. No value model: the group
    is the baseline. A group whose rewards are all equal teaches nothing: its advantages are 0."""
    check(isinstance(rewards, torch.Tensor) and rewards.dim() == 1, "rewards.shape",
          tuple(getattr(rewards, "shape", ())), "must be [B]")
    check_int(group_size, "group_size", minimum=2)
    check(len(rewards) % group_size == 0, "group_size", group_size,
          f"the {len(rewards)} rewards must split into whole groups")
    r = rewards.float().view(-1, group_size)
    centred = r - r.mean(-1, keepdim=True)
    std = r.std(-1, keepdim=True)
    return torch.where(std > 0, centred / std.clamp(min=1e-12), torch.zeros_like(r)).flatten()


def paper_coefficients() -> tuple[float, float]:
    """InstructGPT's PPO-ptx coefficients (β for the KL penalty, γ for the pretraining term; App. C.4), read from
    the verified facts (``get_config("instructgpt").facts``)."""
    facts = get_config("instructgpt").facts
    return float(facts["kl_coef_beta"]), float(facts["ptx_coef_gamma"])
