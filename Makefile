# Minsheng — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test test-sqlite test-postgres venv migrate lint bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[all,dev]' --config-settings editable_mode=compat
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

## Run the whole platform: gateway :8000, intake :8001, grading :8002, notify :8003, archive :8004.
run: $(STAMP)
	$(PY) -m deploy.launcher run

## Run the whole test suite against SQLite and then PostgreSQL.
test: $(STAMP)
	@deploy/scripts/ensure-postgres.sh
	@deploy/scripts/pytest.sh sqlite
	@deploy/scripts/pytest.sh postgres

test-sqlite: $(STAMP)
	@deploy/scripts/pytest.sh sqlite

test-postgres: $(STAMP)
	@deploy/scripts/ensure-postgres.sh
	@deploy/scripts/pytest.sh postgres

migrate: $(STAMP)
	$(PY) -m deploy.launcher migrate

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) -m bench.platform_throughput

clean:
	rm -rf var .pytest_cache
