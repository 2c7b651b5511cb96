# Everything runs from a project-local venv that this Makefile creates.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv test lint bench clean

$(BIN)/pytest: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/pytest

lint: venv
	$(BIN)/ruff check src tests bench

test: venv lint
	$(BIN)/pytest -q

bench: venv
	$(BIN)/python bench/crypto.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
