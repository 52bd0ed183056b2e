# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck bench bench-ingest bench-search clean

install: $(STAMP)

# torch 2.13.0 first: its CPU build is on disk; a later torch would pull GBs of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	HF_HUB_OFFLINE=1 $(BIN)/phivault up

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

test: install lint typecheck
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

bench: bench-ingest bench-search

bench-ingest: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.ingest

bench-search: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.search

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
