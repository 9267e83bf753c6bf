# Developer shortcuts; the README's commands are the source of truth for set-up.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: check format lint typecheck test test-fast

check: lint typecheck test

format:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lint:
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck:
	$(VENV)/bin/mypy

test:
	$(PY) -m pytest

test-fast:
	$(PY) -m pytest -m "not integration"
