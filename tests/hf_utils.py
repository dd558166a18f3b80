"""Tiny random Hugging Face checkpoints for equivalence tests (written with save_pretrained, read by load_hf)."""
from __future__ import annotations

from pathlib import Path

import torch


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial weights: every parameter N(0, 0.1), norm weights around 1 ± 0.3 (so a norm on the wrong
    axis or a missing norm is caught), biases non-zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name or "ln_" in name:
                p.copy_(1.0 + 0.3 * noise if name.endswith("weight") else 0.1 * noise)
            else:
                p.copy_(0.1 * noise)
    return model


def save_hf(model: torch.nn.Module, directory: Path, **kwargs) -> Path:
    model.save_pretrained(directory, **kwargs)
    return directory
