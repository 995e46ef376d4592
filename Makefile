# pricepipe: `make run` starts the platform, `make test` runs the tests. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test install servers servers-down status clean

$(INSTALLED): pyproject.toml infra/local/system-deps.sh
	PYTHON=$(PYTHON) infra/local/system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	$(BIN)/pip install --quiet --editable '.[test]'
	touch $@

install: $(INSTALLED)

## Main job: local servers (Kafka, Cassandra, HDFS when the lake is on it), Dagster webserver and
## daemon, and the API, in the foreground; Ctrl-C stops everything it started.
## Offline, the feed replays history from the Binance dumps; a local mirror of them beside the
## checkout (as on the project's own machines) is used unless PRICEPIPE_BINANCE_DUMPS_URL says otherwise.
## The daily histories beside it (years of daily candles) go in first, so the daily model can train.
DUMPS_MIRROR := $(abspath ../shared/data/binance)
DAILY_HISTORY := $(abspath ../shared/data/daily_candles)
run: install
	$(if $(wildcard $(DUMPS_MIRROR)),PRICEPIPE_BINANCE_DUMPS_URL="$${PRICEPIPE_BINANCE_DUMPS_URL:-file://$(DUMPS_MIRROR)}") \
	$(if $(wildcard $(DAILY_HISTORY)),PRICEPIPE_DAILY_HISTORY_DIR="$${PRICEPIPE_DAILY_HISTORY_DIR-$(DAILY_HISTORY)}") \
	$(BIN)/pricepipe run

## Lint and type-check (mypy --strict, configured in pyproject.toml), then tests against real servers:
## pytest starts those not running yet and stops them again at the end.
test: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

servers: install
	$(BIN)/pricepipe infra up all

servers-down:
	$(BIN)/pricepipe infra down all

status:
	$(BIN)/pricepipe infra status

clean: servers-down
	rm -rf $(VENV) build *.egg-info
