# Two commands a newcomer needs: `make demo` and `make test`. Both bootstrap .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Pinned first so the dev extra's torch range is met by this build: on the project's
# machines torch==2.13.0 is the CPU build on disk (a bare "torch" pulls GBs of CUDA).
TORCH  ?= torch==2.13.0

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gmmkit demo --out demo-report

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src

test: lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/bench_convergence.py

.PHONY: bench-peers
bench-peers: $(STAMP)
	$(BIN)/python benchmarks/peers.py --install

.PHONY: bench-mclust
bench-mclust: $(STAMP)
	$(BIN)/python benchmarks/bench_mclust.py

clean:
	rm -rf $(VENV) demo-report .pytest_cache .mypy_cache .ruff_cache
