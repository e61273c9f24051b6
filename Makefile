# Every target creates the virtual environment it needs, so each works on a
# fresh clone. PYTHON picks the interpreter: `make test PYTHON=python3.12`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

# The exact tool versions every target installs, so that a new release of a
# tool cannot turn CI red overnight; pyproject.toml keeps the open ranges that
# users get. `make pins` refreshes both files.
PINS    := constraints/dev.txt
FT_PINS := constraints/free-threaded.txt

# MkDocs Material prints a banner about its successor on every build.
export NO_MKDOCS_2_WARNING := 1

# Interpreters for `make test-all`: every CPython >= 3.11 that pyenv has.
ALL_PYTHONS ?= $(sort $(wildcard $(HOME)/.pyenv/versions/3.1[1-9]*/bin/python3))

# The free-threaded CPython 3.13 (built with --disable-gil) comes from
# shared/tools/free-threaded-python, which CI lays beside the clone; a git
# worktree under wt/ sits one folder deeper. FT_PYTHON=/path/to/python3.13t
# uses that interpreter instead.
FT_TOOL ?= $(firstword $(wildcard $(CURDIR)/../shared/tools/free-threaded-python \
	$(CURDIR)/../../shared/tools/free-threaded-python))
FT_PYTHON ?=
FT_VENV := .venv-ft
FT_BIN  := $(FT_VENV)/bin
FT_PIP  := $(FT_BIN)/python -m pip --disable-pip-version-check -q
# PYTHON_GIL=0 keeps the GIL off even if an extension module without
# free-threading support is imported (test_free_threading.py checks that none is).
FT_PYTEST := PYTHON_GIL=0 $(FT_BIN)/python -m pytest -q -p no:cacheprovider

# Threads per test for pytest-run-parallel, and how often the stress tests
# run on the free-threaded build (their races are rarer per run there).
PARALLEL_THREADS ?= 4
STRESS_COUNT     ?= 3

.PHONY: demo test test-all test-ft test-ft-suite test-ft-stress test-parallel test-parallel-ft lint typecheck \
	pytest docs-build bench bench-ft plot docs pins clean help

help:
	@echo "make demo      - install and run the tour of the library"
	@echo "make test      - lint, types, tests and the docs build"
	@echo "make test-all  - the test suite under every CPython >= 3.11 found"
	@echo "make test-ft   - the test suite on free-threaded CPython 3.13 (no GIL)"
	@echo "make test-parallel / test-parallel-ft"
	@echo "               - every test run by $(PARALLEL_THREADS) threads at once"
	@echo "make bench     - benchmarks against the standard library"
	@echo "make bench-ft  - 1 and 2 threads on free-threaded CPython"
	@echo "make plot      - benchmarks, then plot them into docs/images/"
	@echo "make docs      - build the documentation site into site/"
	@echo "make pins      - re-resolve the pinned tool versions in constraints/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -c $(PINS) --upgrade pip

# Stamp files: reinstall only when the project metadata or the pins change.
$(VENV)/.installed: $(BIN)/python pyproject.toml $(PINS)
	$(PIP) install -c $(PINS) -e .
	@touch $@

# The test tools alone (test-all needs no linters); dev includes them.
$(VENV)/.installed-test: $(BIN)/python pyproject.toml $(PINS)
	$(PIP) install -c $(PINS) -e '.[test]'
	@touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml $(PINS)
	$(PIP) install -c $(PINS) -e '.[dev]'
	@touch $@ $(VENV)/.installed-test

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

# The suite without the packaging test (it checks the build, not the
# interpreter), in one environment per interpreter.
test-all:
	@test -n "$(ALL_PYTHONS)" || { echo "no CPython >= 3.11 found under ~/.pyenv"; exit 1; }
	@set -e; for py in $(ALL_PYTHONS); do \
		ver=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
		echo "=== pytest on CPython $$ver ($$py)"; \
		$(MAKE) --no-print-directory pytest-only PYTHON=$$py VENV=.venv-$$ver \
			PYTEST_ARGS='-m "not packaging and not exhaustive"'; \
	done

.PHONY: pytest-only
pytest-only: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# --- free-threaded CPython ----------------------------------------------------
# Prints the path of the free-threaded interpreter (building it the first time).
ft-python = $(if $(FT_PYTHON),echo "$(FT_PYTHON)",$(if $(FT_TOOL),bash "$(FT_TOOL)",\
	{ echo "error: ../shared/tools/free-threaded-python is not beside this clone;" \
	"set FT_PYTHON=/path/to/python3.13t" >&2; false; }))

