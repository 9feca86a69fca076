# hashpivot: `make demo` runs a dry-run on bundled recorded data; `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint unit testenv bench constraints mutation mutation-full explore

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt examples/policies/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
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
	$(BIN)/python scripts/planted_bugs.py
	$(BIN)/python scripts/mutation.py --sample 30 --warn-only

# Every mutant of the guard and cap code; `mutation-full` adds prices, economics, the
# decision step, the cycle and the Kubernetes eviction rules (docs/testing.md).
mutation: setup
	$(BIN)/python scripts/mutation.py

mutation-full: setup
	$(BIN)/python scripts/mutation.py --scope full

# Property tests with fresh random examples, many more of them; keep what fails as @example.
explore: setup
	HYPOTHESIS_PROFILE=explore $(BIN)/python -m pytest -m "not tier2" -p no:cacheprovider \
		tests/unit/test_guards_property.py tests/unit/test_fuzz_policy.py \
		tests/unit/test_fuzz_feeds.py tests/unit/test_fuzz_config.py tests/unit/test_fuzz_cli.py \
		tests/unit/test_fuzz_recorded.py tests/unit/test_feed_quality.py

unit: setup
	$(BIN)/python -m pytest -m "not tier2"

# Re-pin what CI and the image install to what the virtualenv resolved (after
# `pip install -U -e '.[dev]'`, then review the diff of constraints.txt).
constraints: setup
	{ echo '# What CI and the image install (pip install -c constraints.txt ...). Refresh: make constraints'; \
	  $(BIN)/pip list --format=freeze --exclude-editable | grep -Ev '^(hashpivot.*|pip|setuptools|wheel)=='; \
	} > constraints.txt

bench: setup
	$(BIN)/python -m bench
