# LLM Server. `make dev` runs the whole stack natively; `make test` runs every test.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := -e libs/domain -e services/chat_api -e services/monitor -e services/admin_ui

.PHONY: install dev test test-fast lint migrate bench soak bench-compare up down clean system-packages litellm-venv

$(STAMP): requirements/constraints.txt requirements/dev.txt libs/domain/pyproject.toml services/*/pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements/constraints.txt -r requirements/dev.txt $(PACKAGES)
	touch $(STAMP)

install: $(STAMP)

system-packages:
	@bash scripts/system-packages.sh

# litellm in its own venv (its pins clash with ours): a foreign client in the e2e, the
# comparison target of bench-compare. Does nothing when it is already there.
litellm-venv:
	@bash scripts/litellm-venv.sh

migrate: install
	$(BIN)/llmctl migrate

dev: install
	@bash scripts/dev.sh

test: install system-packages litellm-venv
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: install
	$(BIN)/pytest -q -m "not e2e"

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install system-packages
	$(BIN)/python bench/run.py
	$(BIN)/python bench/admin_queries.py
	$(BIN)/python bench/pii.py

# the bench with a memory soak of 200,000 requests (errors and RSS growth reported): about
# 5 minutes at 650 req/s; the hour is only a guard for a machine too busy to get there
soak: install system-packages
	$(BIN)/python bench/run.py --soak-requests 200000 --soak-max-seconds 3600

bench-compare: install system-packages litellm-venv
	$(BIN)/python bench/run.py --compare

up:
	@test -f .env || { echo "make up: no .env; run 'cp env.example .env' and set its secrets" >&2; exit 1; }
	docker compose -f infra/docker-compose.yml --env-file .env up -d --build

down:
	@test -f .env || { echo "make down: no .env (the stack was started with one)" >&2; exit 1; }
	docker compose -f infra/docker-compose.yml --env-file .env down

clean:
	rm -rf $(VENV) data .pytest_cache
