# The few commands a newcomer needs. `make test` is the README's test command; .ci/run calls it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# The suite runs on SQLite and, through these, on PostgreSQL and Redis.
export AUTHSERVER_TEST_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export AUTHSERVER_TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

PYTEST_ARGS ?=

# The real SkyPilot API server for its end-to-end test, in a venv of its own (its
# dependencies clash with ours); tests/skypilot.py finds it there.
SKYPILOT_VERSION := 0.14.1
SKYPILOT_VENV ?= .venv-skypilot
SKYPILOT_STAMP := $(SKYPILOT_VENV)/.skypilot-$(SKYPILOT_VERSION)

.PHONY: install test lint bench skypilot-venv lock

# tests/a11y: axe-core (npm), pinned by its package-lock.json, for tests/test_accessibility.py.
install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	npm ci --prefix tests/a11y --no-audit --no-fund

# --durations=25: the slowest tests in every run's output, CI's included.
test: skypilot-venv
	$(BIN)/pytest --durations=25 $(PYTEST_ARGS)

# Idempotent: kept while it holds exactly $(SKYPILOT_VERSION), rebuilt otherwise. The
# stamp is written last, so an interrupted install is redone.
skypilot-venv:
	@if [ -f $(SKYPILOT_STAMP) ] && $(SKYPILOT_VENV)/bin/python -c \
	    "import importlib.metadata as m, sys; sys.exit(m.version('skypilot') != '$(SKYPILOT_VERSION)')" 2>/dev/null; \
	then echo "$(SKYPILOT_VENV): skypilot $(SKYPILOT_VERSION) already installed"; \
	else set -e; rm -rf $(SKYPILOT_VENV); \
	  echo "$(SKYPILOT_VENV): installing skypilot[server]==$(SKYPILOT_VERSION)"; \
	  $(PYTHON) -m venv $(SKYPILOT_VENV); \
	  $(SKYPILOT_VENV)/bin/pip install -q --upgrade pip; \
	  $(SKYPILOT_VENV)/bin/pip install -q 'skypilot[server]==$(SKYPILOT_VERSION)'; \
	  touch $(SKYPILOT_STAMP); fi

lint:
	$(BIN)/ruff check authserver tests bench
	$(BIN)/ruff format --check authserver
	$(BIN)/mypy --strict authserver
	$(BIN)/lint-imports

bench:
	$(BIN)/python bench/run.py

# The Dockerfile's dependencies, pinned with their hashes: requirements.lock (the runtime
# ones, with the postgres extra) and requirements-build.lock (what builds the wheel).
# Run it with the Python of the image (3.11 on Linux x86_64), after changing the
# dependencies in pyproject.toml (it keeps the pins that still fit; delete the two files
# to move every pin to the newest release); tests/test_deploy.py checks the lock covers them.
# pip's default index only, never a machine's local mirrors or wheel folders: the hashes
# must be those of the files an image build downloads.
LOCK_ENV := env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="make lock"
LOCK_ARGS := --quiet --generate-hashes --strip-extras --no-emit-index-url

lock:
	$(LOCK_ENV) $(BIN)/pip-compile $(LOCK_ARGS) --extra postgres --output-file requirements.lock pyproject.toml
	$(LOCK_ENV) $(BIN)/pip-compile $(LOCK_ARGS) --only-build-deps --build-deps-for wheel --output-file requirements-build.lock pyproject.toml
