# The few commands a newcomer needs. `make test` is the README's test command; .ci/run calls it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# The suite runs on SQLite and, through these, on PostgreSQL and Redis.
export AUTHSERVER_TEST_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export AUTHSERVER_TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

PYTEST_ARGS ?=

.PHONY: install test lint bench

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'

test:
	$(BIN)/pytest $(PYTEST_ARGS)

lint:
	$(BIN)/ruff check authserver tests bench
	$(BIN)/ruff format --check authserver
	$(BIN)/mypy --strict authserver

bench:
	$(BIN)/python bench/run.py
