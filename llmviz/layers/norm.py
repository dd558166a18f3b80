"""Layer normalisation (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.Module):
    """``y = (x - mean) / sqrt(var + eps) * weight + bias`` over the last axis (HF ``nn.LayerNorm``)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """``y = weight * x / sqrt(mean(x²) + eps)``: no centring, no bias (HF ``LlamaRMSNorm``).

    The statistics are computed in float32 and the result cast back, as HF does, so bf16 runs match.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def make_norm(kind: str, dim: int, eps: float) -> nn.Module:
    """``"layernorm"`` or ``"rmsnorm"`` (as ``ModelConfig.norm``)."""
    return LayerNorm(dim, eps) if kind == "layernorm" else RMSNorm(dim, eps)
