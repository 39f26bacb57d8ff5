# xmppd: `make run` starts the server, `make test` runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= config/xmppd.yml

.PHONY: run test lint typecheck pytest services clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed setup.cfg
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/xmppd run --config $(CONFIG)

services:
	sh tests/services/install.sh

lint: $(VENV)/.test-installed
	$(BIN)/ruff check xmppd bench

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy xmppd bench

# the tests start xmppd in hundreds of processes: compile it once, even where the
# environment sets PYTHONDONTWRITEBYTECODE (each start would compile it again)
pytest: $(VENV)/.test-installed services
	$(BIN)/python -m compileall -q xmppd > /dev/null
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(VENV)/.test-installed
	$(BIN)/python bench/compare.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) data build *.egg-info
