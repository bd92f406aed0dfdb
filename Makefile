# The two commands a newcomer needs: `make run` and `make test`. Both build .venv themselves.
SHELL := /bin/bash
PY ?= python3
UV_VERSION := 0.13.8
BOOT := .cache/bootstrap
UV := $(BOOT)/bin/uv
VENV := .venv
EVACCESS := $(VENV)/bin/evaccess
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export EVACCESS_DATA_DIR ?= $(abspath var)

.PHONY: run test lint typecheck layers pytest env clean

$(UV):
	$(PY) -m venv $(BOOT)
	$(BOOT)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	touch $@

env: $(VENV)/.synced

run: env
	$(EVACCESS) server run --host 127.0.0.1 --port 8000

lint: env
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

typecheck: env
	$(VENV)/bin/mypy src

layers: env
	$(VENV)/bin/lint-imports

pytest: env
	$(VENV)/bin/pytest

test: lint typecheck layers pytest

clean:
	rm -rf $(VENV) $(BOOT) .mypy_cache .pytest_cache .ruff_cache
