"""One way to reject bad input: the error names the parameter, the value given and the rule it broke."""
from __future__ import annotations

from typing import Any

import torch


def check(ok: bool, name: str, value: Any, rule: str) -> None:
    """Raise ``ValueError("name=value is not allowed: rule")`` unless ``ok``.

    >>> check(3 > 0, "window", 3, "window must be >= 1")  # passes silently
    """
    if not ok:
        raise ValueError(f"{name}={value!r} is not allowed: {rule}")


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """Check that ``value`` is an int (not a bool) within ``[minimum, maximum]`` and return it."""
    ok_type = isinstance(value, int) and not isinstance(value, bool)
    lo = "" if minimum is None else f" >= {minimum}"
    hi = "" if maximum is None else f" <= {maximum}"
    rule = f"{name} must be an integer{lo}{' and' if lo and hi else ''}{hi}"
    check(ok_type, name, value, rule)
    check((minimum is None or value >= minimum) and (maximum is None or value <= maximum), name, value, rule)
    return value


def check_ids(ids: Any, name: str, vocab_size: int, max_len: int | None = None) -> None:
    """Token ids must be an integer tensor [batch, seq_len] of ids in ``[0, vocab_size)``, at most ``max_len`` long."""
    ok = isinstance(ids, torch.Tensor) and ids.dim() == 2 and not ids.is_floating_point() and ids.dtype != torch.bool
    check(ok, f"{name}.shape", tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__,
          "must be an integer tensor [batch, seq_len]")
    if ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        check(lo >= 0 and hi < vocab_size, name, hi if hi >= vocab_size else lo,
              f"token ids must lie in [0, vocab_size={vocab_size})")
    if max_len is not None:
        check(ids.shape[1] <= max_len, f"{name}.shape[1]", ids.shape[1],
              f"the position table has max_position_embeddings={max_len} entries")


def check_config(cfg: Any) -> None:
    """``cfg`` must be a ModelConfig (a preset's name is a common slip: ``get_config(name)`` turns it into one)."""
    from .configs import ModelConfig

    check(isinstance(cfg, ModelConfig), "cfg", cfg if isinstance(cfg, str) else type(cfg).__name__,
          "must be a ModelConfig; get_config(name) turns a preset name into one")
