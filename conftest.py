"""Test settings shared by the unit tests and the notebook (nbval) runs, at the repository root so that a bare
`pytest notebooks/X.ipynb` gets them too.

Kernels started by nbval inherit this process's environment, so single-threaded maths here makes stored
notebook outputs reproducible across machines (notebook_ecosystem.md §1).
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("MPLBACKEND", "Agg")
