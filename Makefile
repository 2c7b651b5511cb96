# Everything runs from a project-local venv that this Makefile creates.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv deps test lint bench bench-cluster deploy-test clean

$(BIN)/pytest: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/pytest

# System tools the deployment tests use (docker engine, helm, compose, promtool, ...);
# idempotent, a no-op once installed.
deps: venv
	bash scripts/ci-deps.sh

lint: venv
	$(BIN)/ruff check src tests bench

test: deps lint
	$(BIN)/pytest -q

bench: venv
	$(BIN)/python bench/crypto.py
	$(BIN)/python bench/fileserver.py
	$(BIN)/python bench/publisher.py

bench-cluster: deps
	$(BIN)/python bench/convergence.py

deploy-test: deps
	bash scripts/ci-docker.sh

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
