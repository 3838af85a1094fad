# The two commands of the README. Each creates .venv when missing and installs into it only when
# pyproject.toml or constraints.txt changed since the last install (a second run installs nothing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.semlive-installed

.PHONY: demo test
.DEFAULT_GOAL := test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[dev,formats,dask]'
	touch $(STAMP)

## Simulate a small SEM session and run semlive on it (see README: "What the demo shows").
demo: $(STAMP)
	$(BIN)/semlive demo

## Lint, import layering, type check of the package, then the test suite.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest
