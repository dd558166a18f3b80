"""Regenerate the stored outputs of notebooks: each runs top to bottom in a fresh kernel, single-threaded,
with ``jupyter execute --inplace`` (nbclient). Committed notebooks carry only outputs made this way.

    python scripts/execute_notebooks.py                     # every notebook
    python scripts/execute_notebooks.py notebooks/00_start_here.ipynb
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(paths: list[str]) -> int:
    notebooks = [Path(p) for p in paths] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONHASHSEED="0",
               TRANSFORMERS_VERBOSITY="error")
    jupyter = Path(sys.executable).with_name("jupyter")
    for nb in notebooks:
        start = time.perf_counter()
        done = subprocess.run([str(jupyter), "execute", "--inplace", "--timeout=600", str(nb.resolve())], env=env,
                              cwd=nb.resolve().parent)
        if done.returncode:
            print(f"FAILED {nb}", file=sys.stderr)
            return done.returncode
        print(f"{nb}: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