$(FT_BIN)/python:
	@echo "finding the free-threaded CPython (built on first use: about 8 minutes)"
	@py=$$($(ft-python)) || { echo "error: no free-threaded CPython" >&2; exit 1; }; \
	"$$py" -c 'import sys; sys.exit(getattr(sys, "_is_gil_enabled", lambda: True)())' || { \
		echo "error: $$py is not a free-threaded build of CPython" >&2; exit 1; }; \
	echo "$$py -m venv $(FT_VENV)"; "$$py" -m venv $(FT_VENV)
	$(FT_PIP) install -c $(FT_PINS) --upgrade pip

# Only wheels: a source build that needs Rust crates cannot work offline, and
# some tools ship no cp313t wheels (constraints/free-threaded.txt says which).
$(FT_VENV)/.installed-test: $(FT_BIN)/python pyproject.toml $(FT_PINS)
	$(FT_PIP) install --only-binary=:all: -c $(FT_PINS) -e '.[test]'
	@touch $@

# The whole suite with the GIL disabled (docs examples included, the
# packaging test excluded as in test-all), then the stress tests again,
# STRESS_COUNT times each. tests/test_free_threading.py checks that importing
# the library and every test tool leaves the GIL disabled.
# (`make -k test-ft` runs the stress tests even when the suite failed.)
test-ft: test-ft-suite test-ft-stress

test-ft-suite: $(FT_VENV)/.installed-test
	$(FT_PYTEST) -m "not packaging and not exhaustive" $(PYTEST_ARGS)

test-ft-stress: $(FT_VENV)/.installed-test
	$(FT_PYTEST) -m "stress and not exhaustive" --count=$(STRESS_COUNT) $(PYTEST_ARGS)

# pytest-run-parallel: each test body runs in PARALLEL_THREADS threads at
# once, which finds state shared between calls that should not be. Tests
# that cannot run that way themselves are marked in tests/conftest.py and
# skipped here: make test and make test-ft have run them once already.
test-parallel: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not packaging and not exhaustive" \
		--parallel-threads=$(PARALLEL_THREADS) --skip-thread-unsafe=True $(PYTEST_ARGS)

test-parallel-ft: $(FT_VENV)/.installed-test
	$(FT_PYTEST) -m "not packaging and not exhaustive" --parallel-threads=$(PARALLEL_THREADS) \
		--skip-thread-unsafe=True $(PYTEST_ARGS)

# --- benchmarks ---------------------------------------------------------------
bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks

bench-ft: $(FT_VENV)/.installed-test
	PYTHON_GIL=0 $(FT_BIN)/python -m benchmarks free_threaded

$(VENV)/.installed-plot: $(VENV)/.installed pyproject.toml $(PINS)
	$(PIP) install -c $(PINS) -e '.[plot]'
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

# --- pins -----------------------------------------------------------------------
# Resolve the newest versions pyproject.toml allows, in throwaway environments
# made without the pins, and write them down: one command to move every tool
# forward. Review the diff and run `make test test-ft` before committing it.
pins:
	rm -rf .venv-pins .venv-pins-ft
	$(PYTHON) -m venv .venv-pins
	.venv-pins/bin/python -m pip install -q --upgrade pip
	.venv-pins/bin/python -m pip install -q -e '.[dev,plot]'
	{ echo "# Tool versions for make and CI (pyproject.toml keeps the ranges)."; \
	  echo "# Generated by \`make pins\` on CPython $$(.venv-pins/bin/python -c \
		'import platform; print(platform.python_version())'); do not edit by hand."; \
	  .venv-pins/bin/python -m pip freeze --all --exclude-editable \
		| grep -v -i '^safethreads'; } > $(PINS)
	py=$$($(ft-python)) && "$$py" -m venv .venv-pins-ft
	.venv-pins-ft/bin/python -m pip install -q --upgrade pip
	.venv-pins-ft/bin/python -m pip install -q --only-binary=:all: \
		-c constraints/free-threaded.in -e '.[test]'
	{ cat constraints/free-threaded.in; \
	  echo "# Generated by \`make pins\` on CPython $$(.venv-pins-ft/bin/python -c \
		'import platform; print(platform.python_version())')t from the lines above."; \
	  .venv-pins-ft/bin/python -m pip freeze --all --exclude-editable \
		| grep -v -i '^safethreads'; } > $(FT_PINS)
	rm -rf .venv-pins .venv-pins-ft
	git diff --stat -- constraints/

clean:
	rm -rf $(VENV) .venv-* site dist build .pytest_cache .mypy_cache .ruff_cache .hypothesis
