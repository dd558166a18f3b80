"""Run time and peak memory of each notebook, top to bottom in a fresh kernel (as ``make execute`` runs them,
but on a temporary copy, so stored outputs are untouched). Goal: under 60 s and 1.5 GB each on 2 cores, and the
whole series under 8 minutes (the total line).

    python bench/bench_notebooks.py [notebooks/06_llama.ipynb ...]
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(notebook: Path) -> tuple[float, float]:
    """(seconds, peak resident memory of the kernel in MB) for one notebook."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / notebook.name
        shutil.copy(notebook, copy)
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
        # one child process per notebook, so RUSAGE_CHILDREN's max RSS is this notebook's kernel
        probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
                 "subprocess.run([sys.argv[1], 'execute', '--inplace', '--timeout=600', sys.argv[2]], check=True, "
                 "capture_output=True); print(time.perf_counter() - t, "
                 "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
        out = subprocess.run([sys.executable, "-c", probe, str(Path(sys.executable).with_name("jupyter")), str(copy)],
                             env=env, cwd=tmp, capture_output=True, text=True, check=True).stdout.split()
        return float(out[0]), float(out[1])


def main(paths: list[str]) -> None:
    notebooks = [Path(p) for p in paths] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    print(f"{'notebook':<28}{'run time':>10}{'peak MB':>10}")
    total = 0.0
    for nb in notebooks:
        seconds, mb = run(nb)
        total += seconds
        flag = "" if seconds < 60 and mb < 1536 else "   <- over budget"
        print(f"{nb.name:<28}{seconds:>9.1f}s{mb:>10.0f}{flag}")
    print(f"{'total':<28}{total:>9.1f}s   ({total / 60:.1f} min; goal for the series: under 8 min)")


if __name__ == "__main__":
    main(sys.argv[1:])
