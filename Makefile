# Two commands on a fresh machine with Python 3.11+, git and make:
#   make demo   creates .venv, installs corral, runs the main job on ./.corral (SQLite)
#   make test   installs the dev dependencies and runs the whole suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := .make

.PHONY: demo demo-data browser rlang screenshots test lint typecheck archcheck unit install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP)/install: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[frameworks]"
	@mkdir -p $(STAMP) && touch $@

$(STAMP)/install-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[frameworks,dev]"
	@mkdir -p $(STAMP) && touch $@ $(STAMP)/install

# Demo traffic: NannyML's car-loan data (Apache-2.0), read from its wheel by corral.datasets; nannyml is never installed
NANNYML_WHEEL  := .corral/wheels/nannyml-0.13.1-py3-none-any.whl
NANNYML_SHA256 := cf5f4a33489834ae6773cb1baa33a0f98c0a3ee6ed9b43049478b25ce22fe869

$(NANNYML_WHEEL): | $(BIN)/python
	$(BIN)/pip download --quiet --no-deps --only-binary=:all: --ignore-requires-python --dest $(@D) nannyml==0.13.1
	$(BIN)/python -c "import hashlib, sys; d = hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest(); sys.exit(d != sys.argv[2] and f'{sys.argv[1]}: sha256 {d}, expected {sys.argv[2]}')" $@ $(NANNYML_SHA256) || { rm -f $@; exit 1; }

demo-data: $(NANNYML_WHEEL)

# The dashboard's browser tests drive Debian's Chromium (never a downloaded browser); installed when missing
CHROMIUM := /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "the dashboard tests need Chromium at $(CHROMIUM)"; exit 1; }
	$(SUDO) apt-get install -y --no-install-recommends chromium || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; }

browser: $(CHROMIUM)

# The external-model tests serve an R model (examples/external/r): Debian's R and its jsonlite package, installed
# when missing (r-cran-jsonlite depends on r-base-core; CRAN is never used)
RSCRIPT  := /usr/bin/Rscript
JSONLITE := /usr/lib/R/site-library/jsonlite/DESCRIPTION

$(RSCRIPT):
	@command -v apt-get >/dev/null || { echo "the external-model tests need R at $(RSCRIPT) (Debian's r-base-core)"; exit 1; }
	$(SUDO) apt-get install -y --no-install-recommends r-base-core r-cran-jsonlite || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends r-base-core r-cran-jsonlite; }

$(JSONLITE): | $(RSCRIPT)
	@command -v apt-get >/dev/null || { echo "the R example model needs R's jsonlite package (r-cran-jsonlite)"; exit 1; }
	$(SUDO) apt-get install -y --no-install-recommends r-cran-jsonlite || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends r-cran-jsonlite; }

rlang: $(RSCRIPT) $(JSONLITE)

# docs/screenshots/*.png: every dashboard page on the demo's data, at 1280 px and 390 px
screenshots: demo browser
	$(BIN)/python scripts/screenshots.py

install: $(STAMP)/install
install-dev: $(STAMP)/install-dev

demo: install demo-data
	$(BIN)/corral demo

lint: install-dev
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: install-dev
	$(BIN)/mypy

archcheck: install-dev
	$(BIN)/lint-imports

test: lint typecheck archcheck demo-data browser rlang
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/pytest

clean:
	rm -rf $(VENV) $(STAMP) .corral .pytest_cache .mypy_cache .ruff_cache
