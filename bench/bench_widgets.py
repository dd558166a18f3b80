"""Redraw latency of every explorer, per control: each control is moved through the values it offers (every
option of a dropdown, evenly spaced slider positions) and each ``.value`` change is timed, redraw and PNG
included. Goal: median under 100 ms and p90 under 200 ms.

    python bench/bench_widgets.py [--moves 20]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import ipywidgets as W
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llmviz import widgets  # noqa: E402


def offered_values(control: W.ValueWidget, moves: int) -> list:
    """Values the control offers, in an order that changes the value at every step."""
    if hasattr(control, "options") and control.options:
        opts = [o[1] if isinstance(o, tuple) else o for o in control.options]
        return (opts * (moves // len(opts) + 1))[:moves]
    if isinstance(control, W.Checkbox | W.ToggleButton):
        return [not control.value if i % 2 == 0 else control.value for i in range(moves)]
    if isinstance(control, W.FloatLogSlider):
        lo, hi = control.min, control.max
        return [control.base ** (lo + (hi - lo) * (i % 5) / 4) for i in range(moves)]
    if hasattr(control, "min"):
        lo, hi, step = control.min, control.max, control.step or 1
        n = max(1, int((hi - lo) / step))
        return [lo + step * round(n * (i % 5) / 4) for i in range(moves)]
    return []


def bench(name: str, widget: widgets.FigureWidget, moves: int) -> None:
    for key, control in list(widget.controls.items()):
        start_value = control.value
        times = []
        for v in offered_values(control, moves):
            if not control.layout.display == "none" and getattr(control, "disabled", False):
                break
            t = time.perf_counter()
            control.value = v
            times.append(time.perf_counter() - t)
        control.value = start_value
        if times:
            times.sort()
            print(f"{name:<26}{key:<18}{statistics.median(times) * 1e3:>8.0f}{times[int(0.9 * (len(times) - 1))] * 1e3:>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from llmviz import build_model, get_config
    tiny = build_model(get_config("tiny-llama")).eval()
    explorers = {"sparse_attention_explorer": widgets.sparse_attention_explorer(),
                 "rope_explorer": widgets.rope_explorer(), "gqa_explorer": widgets.gqa_explorer(),
                 "moe_router_explorer": widgets.moe_router_explorer(),
                 "attention_viewer": widgets.attention_viewer(tiny, torch.arange(12)[None] + 65)}
    print(f"{'explorer':<26}{'control':<18}{'median':>8}{'p90':>8}   (ms per change)")
    for name, w in explorers.items():
        bench(name, w, args.moves)


if __name__ == "__main__":
    main()
