# Two commands do all set-up on a fresh machine with Python 3.11+:
#   make demo   a real migration between two local S3 endpoints, verified
#   make test   the whole test suite (lint, unit, contract, integration, fault)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

# What the demo needs: the product's runtime and the test kit (testkit/: the local S3 servers,
# fault proxies, fake servers and chaos runner the demo, the tests and the benchmark use),
# without the test tools, the CDK or cfn-lint.
$(BIN)/.runtime: pyproject.toml testkit/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e . -e ./testkit
	touch $@

# Everything the tests need on top: the test extras and the test kit's inventory writers.
$(BIN)/.installed: $(BIN)/.runtime
	$(BIN)/python -m pip install --quiet -e '.[test]' -e './testkit[inventory]'
	touch $@

demo: $(BIN)/.runtime
	$(BIN)/python scripts/demo.py

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests scripts bench deploy testkit
	$(BIN)/ruff format --check src tests scripts bench deploy testkit
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run.py --json bench/results.json --chart bench/results.png $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache testkit/build testkit/src/*.egg-info
