"""Scaled dot-product attention with grouped key/value heads (Vaswani §3.2; Ainslie et al. 2023).

One module covers multi-head (``n_kv = n_heads``), grouped-query (``1 < n_kv < n_heads``) and multi-query
(``n_kv = 1``) attention. Query head ``h`` reads KV head ``h // (n_heads / n_kv)``: contiguous groups, as HF's
``repeat_kv``. Optional: biases, QK-Norm (Qwen3, before RoPE), a custom scale, a sliding window of W keys
(including the query itself), boolean or additive masks, a KV cache for decoding, and cross-attention (Vaswani
§3.2.3: queries from the decoder, keys and values from the encoder output ``kv``).

Masks: ``True`` / ``0.0`` = may attend. A query row with no allowed key outputs zeros instead of NaN.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .._checks import check, check_int
from .norm import RMSNorm
from .position import apply_rope


class KVCache:
    """Keys and values one layer has seen so far, each [B, n_kv, T, head_dim].

    ``len(cache)`` is the number of tokens seen (the next token's position). A sliding-window layer keeps only
    the last ``window - 1`` of them, all the next query can reach (a rolling buffer, as HF
    ``DynamicSlidingWindowLayer``), so ``nbytes`` stops growing at the window.
    """

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.seen = 0

    def __len__(self) -> int:
        return self.seen

    @property
    def nbytes(self) -> int:
        """Bytes the cache holds (keys + values; for MLA the latents and the shared RoPE keys)."""
        return 0 if self.k is None else self.k.nbytes + self.v.nbytes

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the batch rows ``index`` (beam search: each surviving beam continues its parent's cache)."""
        if self.k is not None:
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)

    def append(self, k: torch.Tensor, v: torch.Tensor, keep: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the new tokens' keys and values; return the kept earlier ones followed by the new ones. ``keep``:
        how many of the latest tokens to hold afterwards (None: all)."""
        self.seen += k.shape[2]
        k = k if self.k is None else torch.cat([self.k, k], dim=2)
        v = v if self.v is None else torch.cat([self.v, v], dim=2)
        start = 0 if keep is None else max(0, k.shape[2] - keep)
        self.k, self.v = k[:, :, start:], v[:, :, start:]
        return k, v


def causal_mask(q_len: int, k_len: int, window: int | None = None, device: torch.device | None = None) -> torch.Tensor:
    """Bool [q_len, k_len]: the last ``q_len`` of ``k_len`` positions attend to themselves and earlier keys,
    at most ``window`` keys (including themselves) when a window is given."""
    i = torch.arange(k_len - q_len, k_len, device=device)[:, None]  # absolute query positions
    j = torch.arange(k_len, device=device)[None, :]
    allowed = j <= i
    if window is not None:
        allowed &= j > i - window
    return allowed


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, n_kv, T, d] -> [B, n_kv·n_rep, T, d], each KV head repeated for its group (HF ``repeat_kv``)."""
    return x.repeat_interleave(n_rep, dim=1)


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool (True = attend) or additive float mask -> additive float mask with a finite minimum (no NaN)."""
    lowest = torch.finfo(dtype).min
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, lowest)
    return mask.to(dtype).clamp(min=lowest)  # -inf -> lowest finite value


class Attention(nn.Module):
    """Multi-head attention with ``num_kv_heads`` key/value heads (HF ``LlamaAttention`` / ``Qwen3Attention``)."""

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int | None = None, head_dim: int | None = None,
                 bias: bool = False, qk_norm: bool = False, norm_eps: float = 1e-6, scale: float | None = None,
                 sliding_window: int | None = None, dropout: float = 0.0, out_bias: bool | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads or num_heads
        self.head_dim = head_dim or hidden_size // num_heads
        self.scale = scale if scale is not None else self.head_dim ** -0.5
        self.sliding_window, self.dropout = sliding_window, dropout
        self.q_proj = nn.Linear(hidden_size, num_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden_size, self.num_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(num_heads * self.head_dim, hidden_size, bias=bias if out_bias is None else out_bias)
        self.q_norm = RMSNorm(self.head_dim, norm_eps) if qk_norm else None  # one weight shared by all heads
        self.k_norm = RMSNorm(self.head_dim, norm_eps) if qk_norm else None
        self.keep_weights = False  # set True to store .logits and .weights of the next forward (viewers)
        self.logits: torch.Tensor | None = None  # [B, heads, T, T_keys] scaled scores q·k/sqrt(d), before masking
        self.weights: torch.Tensor | None = None  # [B, heads, T, T_keys] attention probabilities

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                mask: torch.Tensor | None = None, cache: KVCache | None = None, causal: bool = True,
                rope_interleaved: bool = False, kv: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, hidden] -> [B, T, hidden].

        rope: ``(cos, sin)`` for the T new positions, or None; mask: bool or additive, broadcastable to
        [B, heads, T, T_keys], combined with the causal / sliding-window structure when ``causal``.
        kv: [B, S, hidden] for cross-attention (keys and values from it, not from x; use ``causal=False``). With a
        cache, its keys and values are computed on the first call only and read back on the later ones.
        """
        q = rearrange(self.q_proj(x), "b t (h d) -> b h t d", d=self.head_dim)
        if kv is not None and cache is not None and len(cache):  # cross-attention: the encoder output is fixed
            k, v = cache.k, cache.v
        else:
            src = x if kv is None else kv
            k = rearrange(self.k_proj(src), "b s (h d) -> b h s d", d=self.head_dim)
            v = rearrange(self.v_proj(src), "b s (h d) -> b h s d", d=self.head_dim)
            if self.k_norm is not None:  # QK-Norm comes before RoPE (Qwen3)
                k = self.k_norm(k)
            if rope is not None:
                k = apply_rope(k, *rope, rope_interleaved)
            if cache is not None:
                k, v = cache.append(k, v, None if self.sliding_window is None else self.sliding_window - 1)
        if self.q_norm is not None:
            q = self.q_norm(q)
        if rope is not None:
            q = apply_rope(q, *rope, rope_interleaved)
        q_len, k_len = q.shape[2], k.shape[2]
        if mask is not None and mask.shape[-1] > k_len:  # a rolling cache dropped the keys beyond the window
            mask = mask[..., -k_len:]
        gqa = self.num_kv_heads != self.num_heads
        drop = self.dropout if self.training else 0.0
        plain = self.sliding_window is None and (q_len == k_len or q_len == 1)  # SDPA's own causal flag suffices
        banded = (causal and self.sliding_window is not None and q_len == k_len and q_len >= 4 * self.sliding_window
                  and drop == 0.0)  # a narrow band: compute only its scores
        if mask is None and not self.keep_weights and banded:
            out = banded_attention(q, k, v, self.sliding_window, self.scale)
        elif mask is None and not self.keep_weights and (plain or not causal):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal and q_len > 1, scale=self.scale,
                                                 enable_gqa=gqa, dropout_p=drop)
        else:
            lowest = torch.finfo(q.dtype).min
            bias = torch.zeros((), dtype=q.dtype, device=x.device)
            if causal:
                bias = _additive(causal_mask(q_len, k_len, self.sliding_window, x.device), q.dtype)
            if mask is not None:
                bias = (bias + _additive(mask, q.dtype)).clamp(min=lowest)
            empty = (bias <= lowest / 2).all(dim=-1, keepdim=True)  # query rows with no allowed key
            if self.keep_weights:
                n_rep = self.num_heads // self.num_kv_heads
                scores = q @ repeat_kv(k, n_rep).transpose(-1, -2) * self.scale
                probs = torch.softmax(scores + bias, dim=-1).masked_fill(empty, 0.0)
                self.logits, self.weights = scores.detach(), probs.detach()
                out = probs @ repeat_kv(v, n_rep)
            else:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale, enable_gqa=gqa,
                                                     dropout_p=drop).masked_fill(empty, 0.0)
        return self.o_proj(rearrange(out, "b h t d -> b t (h d)"))


