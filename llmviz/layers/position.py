"""Position information: sinusoidal (Vaswani §3.5), learned tables (GPT-2) and rotary embeddings (RoFormer).

RoPE rotates each pair of query/key dimensions by ``position · θ_i`` with ``θ_i = base^(-2i/d)``
(RoFormer eq. 15). Two memory layouts pair the dimensions differently (algorithms.md §2.2):

* rotate-half (HF Llama, Qwen, GPT-NeoX): pairs ``(x_i, x_{i+d/2})``;
* interleaved (RoFormer paper, GPT-J, Meta's original LLaMA, DeepSeek): pairs ``(x_2i, x_2i+1)``.

The context-extension scalings reproduce ``transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import check


def sinusoidal_positions(n_positions: int, dim: int, base: float = 10_000.0,
                         layout: str = "interleaved") -> torch.Tensor:
    """``PE[pos, 2i] = sin(pos / base^(2i/d))``, ``PE[pos, 2i+1] = cos(...)`` (Vaswani §3.5): [n, dim].

    ``layout="halves"`` stores the same numbers as ``[sin(pos·ω_0) … sin(pos·ω_{d/2-1}) | cos(pos·ω_0) …]``, as HF
    ``MarianSinusoidalPositionalEmbedding`` does: a fixed permutation of the features, so a model trained with
    one layout equals a model with the other once its first-layer weights are permuted the same way.
    """
    check(dim % 2 == 0, "dim", dim, "sinusoidal positions pair sin and cos, so dim must be even")
    check(layout in ("interleaved", "halves"), "layout", layout, "must be 'interleaved' or 'halves'")
    pos = torch.arange(n_positions, dtype=torch.float32)[:, None]
    angle = pos * base ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # [n, dim/2]: pos · ω_i
    if layout == "halves":
        return torch.cat([angle.sin(), angle.cos()], dim=-1)  # sin ... sin, cos ... cos
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2)  # sin, cos, sin, cos, ...


def rope_inv_freq(dim: int, base: float, scaling: dict | None = None, max_position_embeddings: int | None = None,
                  seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """``(inv_freq [dim/2], attention_factor)`` for RoPE, optionally scaled for a longer context.

    ``scaling["rope_type"]``: ``default``; ``linear`` (Position Interpolation, θ/s); ``dynamic`` (NTK-aware
    base change once ``seq_len`` exceeds ``max_position_embeddings``); ``yarn`` (Peng et al. 2023: keep fast
    pairs, divide slow pairs by s, ramp in between, temperature ``0.1 ln s + 1``); ``llama3`` (Llama 3.1: the
    same three bands cut by wavelength). Matches HF's ``ROPE_INIT_FUNCTIONS`` (tested).
    """
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))  # θ_i, i = 0..d/2-1
    kind = (scaling or {}).get("rope_type", "default")
    if kind == "default":
        return inv_freq, 1.0
    s = scaling.get("factor")
    if kind == "linear":
        return inv_freq / s, 1.0
    if kind == "dynamic":
        L = max_position_embeddings
        T = max(seq_len or L, L)
        base = base * ((s * T / L) - (s - 1)) ** (dim / (dim - 2))
        return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)), 1.0
    if kind == "llama3":
        L = scaling["original_max_position_embeddings"]
        lo, hi = scaling["low_freq_factor"], scaling["high_freq_factor"]
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > L / lo, inv_freq / s, inv_freq)  # slow pairs: interpolate
        smooth = (L / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / s + smooth * scaled
        medium = (wavelen >= L / hi) & (wavelen <= L / lo)
        return torch.where(medium, smoothed, scaled), 1.0
    # yarn
    L = scaling.get("original_max_position_embeddings") or max_position_embeddings
    if s is None:
        s = max_position_embeddings / L
    fast, slow = scaling.get("beta_fast") or 32, scaling.get("beta_slow") or 1

    def corr(n_rot: float) -> float:  # pair index whose wavelength fits n_rot turns into L
        return dim * math.log(L / (n_rot * 2 * math.pi)) / (2 * math.log(base))

    low, high = corr(fast), corr(slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / ((high - low) or 0.001)).clamp(0, 1)
    inv = (inv_freq / s) * ramp + inv_freq * (1 - ramp)

    def mscale(x: float, m: float = 1.0) -> float:
        return 1.0 if x <= 1 else 0.1 * m * math.log(x) + 1.0

    factor = scaling.get("attention_factor")
    if factor is None:
        m, m_all = scaling.get("mscale"), scaling.get("mscale_all_dim")
        factor = mscale(s, m) / mscale(s, m_all) if m and m_all else mscale(s)
    return inv, float(factor)


class RotaryEmbedding(nn.Module):
    """cos / sin tables for positions, in the rotate-half or interleaved layout (HF ``LlamaRotaryEmbedding``)."""

    def __init__(self, dim: int, base: float = 10_000.0, scaling: dict | None = None,
                 max_position_embeddings: int = 2048, interleaved: bool = False) -> None:
        super().__init__()
        check(dim % 2 == 0, "dim", dim, "RoPE rotates pairs of dimensions, so dim must be even")
        self.dim, self.base, self.scaling, self.interleaved = dim, base, scaling, interleaved
        self.max_position_embeddings = max_position_embeddings
        inv_freq, self.attention_factor = rope_inv_freq(dim, base, scaling, max_position_embeddings)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """positions: LongTensor [T] -> (cos, sin), each [T, dim]."""
        inv_freq = self.inv_freq
        if (self.scaling or {}).get("rope_type") == "dynamic":
            seq_len = int(positions.max()) + 1
            if seq_len > self.max_position_embeddings:  # grow the base only past the trained length
                inv_freq, _ = rope_inv_freq(self.dim, self.base, self.scaling, self.max_position_embeddings, seq_len)
        angles = positions.float()[:, None] * inv_freq[None, :]  # [T, dim/2], in float32 like HF
        if self.interleaved:
            angles = angles.repeat_interleave(2, dim=-1)  # θ0 θ0 θ1 θ1 ...
        else:
            angles = torch.cat([angles, angles], dim=-1)  # θ0 θ1 ... θ0 θ1 ...
        return (angles.cos() * self.attention_factor).to(dtype), (angles.sin() * self.attention_factor).to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last axis."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def rotate_every_two(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...) (RoFormer eq. 34, HF GPT-J)."""
    return torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool = False) -> torch.Tensor:
    """Rotate ``x`` [..., T, d] by the angles behind ``cos, sin`` [T, d] (RoFormer eq. 34)."""
    return x * cos + (rotate_every_two(x) if interleaved else rotate_half(x)) * sin
