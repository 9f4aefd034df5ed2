# Two commands on a fresh machine with Python 3.11+, git and make:
#   make demo   creates .venv, installs corral, runs the main job on ./.corral (SQLite)
#   make test   installs the dev dependencies and runs the whole suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := .make

.PHONY: demo test lint typecheck archcheck unit install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP)/install: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[frameworks]"
	@mkdir -p $(STAMP) && touch $@

$(STAMP)/install-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[frameworks,dev]"
	@mkdir -p $(STAMP) && touch $@ $(STAMP)/install

install: $(STAMP)/install
install-dev: $(STAMP)/install-dev

demo: install
	$(BIN)/corral demo

lint: install-dev
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)

typecheck: install-dev
	$(BIN)/mypy

archcheck: install-dev
	$(BIN)/lint-imports

test: lint typecheck archcheck
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/pytest

clean:
	rm -rf $(VENV) $(STAMP) .corral .pytest_cache .mypy_cache .ruff_cache
