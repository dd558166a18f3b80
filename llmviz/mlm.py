"""BERT's masked-language-model objective (Devlin et al. 2018, §3.1 "Task #1: Masked LM" and Appendix A.1).

    select  each non-special token independently with probability ``prob`` (15%)
    of the selected:  80% -> [MASK],  10% -> a random token,  10% -> unchanged
    labels  = the original id at the selected positions, -100 everywhere else
    loss    = cross-entropy over the selected positions only (``ignore_index=-100``)

Why the 10% / 10%: [MASK] never appears when the model is fine-tuned, so a model that only ever saw [MASK] at
the positions it must predict would learn nothing useful about the vectors of real tokens there. Random and
kept tokens force it to keep a good representation of *every* input token (§3.1, Appendix C.2).

Selection follows Hugging Face ``DataCollatorForLanguageModeling`` (an independent Bernoulli draw per token);
Google's original ``create_pretraining_data.py`` instead picks exactly ``round(15% x length)`` positions per
sequence. Both HF and the original code draw the random replacement from the *whole* vocabulary, special tokens
included; here it is drawn from the non-special tokens only, so [PAD], [CLS], [SEP] or [MASK] can never appear
in a random slot (a reported learner bug).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from ._checks import check, check_int

IGNORE_INDEX = -100  # F.cross_entropy's default ignore_index: positions that carry no loss
__all__ = ["IGNORE_INDEX", "mask_tokens", "mlm_loss"]


def mask_tokens(input_ids: torch.Tensor, mask_id: int, vocab_size: int, special_ids: Iterable[int],
                prob: float = 0.15, mask_frac: float = 0.8, random_frac: float = 0.1,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's MLM corruption of ``input_ids`` [B, T] -> ``(inputs, labels)``, both LongTensor [B, T].

    Every token whose id is not in ``special_ids`` (give [CLS], [SEP], [PAD], [UNK] ... here: they are never
    selected; ``mask_id`` always counts as special) is selected with probability ``prob``. A selected token
    becomes ``mask_id`` with probability ``mask_frac``, a token drawn uniformly from the non-special ids in
    ``[0, vocab_size)`` with probability ``random_frac``, and stays as it is otherwise. ``labels`` holds the
    original id at the selected positions and ``IGNORE_INDEX`` (-100) everywhere else; ``inputs`` equals
    ``input_ids`` wherever nothing was selected. The input is not modified. Pass a seeded ``generator`` (CPU)
    for reproducible masks.

    >>> ids = torch.tensor([[2, 10, 11, 12, 3]])                    # [CLS] w w w [SEP]
    >>> inputs, labels = mask_tokens(ids, mask_id=4, vocab_size=20, special_ids=[0, 1, 2, 3, 4])
    """
    ok = isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2 and not input_ids.is_floating_point() \
        and not input_ids.is_complex() and input_ids.dtype != torch.bool
    check(ok, "input_ids", tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__,
          "must be an integer tensor [batch, seq_len]")
    check_int(vocab_size, "vocab_size", minimum=2)
    check_int(mask_id, "mask_id", minimum=0, maximum=vocab_size - 1)
    special_ids = list(special_ids)
    for s in special_ids:
        check_int(s, "special_ids", minimum=0, maximum=vocab_size - 1)
    special = torch.zeros(vocab_size, dtype=torch.bool)
    special[special_ids] = True
    special[mask_id] = True                                              # [MASK] itself is never a target
    allowed = (~special).nonzero().flatten()                             # the ids a random replacement may draw
    check(len(allowed) > 0, "special_ids", f"<{len(special_ids)} ids>", "leave at least one non-special token id")
    for name, p in (("prob", prob), ("mask_frac", mask_frac), ("random_frac", random_frac)):
        check(isinstance(p, (int, float)) and not isinstance(p, bool), name, p, f"{name} must be a number")
    check(0 < prob < 1, "prob", prob, "the selection probability must lie in (0, 1); BERT uses 0.15")
    check(0 <= mask_frac and 0 <= random_frac and mask_frac + random_frac <= 1, "mask_frac + random_frac",
          (mask_frac, random_frac), "both must be >= 0 and sum to at most 1; BERT uses 0.8 and 0.1")
    if input_ids.numel():
        lo, hi = int(input_ids.min()), int(input_ids.max())
        check(lo >= 0 and hi < vocab_size, "input_ids", hi if hi >= vocab_size else lo,
              f"token ids must lie in [0, vocab_size={vocab_size})")

    ids = input_ids.long()
    device = ids.device
    can_select = ~special.to(device)[ids]                                # [B, T]: special tokens never selected
    selected = (torch.rand(ids.shape, generator=generator) < prob).to(device) & can_select
    u = torch.rand(ids.shape, generator=generator).to(device)            # one draw splits the selected three ways
    to_mask = selected & (u < mask_frac)
    to_random = selected & (u >= mask_frac) & (u < mask_frac + random_frac)
    random_ids = allowed[torch.randint(len(allowed), ids.shape, generator=generator)].to(device)
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    inputs = torch.where(to_random, random_ids, inputs)                  # the remaining selected stay unchanged
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    return inputs, labels


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions with a label (``labels != -100``): logits [..., V], labels [...].

    Positions labelled -100 carry no loss (``F.cross_entropy(..., ignore_index=-100)``). With no labelled
    position at all the loss is 0 (not NaN), with a gradient of zeros.
    """
    check(tuple(logits.shape[:-1]) == tuple(labels.shape), "labels.shape", tuple(labels.shape),
          f"must equal logits.shape[:-1] = {tuple(logits.shape[:-1])}")
    flat = labels.reshape(-1)
    if not bool((flat != IGNORE_INDEX).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), flat, ignore_index=IGNORE_INDEX)
