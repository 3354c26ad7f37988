# rvoslib in two commands on a fresh machine:
#   make train   runs the quickstart job (rvos train with no arguments)
#   make test    runs the test suite
# Each first sets up what is missing (idempotent): a virtual environment in .venv with the
# pinned torch and rvoslib installed in editable mode with its development extras.
# Pass options with ARGS, e.g. `make train ARGS="--epochs 3"` or `make test ARGS="-x -q"`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rvoslib-installed
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: setup train test lint docs

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/rvos train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: $(STAMP)
	$(BIN)/sphinx-build -W -q -b html docs docs/_build/html
