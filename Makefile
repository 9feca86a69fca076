# hashpivot: `make demo` runs a dry-run on bundled recorded data; `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint unit testenv bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml examples/policies/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps -e examples/policies
	touch $@

demo: setup
	$(BIN)/hashpivot backtest --config examples/west-texas/site.yaml -p power-capped -p hysteresis \
		--report reports/west-texas

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

testenv:
	bash scripts/k8s-testenv.sh
	bash scripts/kueue-testenv.sh

test: setup testenv lint
	HASHPIVOT_REQUIRE_TIER2=1 $(BIN)/python -m pytest

unit: setup
	$(BIN)/python -m pytest -m "not tier2"

bench: setup
	$(BIN)/python -m bench
