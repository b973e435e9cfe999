# Butterfly: `make run` serves the whole system, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Parallel test workers: each runs its own embedded broker; the end-to-end tests share one
# worker and one running stack. At least two, so waiting tests overlap even on two cores.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -lt 2 ] && n=2; [ $$n -gt 4 ] && n=4; echo $$n)

.DEFAULT_GOAL := help
.PHONY: help install run test test-unit lint asyncapi bench faults clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install Butterfly with its dev tools

run: $(STAMP) ## start broker and MariaDB (found or embedded), migrate, serve http://127.0.0.1:8000
	$(VENV)/bin/butterfly dev

test: $(STAMP) ## every test: unit, integration and end to end, on a real broker and MariaDB
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

test-unit: $(STAMP) ## only the pure unit tests
	$(PY) -m pytest tests/unit

lint: $(STAMP) ## ruff and mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m mypy schemas producers consumers projections gateway infra

asyncapi: $(STAMP) ## regenerate docs/asyncapi.json, the event contract, from the schemas
	$(PY) -m schemas.asyncapi

bench: $(STAMP) ## speed figures against their targets (BENCH_ARGS=--quick: a short run)
	$(PY) tests/perf/bench_rush.py $(BENCH_ARGS)

faults: $(STAMP) ## a rush through the load balancer while every role loses a process, MariaDB restarts, the broker pauses, the partner freezes (FAULTS_ARGS=--short: the CI form)
	$(PY) -m tests.faults.run $(FAULTS_ARGS)

clean: ## remove the venv and the run folder (local databases, broker logs)
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache
