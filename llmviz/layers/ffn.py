"""Position-wise feed-forward networks: the 2-layer MLP (Vaswani §3.3, GPT-2) and SwiGLU (Shazeer 2020)."""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "relu": F.relu,  # Transformer 2017
    "gelu": F.gelu,  # exact erf form (BERT): HF "gelu"
    "gelu_tanh": partial(F.gelu, approximate="tanh"),  # GPT-2: HF "gelu_new"
    "silu": F.silu,  # Swish_1, inside SwiGLU
}


class MLP(nn.Module):
    """``fc_out(act(fc_in(x)))`` with ``inner`` hidden units (GPT-2 ``c_fc`` / ``c_proj``)."""

    def __init__(self, dim: int, inner: int, activation: str = "gelu_tanh", bias: bool = True) -> None:
        super().__init__()
        self.fc_in = nn.Linear(dim, inner, bias=bias)
        self.fc_out = nn.Linear(inner, dim, bias=bias)
        self.act = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., dim] -> [..., dim]
        return self.fc_out(self.act(self.fc_in(x)))


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))``: GLU variant of Shazeer 2020 eq. 6 (HF ``LlamaMLP``).

    The activation goes on ``gate_proj`` only; swapping gate and up changes the function.
    """

    def __init__(self, dim: int, inner: int, bias: bool = False, activation: str = "silu") -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, inner, bias=bias)
        self.up_proj = nn.Linear(dim, inner, bias=bias)
        self.down_proj = nn.Linear(inner, dim, bias=bias)
        self.act = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., dim] -> [..., dim]
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
