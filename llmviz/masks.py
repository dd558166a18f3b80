"""Sparse and structured attention masks, one small builder per paper.

Every builder returns a bool Tensor ``[T, T]``; ``mask[i, j] = True`` means query row ``i`` may attend to
key column ``j``. Conventions follow ``shared/reference/algorithms.md`` §1 (Hugging Face semantics where
HF has the model). Causal (decoder) builders: ``causal``, ``sliding_window``, ``dilated_window``,
``strided``, ``fixed``, ``document``, ``lsh``. Bidirectional (encoder) by default, with ``causal=True`` to
intersect with the causal mask: ``longformer``, ``bigbird``. Every full pattern keeps the diagonal, so no
row is ever empty; only the single components ``part="stride"`` / ``part="summary"`` may have empty rows.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor

from ._checks import check, check_int

__all__ = [
    "causal", "sliding_window", "dilated_window", "strided", "fixed", "longformer", "bigbird",
    "document", "doc_ids_from_lengths", "lsh_buckets", "lsh", "gpt3_layers",
    "density", "causal_fraction", "flops_saved", "reachability", "hops_to_full",
]


def _grid(T: int) -> tuple[Tensor, Tensor]:
    """Query index i [T, 1] and key index j [1, T]; broadcasting them gives [T, T]."""
    check_int(T, "T", minimum=1)
    return torch.arange(T)[:, None], torch.arange(T)[None, :]


def causal(T: int) -> Tensor:
    """Dense causal mask ``j <= i`` (GPT-2/3): row i has i+1 keys, T(T+1)/2 in all."""
    i, j = _grid(T)
    return j <= i                                                       # [T, T]


def sliding_window(T: int, window: int) -> Tensor:
    """Causal sliding window of ``window`` keys INCLUDING the query: ``i - window < j <= i``.

    HF semantics (Mistral §2 / ``sliding_window_causal_mask_function``, GPT-Neo local layers). The Mistral
    paper's words "between i-W and i" would give W+1 keys; we match HF. Row i has min(i+1, W) keys;
    nnz = T*W - W(W-1)/2 for T >= W.
    """
    i, j = _grid(T)
    check_int(window, "window", minimum=1)
    return (j <= i) & (j > i - window)                                  # [T, T]


def dilated_window(T: int, window: int, dilation: int) -> Tensor:
    """Causal dilated window (Longformer §3.1): ``window`` keys i, i-d, ..., i-(W-1)d (clipped at 0).

    The receptive field after L layers grows to L*d*W instead of L*W. ``dilation=1`` is ``sliding_window``.
    """
    i, j = _grid(T)
    check_int(window, "window", minimum=1)
    check_int(dilation, "dilation", minimum=1)
    back = i - j                                                        # [T, T] distance into the past
    return (back >= 0) & (back % dilation == 0) & (back <= (window - 1) * dilation)


def strided(T: int, stride: int, part: Literal["both", "local", "stride"] = "both") -> Tensor:
    """Sparse Transformer strided pattern (Child et al. 2019, §4.3), causal.

    Paper sets (the off-by-one we use): A(1)_i = {max(0, i-l) .. i} is the previous l positions AND the
    query, so **l+1** keys (the official code's ``local`` mode keeps only l); A(2)_i = {j <= i : (i-j) mod l
    == 0}. ``part="local"`` -> A(1), ``"stride"`` -> A(2), ``"both"`` -> A(1) ∪ A(2) (§5.2 "merged head").
    T=1024, l=32: A(1) 33,264, A(2) 16,896, union 48,144 pairs.
    """
    i, j = _grid(T)
    check_int(stride, "stride", minimum=1)
    check(part in ("both", "local", "stride"), "part", part, "part must be 'both', 'local' or 'stride'")
    is_causal = j <= i
    a1 = is_causal & (j >= i - stride)                                  # [T, T] l+1 keys incl. self
    a2 = is_causal & ((i - j) % stride == 0)                            # [T, T] every l-th key
    return {"local": a1, "stride": a2, "both": a1 | a2}[part]


def fixed(T: int, block: int, summary: int,
          part: Literal["both", "block", "summary"] = "both") -> Tensor:
    """Sparse Transformer fixed pattern (Child et al. 2019, §4.3), causal.

    A(1)_i = {j <= i : j // l == i // l} (own block up to the query); A(2)_i = {j <= i : j mod l >= l - c},
    the last c = ``summary`` cells of every block (``j mod l`` never equals l, so exactly c cells).
    ``part="block"`` -> A(1), ``"summary"`` -> A(2), ``"both"`` -> union. The paper uses one summary
    sub-block for all heads here; T=1024, l=128, c=8: A(1) 66,048, A(2) 28,960, union 94,720.
    """
    i, j = _grid(T)
    check_int(block, "block", minimum=1)
    check_int(summary, "summary", minimum=0, maximum=block)
    check(part in ("both", "block", "summary"), "part", part, "part must be 'both', 'block' or 'summary'")
    is_causal = j <= i
    a1 = is_causal & (j // block == i // block)                         # [T, T] own block
    a2 = is_causal & (j % block >= block - summary)                     # [T, T] summary columns
    return {"block": a1, "summary": a2, "both": a1 | a2}[part]


def longformer(T: int, window: int, global_idx: Sequence[int] | Tensor = (), *,
               dilation: int = 1, causal: bool = False) -> Tensor:
    """Longformer (Beltagy et al. 2020, §3.1): banded window + symmetric global attention.

    ``window`` is HF's ``attention_window`` (must be even): each token sees |i-j| <= window/2 (window+1
    keys), every ``dilation``-th position only. Tokens in ``global_idx`` attend everywhere and are attended
    by everyone. Bidirectional (encoder) by default; ``causal=True`` intersects with j <= i.
    T=1024, window=512, global_idx=[0]: 461,054 pairs.
    """
    i, j = _grid(T)
    check_int(window, "window", minimum=2)
    check(window % 2 == 0, "window", window, "window must be even (HF attention_window; window/2 per side)")
    check_int(dilation, "dilation", minimum=1)
    idx = global_idx.tolist() if isinstance(global_idx, Tensor) else list(global_idx)
    for k, g in enumerate(idx):
        check_int(g, f"global_idx[{k}]", minimum=0, maximum=T - 1)
    dist = (i - j).abs()                                                # [T, T]
    m = (dist <= dilation * (window // 2)) & (dist % dilation == 0)     # [T, T] banded, diagonal included
    g = torch.zeros(T, dtype=torch.bool)
    g[idx] = True                                                       # [T] global tokens
    m = m | g[:, None] | g[None, :]                                     # global rows and columns
    return m & (j <= i) if causal else m


def bigbird(T: int, block: int, n_random: int, seed: int = 0, *, causal: bool = False) -> Tensor:
    """BigBird ITC block-sparse pattern (Zaheer et al. 2020, §2 and App. D; HF ``BigBirdBlockSparseAttention``).

    T must be a multiple of ``block``; nb = T // block blocks. Blocks 0 and nb-1 are global (full rows and
    columns); every other query block attends to blocks q-1, q, q+1 and ``n_random`` random blocks drawn
    (seeded ``torch.Generator``) from outside its window and the global blocks. Bidirectional by default;
    ``causal=True`` intersects with j <= i. T=1024, block=64: r=0 -> 409,600 and r=3 -> 581,632 (any seed).
    """
    check_int(T, "T", minimum=1)
    check_int(block, "block", minimum=1)
    check(T % block == 0, "block", block, f"T={T} must be a multiple of block (HF pads the input)")
    nb = T // block
    check_int(n_random, "n_random", minimum=0)
    check(n_random == 0 or n_random <= nb - 5, "n_random", n_random,
          f"n_random must be <= T//block - 5 = {nb - 5} (random blocks lie outside window and global blocks)")
    check_int(seed, "seed", minimum=0)
    gen = torch.Generator().manual_seed(seed)
    layout = torch.zeros(nb, nb, dtype=torch.bool)                      # [nb, nb] block layout
    layout[[0, -1], :] = True
    layout[:, [0, -1]] = True
    for q in range(1, nb - 1):
        layout[q, q - 1:q + 2] = True                                   # 3-block window
        cand = torch.tensor([k for k in range(1, nb - 1) if abs(k - q) > 1], dtype=torch.long)
        if n_random:
            layout[q, cand[torch.randperm(len(cand), generator=gen)[:n_random]]] = True
    m = layout.repeat_interleave(block, 0).repeat_interleave(block, 1)  # [T, T]
    i, j = _grid(T)
    return m & (j <= i) if causal else m


def document(doc_ids: Tensor | Sequence[int]) -> Tensor:
    """Llama 3 document mask (Dubey et al. 2024, §3.2): causal AND same document (block-diagonal).

    ``doc_ids``: integer ids [T], non-decreasing (packed documents are contiguous). Pairs = Σ L_d(L_d+1)/2;
    lengths 300/500/224 -> 195,600. HF gets the same mask from position_ids restarting at 0 per document.
    """
    d = doc_ids if isinstance(doc_ids, Tensor) else torch.as_tensor(doc_ids)
    check(d.dim() == 1 and d.numel() >= 1, "doc_ids", tuple(d.shape), "doc_ids must be a non-empty 1-D tensor")
    check(not d.is_floating_point() and not d.is_complex() and d.dtype != torch.bool, "doc_ids", d.dtype,
          "doc_ids must have an integer dtype")
    check(bool((d[1:] >= d[:-1]).all()), "doc_ids", d.tolist()[:20], "doc_ids must be non-decreasing")
    i, j = _grid(d.numel())
    return (j <= i) & (d[:, None] == d[None, :])                         # [T, T]


def doc_ids_from_lengths(lengths: Sequence[int] | Tensor) -> Tensor:
    """Document lengths [L_0, L_1, ...] -> LongTensor [ΣL] of ids 0,0,..,1,1,.. for ``document``."""
    lens = lengths.tolist() if isinstance(lengths, Tensor) else list(lengths)
    check(len(lens) >= 1, "lengths", lens, "lengths must name at least one document")
    for k, n in enumerate(lens):
        check_int(n, f"lengths[{k}]", minimum=1)
    return torch.repeat_interleave(torch.arange(len(lens)), torch.tensor(lens))


def _check_x(x: Tensor) -> None:
    check(isinstance(x, Tensor) and x.dim() == 2 and x.shape[0] >= 1 and x.shape[1] >= 1, "x",
          tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__, "x must be a tensor of shape [T, d]")
    check(x.is_floating_point(), "x", x.dtype, "x must be a floating-point tensor")


def lsh_buckets(x: Tensor, n_buckets: int, seed: int = 0) -> Tensor:
    """Angular LSH (Reformer, Kitaev et al. 2020, §2): R ~ N(0,1) [d, b/2], bucket = argmax([xR ; -xR]).

    x: FloatTensor [T, d] (shared-QK vectors). Returns LongTensor [T] of ids in [0, n_buckets).
    """
    _check_x(x)
    check_int(n_buckets, "n_buckets", minimum=2)
    check(n_buckets % 2 == 0, "n_buckets", n_buckets, "n_buckets must be even (argmax over [xR; -xR])")
    check_int(seed, "seed", minimum=0)
    gen = torch.Generator().manual_seed(seed)
    R = torch.randn(x.shape[1], n_buckets // 2, generator=gen)          # [d, b/2] random rotation
    xr = x.detach().float().cpu() @ R                                   # [T, b/2]
    return torch.cat([xr, -xr], dim=-1).argmax(dim=-1)                   # [T]


def lsh(x: Tensor, n_buckets: int, chunk: int, seed: int = 0, *,
        same_bucket: bool = True, allow_self: bool = True) -> Tensor:
    """Reformer shared-QK LSH attention, one hash round (Kitaev et al. 2020, §2), causal.

    Sort tokens by (bucket, position) (stable), cut the sorted order into chunks of ``chunk``, and let each
    token attend to its own chunk and the previous one (not cyclic, as in the paper; HF wraps around).
    ``same_bucket=True`` keeps the paper's ideal P_i (same bucket only; HF drops this). Causality uses
    original positions. Self: by default a token may always attend to itself (Reformer instead penalises
    self with -1e5 and uses it only when nothing else is available: ``allow_self=False`` keeps the diagonal
    only in rows that would otherwise be empty). Either way every row is non-empty.
    """
    check_int(chunk, "chunk", minimum=1)
    buckets = lsh_buckets(x, n_buckets, seed)                            # [T]
    T = buckets.numel()
    pos = torch.arange(T)
    order = torch.argsort(buckets * T + pos)                             # [T] sort by (bucket, position)
    s = torch.empty_like(order)
    s[order] = pos                                                       # s[i] = sorted slot of token i
    c = s // chunk                                                       # [T] chunk of each token
    m = (c[None, :] == c[:, None]) | (c[None, :] == c[:, None] - 1)      # [T, T] own + previous chunk
    if same_bucket:
        m &= buckets[None, :] == buckets[:, None]
    m &= pos[None, :] <= pos[:, None]                                    # causal on original positions
    eye = torch.eye(T, dtype=torch.bool)
    if not allow_self:
        empty = ~(m & ~eye).any(dim=1)                                   # [T] rows with no other key
        return (m & ~eye) | (eye & empty[:, None])
    return m | eye


def gpt3_layers(T: int, n_layers: int, window: int,
                first: Literal["dense", "local"] = "dense") -> list[Tensor]:
    """GPT-3 (Brown et al. 2020, §2.1): layers alternate dense causal and locally banded attention.

    The band width is NOT published; ``window`` is a free choice (banded layer = ``sliding_window``). Nor is
    the order: ``first`` picks it (GPT-Neo, the runnable stand-in, starts with "global" = dense).
    """
    check_int(n_layers, "n_layers", minimum=1)
    check(first in ("dense", "local"), "first", first, "first must be 'dense' or 'local'")
    dense, local = causal(T), sliding_window(T, window)
    kinds = [dense, local] if first == "dense" else [local, dense]
    return [kinds[k % 2].clone() for k in range(n_layers)]


def _check_mask(mask: Tensor, name: str = "mask") -> Tensor:
    check(isinstance(mask, Tensor) and mask.dtype == torch.bool, name,
          getattr(mask, "dtype", type(mask).__name__), f"{name} must be a bool tensor")
    check(mask.dim() == 2 and mask.shape[0] == mask.shape[1] and mask.shape[0] >= 1, name,
          tuple(mask.shape), f"{name} must be square [T, T] with T >= 1")
    return mask


def density(mask: Tensor) -> float:
    """Fraction of all T² pairs that are allowed: nnz / T²."""
    T = _check_mask(mask).shape[0]
    return mask.sum().item() / T**2


def causal_fraction(mask: Tensor) -> float:
    """nnz / (T(T+1)/2): size relative to dense causal (1.0 for ``causal``; > 1 possible if bidirectional)."""
    T = _check_mask(mask).shape[0]
    return mask.sum().item() / (T * (T + 1) / 2)


def flops_saved(mask: Tensor) -> float:
    """1 - nnz / nnz(dense causal): share of QK^T / softmax·V work saved against dense causal attention.

    Assumes a kernel that skips masked pairs. A bidirectional mask with more than T(T+1)/2 pairs gives a
    NEGATIVE value (it costs more than dense causal); dense bidirectional gives 1 - 2T/(T+1) < 0.
    """
    return 1.0 - causal_fraction(mask)


def reachability(masks_or_mask: Tensor | Sequence[Tensor], n_layers: int | None = None) -> Tensor:
    """Which input positions j can influence output position i after stacking attention layers.

    Each layer maps with A_l = mask_l | I (the residual stream keeps a token's own path), so the stack's
    reach is the boolean product A_L @ ... @ A_1 (a path i <- k <- j). Pass a list of per-layer masks, or
    one mask with ``n_layers`` (default 1). Why sparse patterns are enough (Child et al. §4.2): with strided
    A(2) then local A(1), any j <= i is two hops away (jump back in steps of l to within l of j, then one
    local step), while a window of W only moves W-1 positions per layer, so it needs ceil((T-1)/(W-1))
    layers (the "receptive field grows with depth" argument of Longformer §3.1 and Mistral §2).
    """
    if isinstance(masks_or_mask, Tensor):
        n = 1 if n_layers is None else check_int(n_layers, "n_layers", minimum=1)
        layers = [_check_mask(masks_or_mask)] * n
    else:
        layers = list(masks_or_mask)
        check(len(layers) >= 1, "masks_or_mask", layers, "give at least one mask")
        check(n_layers is None or n_layers == len(layers), "n_layers", n_layers,
              "n_layers must be None (or len(masks)) when a list of masks is given")
        for k, m in enumerate(layers):
            _check_mask(m, f"masks_or_mask[{k}]")
            check(m.shape == layers[0].shape, f"masks_or_mask[{k}]", tuple(m.shape), "all masks need one shape")
    eye = torch.eye(layers[0].shape[0], dtype=torch.bool)
    reach = layers[0] | eye                                              # [T, T] after layer 1
    for m in layers[1:]:
        reach = ((m | eye).float() @ reach.float()) > 0                  # [T, T] one more hop
    return reach


def hops_to_full(mask: Tensor, max_layers: int | None = None) -> int | None:
    """Smallest L such that L stacked copies of ``mask`` reach every pair, or None if they never do (or not
    within ``max_layers``).

    "Every pair" = all causal pairs j <= i when ``mask`` is causal, else all T² pairs. Reach only grows with depth
    (each layer keeps the residual identity) and stops growing by depth T - 1, so a binary search over the powers
    R^(2^k) (``reachability([P, P])`` squares P) needs O(log T) boolean products, not O(T).
    E.g. strided(64, 8) -> 2, sliding_window(64, 8) -> 9.
    """
    T = _check_mask(mask).shape[0]
    if max_layers is not None:
        check_int(max_layers, "max_layers", minimum=1)
    cap = max(1, T - 1) if max_layers is None else min(max_layers, max(1, T - 1))
    full = causal(T)
    target = full if not (mask & ~full).any() else torch.ones(T, T, dtype=torch.bool)

    def covers(reach: Tensor) -> bool:
        return not bool((target & ~reach).any())

    powers = [reachability(mask)]  # powers[k] = reach after 2^k layers
    while 2 ** (len(powers) - 1) < cap:
        powers.append(reachability([powers[-1], powers[-1]]))
    reach, depth = None, 0  # the deepest depth <= cap that does not cover yet
    for k in reversed(range(len(powers))):
        candidate = powers[k] if reach is None else reachability([reach, powers[k]])
        if depth + 2 ** k <= cap and not covers(candidate):
            reach, depth = candidate, depth + 2 ** k
    return depth + 1 if depth < cap else None
