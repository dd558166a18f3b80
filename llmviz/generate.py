"""Autoregressive decoding with a KV cache: greedy, temperature, top-k and top-p (nucleus) sampling.

The prompt is processed once (prefill); then each step feeds only the newest token and reads the keys and
values of all earlier tokens from the cache, so a step costs O(T) instead of O(T²).
"""
from __future__ import annotations

import torch
from torch import nn

from ._checks import check, check_int


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the ``top_k`` largest and outside the smallest set whose probability
    reaches ``top_p`` (Holtzman et al. 2020). logits [B, vocab]."""
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cum - torch.softmax(sorted_logits, dim=-1) >= top_p  # mass before this token already reaches p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


@torch.no_grad()
def generate(model: nn.Module, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
             top_k: int | None = None, top_p: float | None = None, eos_token_id: int | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue ``input_ids`` [B, T] by up to ``max_new_tokens`` tokens; returns [B, T + new].

    ``temperature=0`` is greedy decoding (argmax), which equals HF's ``generate(do_sample=False)`` on the
    same weights. Otherwise tokens are sampled from ``softmax(logits / temperature)`` after top-k / top-p
    filtering. Sequences that emitted ``eos_token_id`` keep emitting it; decoding stops when all have.
    """
    check(input_ids.dim() == 2 and input_ids.shape[1] >= 1, "input_ids.shape", tuple(input_ids.shape),
          "must be [batch, seq_len] with at least one token")
    check_int(max_new_tokens, "max_new_tokens", minimum=0)
    check(isinstance(temperature, (int, float)) and temperature >= 0, "temperature", temperature,
          "must be >= 0 (0 = greedy)")
    if top_k is not None:
        check_int(top_k, "top_k", minimum=1)
    check(top_p is None or (isinstance(top_p, (int, float)) and 0 < top_p <= 1), "top_p", top_p, "must be in (0, 1]")
    limit = model.cfg.max_position_embeddings
    check(model.cfg.position == "rope" or input_ids.shape[1] + max_new_tokens <= limit, "max_new_tokens",
          max_new_tokens, f"prompt + new tokens must fit the learned positions ({limit})")
    was_training = model.training
    model.eval()
    cache = model.new_cache()
    out, step_input = input_ids, input_ids
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    for _ in range(max_new_tokens):
        logits = model(step_input, cache=cache)[:, -1, :].float()  # [B, vocab]
        if temperature == 0:
            nxt = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        if eos_token_id is not None:
            nxt = nxt.masked_fill(done, eos_token_id)
            done |= nxt == eos_token_id
        out = torch.cat([out, nxt[:, None]], dim=1)
        step_input = nxt[:, None]
        if eos_token_id is not None and bool(done.all()):
            break
    model.train(was_training)
    return out
