# The two commands of the README. Each creates .venv when missing and installs into it only when
# pyproject.toml or constraints.txt changed since the last install (a second run installs nothing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.semlive-installed

.PHONY: demo test test-long browser tmux
.DEFAULT_GOAL := test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[dev,formats,dask]'
	touch $(STAMP)

## Simulate a small SEM session and run semlive on it (see README: "What the demo shows").
demo: $(STAMP)
	$(BIN)/semlive demo

## Headless Chromium for the report test (Debian's package; installed when missing and root).
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium (the HTML report test renders the report with it)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } || \
	  echo "could not install chromium: install Debian's chromium package to run the report test"; }

## tmux for the dashboard test (Debian's package; installed when missing and root).
tmux:
	@command -v tmux >/dev/null || { \
	  echo "installing Debian's tmux (the dashboard test drives semlive run in it)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q tmux >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q tmux >/dev/null; } || \
	  echo "could not install tmux: install Debian's tmux package to run the dashboard test"; }

## Lint, import layering, type check of the package, then the test suite (without the long
## live-session tests: make test-long).
test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not long"

## The live-session tests: whole sessions run, resumed, killed, on Dask, in tmux (minutes each).
test-long: $(STAMP) browser tmux
	$(BIN)/python -m pytest -m long
