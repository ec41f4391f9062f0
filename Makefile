# The two commands in the README: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(PYTHON) -m uv
export UV_PYTHON_DOWNLOADS := never
# PostgreSQL for the second half of the suite (every machine of this project runs one).
SYNCHUB_TEST_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
export SYNCHUB_TEST_DATABASE_URL

.PHONY: install demo test lint bench

install:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check 'uv>=0.5,<1'
	@$(UV) sync --frozen --quiet

demo: install
	@$(UV) run --frozen synchub demo

lint: install
	$(UV) run --frozen ruff check src tests bench
	$(UV) run --frozen ruff format --check src tests bench
	$(UV) run --frozen mypy

test: lint
	$(UV) run --frozen pytest tests -q

bench: install
	$(UV) run --frozen python bench/ingest.py
	$(UV) run --frozen python bench/ratelimit.py
	$(UV) run --frozen python bench/delivery.py
	$(UV) run --frozen python bench/matching.py
