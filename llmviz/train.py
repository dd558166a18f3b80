"""A small training loop for the notebooks: AdamW, a progress bar, a loss history, and a loss plot."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn
from tqdm.auto import tqdm

from ._checks import check_int

Batch = tuple[torch.Tensor, torch.Tensor]


def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: logits [B, T, V] against targets [B, T]."""
    logits = model(x)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())


def noam_schedule(d_model: int, warmup: int) -> Callable[[int], float]:
    """Vaswani et al. §5.3, eq. 3: ``lrate = d_model^-0.5 · min(step^-0.5, step · warmup^-1.5)`` (step from 1):
    a linear warm-up for ``warmup`` steps, then decay as 1/sqrt(step). Use with ``train(lr=1.0, schedule=...)``."""
    check_int(d_model, "d_model", minimum=1)
    check_int(warmup, "warmup", minimum=1)
    return lambda step: d_model ** -0.5 * min((step + 1) ** -0.5, (step + 1) * warmup ** -1.5)


def train(model: nn.Module, next_batch: Callable[[int], Batch], steps: int, lr: float = 3e-3,
          weight_decay: float = 0.1, loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] = lm_loss,
          desc: str = "training", progress: bool = True, schedule: Callable[[int], float] | None = None,
          betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8) -> list[float]:
    """Train ``model`` for ``steps`` AdamW steps on ``next_batch(step) -> (x, y)``; returns the loss per step.

    The learning rate is ``lr · schedule(step)``; by default it warms up linearly over the first 10% of steps and
    decays with a cosine to 10%. (The 2017 Transformer: ``lr=1.0, schedule=noam_schedule(d, 4000),
    betas=(0.9, 0.98), eps=1e-9``.) Gradients are clipped to norm 1.
    """
    check_int(steps, "steps", minimum=1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)
    warm = max(1, steps // 10)
    schedule = schedule or (lambda s: min(1.0, (s + 1) / warm) * (
        0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * s / steps)).item())))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    model.train()
    losses = []
    for step in tqdm(range(steps), desc=desc, disable=not progress, mininterval=0.5):
        x, y = next_batch(step)
        loss = loss_fn(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


def plot_losses(fig: Figure, histories: dict[str, list[float]], title: str = "training loss",
                smooth: int = 10) -> None:
    """One line per run: the loss per step, smoothed by a moving average of ``smooth`` steps."""
    ax = fig.add_subplot()
    for (name, losses), color in zip(histories.items(), ("#0072B2", "#D55E00", "#009E73", "#CC79A7")):
        t = torch.tensor(losses)
        k = max(1, min(smooth, len(t)))
        avg = t.unfold(0, k, 1).mean(-1)
        ax.plot(range(k - 1, len(t)), avg, color=color, label=name, lw=2)
    ax.set_xlabel("step", fontsize=12)
    ax.set_ylabel("cross-entropy (nats / token)", fontsize=12)
    ax.tick_params(labelsize=11)
    ax.set_title(title, fontsize=14)
    ax.legend(fontsize=11)
