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


def _start(model: nn.Module, input_ids: torch.Tensor, bos_id: int, eos_id: int, max_new_tokens: int) -> None:
    check(hasattr(model, "encode") and hasattr(model, "decode"), "model", type(model).__name__,
          "must be an encoder-decoder with encode() and decode() (llmviz.models.Transformer)")
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id)):
        check_int(value, name, minimum=0, maximum=model.cfg.vocab_size - 1)
    check_int(max_new_tokens, "max_new_tokens", minimum=1, maximum=model.cfg.max_position_embeddings - 1)


@torch.no_grad()
def greedy_decode(model: nn.Module, input_ids: torch.Tensor, bos_id: int, eos_id: int, max_new_tokens: int,
                  attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Encoder-decoder greedy decoding: encode the source once, then feed BOS and each argmax token to the decoder,
    reading earlier target tokens from the KV cache. Returns [B, 1 + steps] (BOS first; rows that ended keep
    emitting ``eos_id``; stops when every row has emitted it)."""
    _start(model, input_ids, bos_id, eos_id, max_new_tokens)
    model.eval()
    memory = model.encode(input_ids, attention_mask)
    cache = model.new_cache()
    out = torch.full((input_ids.shape[0], 1), bos_id, dtype=torch.long, device=input_ids.device)
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    for _ in range(max_new_tokens):
        nxt = model.decode(out[:, -1:], memory, attention_mask, cache)[:, -1].argmax(-1).masked_fill(done, eos_id)
        out = torch.cat([out, nxt[:, None]], dim=1)
        done |= nxt == eos_id
        if bool(done.all()):
            break
    return out


@torch.no_grad()
def beam_search(model: nn.Module, input_ids: torch.Tensor, bos_id: int, eos_id: int, max_new_tokens: int,
                beam_size: int = 4, length_penalty: float = 0.6) -> torch.Tensor:
    """Beam search for one source sentence ``input_ids`` [1, S] (Vaswani §6.1: beam 4, length penalty α = 0.6).

    Keeps the ``beam_size`` best partial translations by total log-probability; a hypothesis that emits EOS is
    finished and scored by ``log p / lp``, ``lp = ((5 + length) / 6) ** α`` (Wu et al. 2016, eq. 14). Stops when no
    live beam (scored with the current length's penalty) beats the best finished hypothesis, or after
    ``max_new_tokens``, and returns the best one, [1, L] with BOS first. ``beam_size=1`` gives exactly the greedy
    translation.
    """
    _start(model, input_ids, bos_id, eos_id, max_new_tokens)
    check(input_ids.dim() == 2 and input_ids.shape[0] == 1, "input_ids.shape", tuple(input_ids.shape),
          "beam search translates one sentence: [1, source_len]")
    check_int(beam_size, "beam_size", minimum=1, maximum=model.cfg.vocab_size)
    check(isinstance(length_penalty, (int, float)) and length_penalty >= 0, "length_penalty", length_penalty,
          "α must be >= 0 (0 = no length normalisation)")
    model.eval()
    k = beam_size
    memory = model.encode(input_ids).expand(k, -1, -1)               # [k, S, H]: one copy per beam
    cache = model.new_cache()
    beams = torch.full((k, 1), bos_id, dtype=torch.long, device=input_ids.device)
    scores = torch.full((k,), float("-inf"), device=input_ids.device)
    scores[0] = 0.0                                                    # all beams start equal: expand only one
    finished: list[tuple[float, torch.Tensor]] = []
    for step in range(1, max_new_tokens + 1):
        logp = torch.log_softmax(model.decode(beams[:, -1:], memory, cache=cache)[:, -1].float(), dim=-1)
        top, flat = (scores[:, None] + logp).flatten().topk(2 * k)    # 2k candidates: k may end in EOS
        parents, tokens = flat // logp.shape[1], flat % logp.shape[1]
        keep = []
        for s, parent, token in zip(top.tolist(), parents.tolist(), tokens.tolist()):
            if token == eos_id:
                seq = torch.cat([beams[parent], beams.new_tensor([eos_id])])
                finished.append((s / ((5 + step) / 6) ** length_penalty, seq))
            else:
                keep.append((s, parent, token))
            if len(keep) == k:
                break
        # stop when the best live beam, scored with the current length penalty, no longer beats the best finished
        # hypothesis (exact for α = 0: log-probabilities only fall as a hypothesis grows). Stopping once k hypotheses
        # have finished is wrong: a label-smoothed model gives EOS some probability at every step, so unlikely
        # short hypotheses would fill the list before the likely one ends.
        if finished and max(f[0] for f in finished) >= keep[0][0] / ((5 + step) / 6) ** length_penalty:
            break
        index = beams.new_tensor([p for _, p, _ in keep])
        for self_cache, cross_cache in cache:
            self_cache.reorder(index)
            cross_cache.reorder(index)
        beams = torch.cat([beams[index], beams.new_tensor([t for _, _, t in keep])[:, None]], dim=1)
        scores = torch.tensor([s for s, _, _ in keep], device=input_ids.device)
    if not finished:  # nothing ended within max_new_tokens: the best unfinished hypothesis
        length = beams.shape[1] - 1
        finished = [(float(s) / ((5 + length) / 6) ** length_penalty, b) for s, b in zip(scores, beams)]
    return max(finished, key=lambda f: f[0])[1][None]