def banded_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, scale: float | None = None,
                     block: int | None = None) -> torch.Tensor:
    """Causal sliding-window attention that computes only the scores near the band (Beltagy et al. 2020 §3.2;
    GPT-3's "locally banded" layers, Brown et al. 2020 §2.1). Equals SDPA with ``masks.sliding_window(T, window)``.

    q [B, H, T, D]; k, v [B, H_kv, T, D] with H a multiple of H_kv (query head h reads KV head h // (H / H_kv)).
    ``window`` keys per query, the query itself included (key j is seen by query i iff i - window < j <= i).

    The queries are cut into blocks of ``block`` rows (default: the window, between 16 and 64). Block b needs only
    the ``block + window - 1`` keys ending at its last row; they are read from k and v as an overlapping strided
    view (``Tensor.unfold``: no gather, no copy), and all blocks go through one SDPA call with the same
    [block, block + window - 1] band mask. The first rows, whose window would reach before position 0, are a small
    dense SDPA. Work: ``T · (block + window - 1)`` scores instead of SDPA's ``T²`` (a mask alone saves nothing:
    SDPA with a boolean mask still computes every score); memory grows linearly in T. Output [B, H, T, D].
    """
    check(isinstance(q, torch.Tensor) and q.dim() == 4, "q.shape", tuple(getattr(q, "shape", ())), "must be [B, H, T, D]")
    B, H, T, D = q.shape
    check(k.dim() == 4 and k.shape == v.shape and k.shape[0] == B and k.shape[2:] == (T, D), "k.shape", tuple(k.shape),
          f"k and v must be [B={B}, H_kv, T={T}, D={D}] (causal self-attention: as many keys as queries)")
    H_kv = k.shape[1]
    check(H % H_kv == 0, "k.shape[1]", H_kv, f"the query heads H={H} must be a multiple of the KV heads")
    check_int(window, "window", minimum=1)
    block = max(16, min(64, window)) if block is None else check_int(block, "block", minimum=1)
    scale = D ** -0.5 if scale is None else scale
    gqa = H != H_kv
    head = min(T, -(-(window - 1) // block) * block)                # rows whose window starts before position 0
    first = F.scaled_dot_product_attention(q[:, :, :head], k[:, :, :head], v[:, :, :head], scale=scale, enable_gqa=gqa,
                                           attn_mask=causal_mask(head, head, window, q.device))
    if head == T:
        return first
    L, rep = block + window - 1, H // H_kv                            # keys per block, query heads per KV head
    nb = -(-(T - head) // block)
    pad = nb * block - (T - head)                                     # zero rows at the end: beyond every real query
    k_tail = F.pad(k[:, :, head - window + 1:], (0, 0, 0, pad))       # [B, H_kv, window - 1 + nb·block, D]
    v_tail = F.pad(v[:, :, head - window + 1:], (0, 0, 0, pad))
    k_win = k_tail.unfold(2, L, block).transpose(-1, -2).flatten(0, 1)   # [B·H_kv, nb, L, D]: a strided view
    v_win = v_tail.unfold(2, L, block).transpose(-1, -2).flatten(0, 1)
    qb = F.pad(q[:, :, head:], (0, 0, 0, pad)).view(B, H_kv, rep, nb, block, D)
    qb = qb.transpose(2, 3).reshape(B * H_kv, nb, rep * block, D)     # the rep heads of a group share the keys
    r = torch.arange(block, device=q.device)[:, None]                 # query row in its block
    c = torch.arange(L, device=q.device)[None, :]                     # key column in the block's window
    band = ((c >= r) & (c <= r + window - 1)).repeat(rep, 1)          # i - window < j <= i, [rep·block, L]
    out = F.scaled_dot_product_attention(qb, k_win, v_win, attn_mask=band, scale=scale)
    out = out.view(B, H_kv, nb, rep, block, D).transpose(2, 3).reshape(B, H, nb * block, D)
    return torch.cat([first, out[:, :, :T - head]], dim=2)
