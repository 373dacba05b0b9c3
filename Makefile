# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The project `make demo` and `make ui` work on; point it at your own (or pass --project).
export SYNCFABRIC_PROJECT ?= $(CURDIR)/examples/demo

.PHONY: install demo run test lint format typecheck ui ui-read-only bench clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: install
	$(BIN)/syncctl demo
	$(BIN)/syncctl run

run: install
	$(BIN)/syncctl run

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy

ui: install
	$(BIN)/syncctl ui

# For analysts: the same UI, but nothing can be launched or switched (docs/security.md).
ui-read-only: install
	$(BIN)/syncctl ui --read-only

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .syncfabric
