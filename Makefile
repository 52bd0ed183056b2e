# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
RUNTIME_LOCK := requirements-runtime.lock
# `make lock` refreshes every pin; `make lock LOCK_ARGS=` only adds what pyproject.toml newly asks for.
LOCK_ARGS ?= --upgrade

.PHONY: install lock run test lint typecheck bench bench-ingest bench-search bench-growth bench-peers bench-peers-100k \
	bench-concurrency bench-cold-start bench-report fuzz soak clean

install: $(STAMP)

# Every package, transitive ones included, comes from the lock at its pinned version and hash;
# then the project itself, without dependencies. The lock pins torch to the 2.13.0 CPU build
# (constraints.txt) by the hash of its wheel, so no install can pull a CUDA torch instead.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# Two locks from one resolution: requirements-runtime.lock (what the image installs) first, then
# requirements.lock (runtime + dev tools, what make install installs) constrained to the same pins.
# Needs only the tools already in the old lock (pip-tools), not an install that matches pyproject.toml.
PIP_COMPILE = $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-find-links --no-emit-index-url
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(PIP_COMPILE) $(LOCK_ARGS) --constraint constraints.txt --output-file $(RUNTIME_LOCK) pyproject.toml
	$(PIP_COMPILE) $(LOCK_ARGS) --extra dev --constraint constraints.txt --constraint $(RUNTIME_LOCK) \
		--output-file $(LOCK) pyproject.toml

run: install
	HF_HUB_OFFLINE=1 $(BIN)/phivault up

# ruff, then the layers' import direction (import-linter contracts in pyproject.toml; docs/ARCHITECTURE.md).
lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

test: install lint typecheck
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

# tests/fuzz at length: schemathesis against every operation, hypothesis against detection, extraction and
# chunking, PHIVAULT_FUZZ_EXAMPLES examples per test (default 400; `make test` runs a few). Prints what it
# tried (operations, requests by status, examples) and what it found (failures by check).
fuzz: install
	HF_HUB_OFFLINE=1 PHIVAULT_FUZZ_PROFILE=fuzz $(BIN)/python -m pytest tests/fuzz -q --timeout=3600

# Isolation under load (tests/soak): its own PostgreSQL, Redis, `phivault api` on 127.0.0.1 and a worker; 20 tenants
# uploading, searching, listing, reading, downloading, deleting, restoring and reading their audit trails at once,
# every answer checked against its tenant. Bounded in requests and time; options: SOAK_ARGS="--documents 10 ...".
soak: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m tests.soak $(SOAK_ARGS)

# Every benchmark of issue 13 in turn (long: the 100k-chunk ones take a while), then bench/results/REPORT.md and its SVGs.
bench: bench-ingest bench-search bench-growth bench-peers bench-peers-100k bench-concurrency bench-cold-start
	$(MAKE) bench-report

# ~4, ~24 and ~200 KB documents, then 10 and 100 documents; API and worker memory after warm-up.
bench-ingest: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.ingest $(INGEST_ARGS)

bench-search: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.search

# In-database search latency and recall at 10k, 50k and 100k chunks over 100 Zipf tenants.
bench-growth: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.growth $(GROWTH_ARGS)

# PHIVault against langchain-postgres and llama-index; installs their own virtualenv (bench/.peers-venv) on first use.
bench-peers: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.peers $(PEERS_ARGS)

bench-peers-100k: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.peers --scale 100k $(PEERS_ARGS)

# 1, 4 and 16 concurrent searchers: one tenant and one user, one tenant and a user each, spread over 16 tenants.
bench-concurrency: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.concurrency $(CONCURRENCY_ARGS)

# The first search after /readyz against the next ones; `phivault search` through a running API against --local.
bench-cold-start: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.cold_start $(COLD_START_ARGS)

# bench/results/REPORT.md from whatever results bench/results holds (a missing one is said, not fatal).
bench-report: install
	$(BIN)/python -m bench.report

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
