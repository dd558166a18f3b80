"""Redraw latency of every explorer, per control: each control is moved through the values it offers (every
option of a dropdown, evenly spaced slider positions) and each ``.value`` change is timed, redraw and PNG
included. Goal: median under 100 ms and p90 under 200 ms.

Both CPU time of this process (``time.process_time``: what the redraw costs, steady on a shared machine) and
wall time (what a student waits, inflated when other processes compete for the cores) are reported; judge
on CPU time. Caches (training runs, masks) persist across moves as they do in a notebook session, but every
move changes the value, so a move never costs nothing; ``--cold`` clears the MoE training cache before each
move to show the worst case.

    python bench/bench_widgets.py [--moves 20] [--only rope,moe] [--cold]
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

NAMES = {"sparse": "sparse_attention_explorer", "rope": "rope_explorer", "gqa": "gqa_explorer",
         "moe": "moe_router_explorer", "viewer": "attention_viewer", "sampling": "sampling_explorer",
         "compare": "comparison_explorer"}


def offered_values(control: W.ValueWidget, moves: int) -> list:
    """Values the control offers, in an order that changes the value at every step (a multiple selection: as
    many consecutive options as it holds now, starting one further at each step)."""
    if isinstance(control, W.SelectMultiple) and control.options:
        opts = [o[1] if isinstance(o, tuple) else o for o in control.options]
        k = max(1, len(control.value))
        return [tuple(opts[(i + j) % len(opts)] for j in range(k)) for i in range(moves)]
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


def _p90(xs: list[float]) -> float:
    return sorted(xs)[int(0.9 * (len(xs) - 1))]


def bench(name: str, widget: widgets.FigureWidget, moves: int, cold: bool = False) -> list[tuple]:
    """Time every control of ``widget``; print and return rows (explorer, control, cpu med, cpu p90, wall med,
    wall p90) in ms."""
    rows = []
    clear = getattr(sys.modules.get("llmviz.widgets.moe"), "_train_cached", None) if cold else None
    for key, control in list(widget.controls.items()):
        start_value = control.value
        cpu, wall = [], []
        for v in offered_values(control, moves):
            if not control.layout.display == "none" and getattr(control, "disabled", False):
                break
            if control.value == v:
                continue                                  # no change, no redraw: not a move
            if clear is not None and name == NAMES["moe"]:
                clear.cache_clear()
            c, t = time.process_time(), time.perf_counter()
            control.value = v
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        control.value = start_value
        if cpu:
            row = (name, key, statistics.median(cpu) * 1e3, _p90(cpu) * 1e3, statistics.median(wall) * 1e3,
                   _p90(wall) * 1e3)
            rows.append(row)
            print(f"{row[0]:<26}{row[1]:<18}" + "".join(f"{x:>9.0f}" for x in row[2:]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(NAMES)}")
    parser.add_argument("--cold", action="store_true", help="clear the MoE training cache before every move")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    only = [s.strip() for s in args.only.split(",") if s.strip()] or list(NAMES)
    for s in only:
        if s not in NAMES:
            parser.error(f"--only: unknown explorer {s!r}; choose from {list(NAMES)}")
    makers = {"sparse": widgets.sparse_attention_explorer, "rope": widgets.rope_explorer,
              "gqa": widgets.gqa_explorer, "moe": widgets.moe_router_explorer,
              "compare": widgets.comparison_explorer}
    print(f"{'explorer':<26}{'control':<18}{'cpu med':>9}{'cpu p90':>9}{'wall med':>9}{'wall p90':>9}"
          "   (ms per change)", flush=True)
    worst = []
    for short in only:
        if short == "viewer":
            from llmviz import build_model, get_config
            tiny = build_model(get_config("tiny-llama")).eval()
            w = widgets.attention_viewer(tiny, torch.arange(12)[None] + 65)
        elif short == "sampling":
            from llmviz import build_model, get_config
            from llmviz.data import ByteTokenizer
            torch.manual_seed(0)
            gpt = build_model(get_config("tiny-gpt2")).eval()
            w = widgets.sampling_explorer(gpt, ByteTokenizer(), list(b"The return value of "))
        else:
            w = makers[short]()
        rows = bench(NAMES[short], w, args.moves, args.cold)
        if rows:
            worst.append((NAMES[short], *(max(r[i] for r in rows) for i in range(2, 6))))
    print("\nworst over each explorer's controls (the maximum of each column)")
    for row in worst:
        print(f"{row[0]:<44}" + "".join(f"{x:>9.0f}" for x in row[1:]))


if __name__ == "__main__":
    main()
