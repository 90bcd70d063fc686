# rollout-harness: every target does its own set-up (venv, docker, toolchain).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HARNESS := $(BIN)/rollout-harness
PYTEST := $(BIN)/pytest

.PHONY: help setup helm toolchain toolchain-check cluster-up cluster-down verify rehearse canary calibrate rollout down test test-canary lint unit e2e mutation bench clean

OLD ?= 1.0.0
NEW ?= 1.1.0

REPORT ?= rollout-report
RUNS ?= 10
CONTROLS ?= all

help:
	@echo "make verify      the gate: roll OLD (1.0.0) -> NEW (1.1.0) under traffic on a fresh kind"
	@echo "                 cluster; exit 0 PASS, 1 FAIL, 3 INCONCLUSIVE; report in ./$(REPORT)"
	@echo "make rehearse    the same rollout and verdict on the (kept) cluster"
	@echo "make canary      NEW as a canary beside OLD under traffic, judged against a fresh"
	@echo "                 baseline, then promoted or removed; exit 0 promoted, 1 aborted,"
	@echo "                 3 inconclusive; report in ./$(REPORT)"
	@echo "make calibrate   every control RUNS (10) times at the default settings: detection"
	@echo "                 rate with its 95% interval per control; table in ./calibration"
	@echo "make rollout     deploy OLD, then roll out NEW with the Pulumi program (no traffic)"
	@echo "make test        lint, unit tests, then e2e tests on a real kind cluster"
	@echo "make test-canary the canary's five controls alone, once each (part of make test)"
	@echo "make toolchain   docker, kind, node image (built from Go modules if needed)"
	@echo "make cluster-up  a kind cluster from the toolchain; make cluster-down deletes it"
	@echo "make mutation    mutation testing of the verdict (harness/verdict.py): survivors listed"
	@echo "make bench       server and load benchmarks (figures for the README)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

toolchain: setup
	$(HARNESS) toolchain

# the chart and program unit tests render the chart with the real helm
helm: setup
	$(HARNESS) toolchain --only helm

toolchain-check: setup
	$(HARNESS) toolchain --check

cluster-up: setup
	$(HARNESS) cluster up

cluster-down: setup
	$(HARNESS) cluster down

# the gate: toolchain, cluster, images, rollout under traffic, verdict, report, clean-up
verify: setup
	$(HARNESS) verify --from $(OLD) --to $(NEW) --report-dir $(REPORT) $(ARGS)

rehearse: setup
	$(HARNESS) rehearse --from $(OLD) --to $(NEW) --report-dir $(REPORT) $(ARGS)

# a canary of NEW beside OLD: judged interval by interval, then promoted or removed
canary: setup
	$(HARNESS) canary --stable $(OLD) --candidate $(NEW) --report-dir $(REPORT) $(ARGS)

calibrate: setup
	$(HARNESS) calibrate --runs $(RUNS) --controls $(CONTROLS) --report-dir calibration $(ARGS)

# the rollout alone, without traffic or verdict
rollout: setup
	$(HARNESS) up --version $(OLD)
	$(HARNESS) up --version $(NEW)

down: setup
	$(HARNESS) down
	$(HARNESS) cluster down

lint: setup
	$(BIN)/ruff check harness tests load images/model-server bench programs toolchain/python-host examples
	$(BIN)/mypy

# two workers, a test file to each: most unit tests wait on real servers and Locust, and
# test_model_server_http.py's tests share one server, in order
unit: helm
	$(PYTEST) tests/unit -q -n 2 --dist loadfile

e2e: toolchain
	$(PYTEST) tests/e2e -m e2e -v --durations=0

# the canary's controls alone, once each, on a real cluster (make e2e runs them too)
test-canary: toolchain
	$(PYTEST) tests/e2e/test_canary.py -m e2e -v --durations=0

test: lint unit e2e

# mutants of harness/verdict.py against its unit tests; prints the survivors. Starts afresh:
# mutmut keeps a mutant's result until its function changes, even when the tests do.
MUTATION_CHILDREN ?= 2
mutation: setup
	rm -rf mutants
	$(BIN)/mutmut run --max-children $(MUTATION_CHILDREN)
	$(BIN)/mutmut results

bench: setup
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk >/dev/null; } || echo "wrk not installed: the built-in client is used"
	$(BIN)/python bench/bench_server.py
	$(BIN)/python bench/bench_recording.py

clean:
	-$(HARNESS) cluster down
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache reports $(REPORT) calibration
