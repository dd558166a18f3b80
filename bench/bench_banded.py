"""Does sparse attention save compute? Causal sliding-window attention (window W) three ways, on CPU:

* dense causal SDPA (``is_causal=True``: every earlier key),
* SDPA with the window as a boolean mask (the same answer as banded, but every score is still computed),
* ``llmviz.layers.attention.banded_attention`` (only the blocks that touch the band).

B 1, 8 heads of 64, fp32, 2 threads, W = 256, T = 1K ... 8K. Runs alternate between the methods; the speed-up is the
median of the per-round ratios. "FLOP limit" is the ratio of scores computed, T² (masked dense) over the band's
T·W - W(W-1)/2: what a perfect kernel could gain. Peak memory: the extra resident memory of one call, each
measured in a fresh process. Goal: banded >= 4x faster than masked dense at T = 4,096 and >= 6x at 8,192.

    python bench/bench_banded.py [--reps 7] [--lengths 1024 2048 4096 8192]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from llmviz import masks
from llmviz.layers.attention import banded_attention

W, HEADS, DIM = 256, 8, 64


def methods(T: int) -> dict:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, HEADS, T, DIM, generator=g) for _ in range(3))
    window = masks.sliding_window(T, W)
    return {
        "dense causal": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "masked dense": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=window),
        "banded": lambda: banded_attention(q, k, v, W),
    }


def peak_mb(T: int, name: str) -> float:
    """Extra peak resident memory (MB) of one call above the memory in use when it starts (inputs, mask), in a
    fresh process: the kernel's high-water mark is reset just before the call (Linux ``clear_refs`` 5)."""
    code = (
        "import sys, torch; torch.set_num_threads(2)\n"
        "import bench_banded as b\n"
        f"f = b.methods({T})[{name!r}]\n"
        "def status(key):\n"
        "    line = next(x for x in open('/proc/self/status') if x.startswith(key))\n"
        "    return int(line.split()[1]) / 1024\n"
        "before = status('VmRSS')\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "f()\n"
        "print(status('VmHWM') - before)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=__file__.rsplit("/", 1)[0])
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--json", help="also write the table to this file")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    print(f"W={W}, B=1, {HEADS} heads x {DIM}, fp32, {torch.get_num_threads()} threads, median of {args.reps} rounds")
    print(f"{'T':>6} {'dense causal':>13} {'masked dense':>13} {'banded':>9} {'vs masked':>10} {'vs causal':>10}"
          f" {'FLOP limit':>11} {'peak MB masked / banded':>24}")
    for T in args.lengths:
        fns = methods(T)
        for f in fns.values():  # warm-up
            f()
        times = {name: [] for name in fns}
        for _ in range(args.reps):
            for name, f in fns.items():
                start = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - start)
        ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        vs_masked = statistics.median(a / b for a, b in zip(times["masked dense"], times["banded"]))
        vs_causal = statistics.median(a / b for a, b in zip(times["dense causal"], times["banded"]))
        limit = T * T / (T * W - W * (W - 1) / 2)
        mem = {name: peak_mb(T, name) for name in ("masked dense", "banded")}
        rows.append(dict(T=T, ms=ms, vs_masked=vs_masked, vs_causal=vs_causal, flop_limit=limit, peak_mb=mem))
        print(f"{T:>6} {ms['dense causal']:>10.1f} ms {ms['masked dense']:>10.1f} ms {ms['banded']:>6.1f} ms"
              f" {vs_masked:>9.1f}x {vs_causal:>9.1f}x {limit:>10.1f}x"
              f" {mem['masked dense']:>13.0f} / {mem['banded']:.0f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
