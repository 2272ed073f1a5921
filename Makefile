# agentd — developer entry points. `make test` and `make run` set everything up from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ROLE ?=
PYTEST_ARGS ?=
# Most tests wait on real processes, so more workers than the 2 cores CI has keep both busy (6 burnt more CPU and
# failed a test under load); `worksteal` hands an idle worker the tests still queued on a busy one.
TEST_WORKERS ?= 4

.PHONY: help venv test test-full lint typecheck unit run torture torture-hosts bench bench-pg bench-peers clean docs-cli install uninstall browser postgres screenshots \
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

browser: ## install Debian's chromium for the browser tests when missing and we are root (else they skip, saying so)
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y chromium >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; } \
	      || echo "make: could not install chromium: the browser tests will skip"; \
	  else echo "make: /usr/bin/chromium missing (apt-get install -y chromium): the browser tests will skip"; fi; \
	fi

postgres: ## install Debian's PostgreSQL server for the PostgreSQL tests when missing and we are root (else they skip)
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y postgresql >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y postgresql >/dev/null; } \
	      || echo "make: could not install postgresql: the PostgreSQL tests will skip"; \
	  else echo "make: PostgreSQL server binaries missing (apt-get install -y postgresql): the PostgreSQL tests will skip"; fi; \
	fi

screenshots: $(STAMP) browser ## retake docs/screenshots/*.png from the browser tests
	AGENTD_SCREENSHOTS=1 $(BIN)/pytest -q -p no:cacheprovider tests/web/test_browser.py

unit: $(STAMP) browser postgres ## the test suite only, in parallel (TEST_WORKERS=1 for one process)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# mypy runs beside the suite at a low priority (it takes only the CPU the suite's waiting tests leave idle); its
# report follows the suite's, and either failing fails `make test`.
test: lint $(STAMP) browser postgres ## lint, types and the whole test suite
	@types=$$(mktemp); nice -n 10 $(BIN)/mypy >"$$types" 2>&1 & typer=$$!; \
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS); suite=$$?; \
	wait $$typer; typed=$$?; echo "$(BIN)/mypy (beside the suite):"; cat "$$types"; rm -f "$$types"; \
	if [ $$suite -ne 0 ]; then exit $$suite; fi; exit $$typed

test-full: ## make test with every property test's full example count (AGENTD_TEST_FULL=1; tests/helpers/examples.py)
	AGENTD_TEST_FULL=1 $(MAKE) --no-print-directory test

run: $(STAMP) ## run the bundled example sprint (examples/sprint) through all five roles
	$(BIN)/python scripts/demo.py

torture: $(STAMP) ## the full torture test (crash injection, 8 daemons, 2,000 tasks)
	$(BIN)/python -m tests.torture.run

torture-hosts: $(STAMP) postgres ## the long multi-host torture test (3 hosts in network namespaces on PostgreSQL; root)
	$(BIN)/python -m tests.torture.hosts_run

bench: $(STAMP) postgres ## measure and write docs/benchmarks.md (its PostgreSQL section too: root for the hosts)
	$(BIN)/python scripts/bench.py --write docs/benchmarks.md
	$(BIN)/python scripts/bench_web.py --write docs/benchmarks-web.md
	$(BIN)/python scripts/bench_peers.py --write docs/benchmarks-peers.md
	$(MAKE) --no-print-directory bench-pg

bench-pg: $(STAMP) postgres ## issue 13: file vs PostgreSQL, pickup and recovery across hosts, pgqueuer (root)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]' \
	  || echo "make: could not install the bench extra (pgqueuer): its table will say so"
	$(BIN)/python scripts/bench_pg.py --update docs/benchmarks.md

bench-peers: $(STAMP) ## agentd beside tsp, nq and huey (SECTIONS=cli,parallel,chain,idle,profile to pick)
	$(BIN)/python scripts/bench_peers.py $(if $(SECTIONS),--only $(SECTIONS)) --write docs/benchmarks-peers.md

docs-cli: $(STAMP) ## regenerate docs/reference/cli.md from the click commands
	$(BIN)/python scripts/gen_cli_docs.py > docs/reference/cli.md

# The agents-* targets act on your project, never on this checkout: PROJECT=DIR says which (this checkout's agentd
# runs there unless the project has its own .venv/bin/agentd).
PROJECT ?=
AGENTS_CLI = @if [ -z "$(PROJECT)" ]; then \
	  echo "make: agents-* act on your project, not on this checkout: make $@ PROJECT=/path/to/project [ROLE=builder]" >&2; \
	  exit 2; fi; \
	AGENTD_ROOT="$(abspath $(PROJECT))" PATH="$(CURDIR)/$(BIN):$$PATH" scripts/agents-cli.sh

agents-start: $(STAMP) ## start role daemons of PROJECT=DIR in the background (ROLE=builder for one)
	$(AGENTS_CLI) start $(ROLE)
agents-stop: $(STAMP) ## stop role daemons of PROJECT=DIR
	$(AGENTS_CLI) stop $(ROLE)
agents-restart: $(STAMP) ## restart role daemons of PROJECT=DIR
	$(AGENTS_CLI) restart $(ROLE)
agents-status: $(STAMP) ## show role daemons of PROJECT=DIR
	$(AGENTS_CLI) status $(ROLE)
agents-logs: $(STAMP) ## show a role's log in PROJECT=DIR (ROLE=builder)
	$(AGENTS_CLI) logs $(ROLE)

PREFIX ?= $(HOME)/.local
install: ## install agentd into PREFIX (default ~/.local): its own venv in PREFIX/lib/agentd, PREFIX/bin/agentd
	$(PYTHON) -m venv "$(PREFIX)/lib/agentd"
	"$(PREFIX)/lib/agentd/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
	"$(PREFIX)/lib/agentd/bin/python" -m pip install --quiet --disable-pip-version-check "$(CURDIR)"
	mkdir -p "$(PREFIX)/bin"
	ln -sf "$(PREFIX)/lib/agentd/bin/agentd" "$(PREFIX)/bin/agentd"
	install -m 755 scripts/agents-cli.sh "$(PREFIX)/bin/agents-cli.sh"
	@echo "installed: $(PREFIX)/bin/agentd ($$("$(PREFIX)/bin/agentd" --version)); put $(PREFIX)/bin on PATH"

uninstall: ## remove what `make install PREFIX=...` installed
	rm -rf "$(PREFIX)/lib/agentd" "$(PREFIX)/bin/agentd" "$(PREFIX)/bin/agents-cli.sh"

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
