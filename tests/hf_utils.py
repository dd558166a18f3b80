"""Tiny random Hugging Face checkpoints for equivalence tests (written with save_pretrained, read by load_hf)."""
from __future__ import annotations

from pathlib import Path

import torch

from llmviz.hf import non_trivial_weights


randomize = non_trivial_weights  # one definition, in llmviz.hf (the notebooks use it too)


def save_hf(model: torch.nn.Module, directory: Path, **kwargs) -> Path:
    model.save_pretrained(directory, **kwargs)
    return directory
