# The two commands a newcomer needs: `make run` and `make test`. Both build .venv themselves.
SHELL := /bin/bash
PY ?= python3
UV_VERSION := 0.13.8
BOOT := .cache/bootstrap
UV := $(BOOT)/bin/uv
VENV := .venv
EVACCESS := $(VENV)/bin/evaccess
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
# Compile bytecode at install: with PYTHONDONTWRITEBYTECODE set, every command would
# otherwise recompile the package (1-2 s per `evaccess` start).
export UV_COMPILE_BYTECODE := 1
export EVACCESS_DATA_DIR ?= $(abspath var)

.PHONY: run test check lint typecheck layers pytest pytest-quick env browser portal-assets clean

$(UV):
	$(PY) -m venv $(BOOT)
	$(BOOT)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	touch $@

env: $(VENV)/.synced

# The browser tests' parts: Debian's Chromium (driven by Playwright through its path, never
# a downloaded browser) and axe-core from npm (package-lock.json).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

browser: node_modules/.package-lock.json
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# htmx is vendored (served by the portal, no build step); this refreshes the copy from npm.
portal-assets: node_modules/.package-lock.json
	cp node_modules/htmx.org/dist/htmx.min.js src/evaccess/server/portal/static/htmx.min.js

# Host and ports come from the server's settings (EVACCESS_HOST, EVACCESS_PORT,
# EVACCESS_OCPP_PORT; defaults 127.0.0.1, 8000 and 9000).
run: env
	$(EVACCESS) server run

lint: env
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

typecheck: env
	$(VENV)/bin/mypy src

layers: env
	$(VENV)/bin/lint-imports

# Serial for now: on two workers (pytest-xdist) the suite takes ~14 instead of ~20 minutes
# on a 2-core machine, and the canary scan and frame guard gather every worker's findings,
# but the Bluetooth soak test timed out once under that load (a GATT read).
pytest: env browser
	$(VENV)/bin/pytest

# Without the tests that start real processes, on every core (pytest-xdist): the daily loop.
pytest-quick: env browser
	$(VENV)/bin/pytest -q -m "not e2e" -n auto

# The full gate: what CI runs.
test: lint typecheck layers pytest

# The daily loop: lint, types, layers and the in-process tests.
check: lint typecheck layers pytest-quick

clean:
	rm -rf $(VENV) $(BOOT) .mypy_cache .pytest_cache .ruff_cache
