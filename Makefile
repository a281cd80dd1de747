# The two commands a newcomer needs: `make run` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/avatar-registry run

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	touch $@

# The quick benchmarks; bench/livecheck_load.py (~3 min), bench/translog.py (~2 min) and
# bench/liveness_eval.py (~16 min for the held-out set) run on their own.
bench: $(VENV)/.bench-installed
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/merkle.py
	$(BIN)/python bench/protocol.py
	$(BIN)/python bench/registry_http.py
	$(BIN)/python bench/match.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
