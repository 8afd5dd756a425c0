# The two commands of the README: `make run` and `make test`. Everything else they need is
# installed here, into .venv, from the pinned requirements.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

# moto accepts any credentials; real ones are never needed (nor wanted) for a local run.
export AWS_ACCESS_KEY_ID ?= local-moto
export AWS_SECRET_ACCESS_KEY ?= local-moto
export AWS_DEFAULT_REGION ?= us-east-1
# Every process of a local run writes its Prometheus metrics here; /metrics adds them up.
run: export PROMETHEUS_MULTIPROC_DIR := $(CURDIR)/.run/prometheus

NODE_STAMP := frontend/node_modules/.installed-$(shell cat frontend/package-lock.json | cksum | cut -d' ' -f1)
UI_SOURCES := $(shell find frontend/src -type f 2>/dev/null) frontend/index.html frontend/vite.config.js

# pytest-xdist: one worker per core; the system tests form one group that a single worker runs
# one test at a time (tests/conftest.py). XDIST= runs everything in this process.
XDIST ?= -n auto --dist loadgroup
# What the PostgreSQL pass runs: every test that reaches the database, no browser test.
DATABASE_TESTS := database and not browser
# pytest's exit 5 means "no tests collected" (e.g. a -k filter that matches nothing).
define pytest
	$(BIN)/pytest $(XDIST) $(1) $(PYTEST_ARGS); status=$$?; \
	  if [ $$status -eq 5 ]; then echo "make: no tests were collected"; exit 0; fi; exit $$status
endef

.PHONY: install run test test-database test-fast bench lint format clean ui

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

$(NODE_STAMP): frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	rm -f frontend/node_modules/.installed-*
	touch $(NODE_STAMP)

frontend/dist/index.html: $(NODE_STAMP) $(UI_SOURCES)
	cd frontend && npm run build --silent

## The browser UI, built into frontend/dist (served by Django at /).
ui: frontend/dist/index.html

install: $(STAMP) $(NODE_STAMP)

## Set up and run the whole service on embedded defaults (Ctrl-C stops everything).
run: $(STAMP) ui
	rm -rf $(PROMETHEUS_MULTIPROC_DIR) && mkdir -p .run $(PROMETHEUS_MULTIPROC_DIR)
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py createcachetable
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py create_demo_account
	$(BIN)/honcho start -f Procfile

## Set up and run the whole test suite (lint, the UI's unit tests, then pytest with the
## browser tests against the built UI).
test: $(STAMP) ui
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd frontend && npm test --silent
	scripts/ensure-chromium
	$(call pytest,)

## The tests that reach the database, and only those (CI's PostgreSQL pass, DATABASE_URL set).
test-database: $(STAMP)
	$(call pytest,-m "$(DATABASE_TESTS)")

## The fast inner loop: the pure, API, admin and security tests, no process-level test.
test-fast: $(STAMP)
	$(call pytest,-m "not system")

## The benchmarks (docs/performance.md): make bench BENCH=ingest BENCH_ARGS="--concurrency 8".
BENCH ?= all
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH) $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) staticfiles gomail.sqlite3 gomail.sqlite3-* frontend/node_modules frontend/dist .run
