# agentd — developer entry points. `make test` and `make run` set everything up from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ROLE ?=
PYTEST_ARGS ?=
# Most tests wait on real processes, so more workers than the 2 cores CI has keep both busy.
TEST_WORKERS ?= 4

.PHONY: help venv test lint typecheck unit run torture bench clean docs-cli \
        agents-start agents-stop agents-restart agents-status agents-logs

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install agentd with its test extras

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

typecheck: $(STAMP) ## mypy --strict on src/
	$(BIN)/mypy

unit: $(STAMP) ## the test suite only, in parallel (TEST_WORKERS=1 for one process)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

test: lint typecheck unit ## lint, types and the whole test suite

run: $(STAMP) ## run the bundled example sprint (examples/sprint) through all five roles
	$(BIN)/python scripts/demo.py

torture: $(STAMP) ## the full torture test (crash injection, 8 daemons, 2,000 tasks)
	$(BIN)/python -m tests.torture.run

bench: $(STAMP) ## measure and write docs/benchmarks.md
	$(BIN)/python scripts/bench.py --write docs/benchmarks.md

docs-cli: $(STAMP) ## regenerate docs/reference/cli.md from the click commands
	$(BIN)/python scripts/gen_cli_docs.py > docs/reference/cli.md

agents-start: $(STAMP) ## start role daemons in the background (ROLE=builder for one)
	scripts/agents-cli.sh start $(ROLE)
agents-stop: $(STAMP) ## stop role daemons
	scripts/agents-cli.sh stop $(ROLE)
agents-restart: $(STAMP) ## restart role daemons
	scripts/agents-cli.sh restart $(ROLE)
agents-status: $(STAMP) ## show role daemons
	scripts/agents-cli.sh status $(ROLE)
agents-logs: $(STAMP) ## show a role's log (ROLE=builder)
	scripts/agents-cli.sh logs $(ROLE)

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
