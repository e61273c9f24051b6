# Every target creates the virtual environment it needs, so each works on a
# fresh clone. PYTHON picks the interpreter: `make test PYTHON=python3.12`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

# MkDocs Material prints a banner about its successor on every build.
export NO_MKDOCS_2_WARNING := 1

# Interpreters for `make test-all`: every CPython >= 3.11 that pyenv has.
ALL_PYTHONS ?= $(sort $(wildcard $(HOME)/.pyenv/versions/3.1[1-9]*/bin/python3))

.PHONY: demo test test-all lint typecheck pytest docs-build bench plot docs clean help

help:
	@echo "make demo      - install and run the tour of the library"
	@echo "make test      - lint, types, tests and the docs build"
	@echo "make test-all  - the test suite under every CPython >= 3.11 found"
	@echo "make bench     - benchmarks against the standard library"
	@echo "make plot      - benchmarks, then plot them into docs/images/"
	@echo "make docs      - build the documentation site into site/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Stamp files: reinstall only when the project metadata changes.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(PIP) install -e '.[dev]'
	@touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m safethreads

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# mypy checks the code; pyright checks that every public name has a known type.
typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy --strict
	PATH="$(CURDIR)/$(BIN):$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)" \
		$(BIN)/pyright --verifytypes safethreads --ignoreexternal

PYTEST_ARGS ?=

pytest: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

docs-build: $(VENV)/.installed-dev
	$(BIN)/mkdocs build --strict --quiet --site-dir site

test: lint typecheck pytest docs-build

test-all:
	@test -n "$(ALL_PYTHONS)" || { echo "no CPython >= 3.11 found under ~/.pyenv"; exit 1; }
	@set -e; for py in $(ALL_PYTHONS); do \
		ver=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
		echo "=== pytest on CPython $$ver ($$py)"; \
		$(MAKE) --no-print-directory pytest PYTHON=$$py VENV=.venv-$$ver \
			PYTEST_ARGS='-m "not packaging"'; \
	done

bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks

$(VENV)/.installed-plot: $(VENV)/.installed pyproject.toml
	$(PIP) install -e '.[plot]'
	@touch $@

# Run the benchmarks, keep their results as JSON and plot them for the docs.
plot: $(VENV)/.installed-plot
	@mkdir -p benchmarks/results
	$(BIN)/python -m benchmarks --json benchmarks/results/latest.json \
		| tee benchmarks/results/latest.md
	$(BIN)/python -m benchmarks.plot benchmarks/results/latest.json \
		docs/images/benchmarks.png

docs: $(VENV)/.installed-dev
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .venv-* site dist build .pytest_cache .mypy_cache .ruff_cache .hypothesis
