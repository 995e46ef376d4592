# pricepipe: `make run` starts the platform, `make test` runs the tests. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
STATE_DIR := $(or $(PRICEPIPE_STATE_DIR),$(HOME)/.local/state/pricepipe)
export DAGSTER_HOME ?= $(STATE_DIR)/dagster

.PHONY: run test install servers servers-down status clean

$(INSTALLED): pyproject.toml infra/local/system-deps.sh
	PYTHON=$(PYTHON) infra/local/system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	$(BIN)/pip install --quiet --editable '.[test]'
	touch $@

install: $(INSTALLED)

## Main job: local Kafka and Cassandra (and HDFS when the lake is on it), then the Dagster webserver and daemon.
run: install
	$(BIN)/pricepipe infra up kafka cassandra $(if $(findstring webhdfs://,$(PRICEPIPE_LAKE_URI)),hdfs)
	mkdir -p "$(DAGSTER_HOME)" && cp infra/dagster/dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## Tests against real servers: pytest starts those not running yet and stops them again at the end.
test: install
	$(BIN)/python -m pytest

servers: install
	$(BIN)/pricepipe infra up all

servers-down:
	$(BIN)/pricepipe infra down all

status:
	$(BIN)/pricepipe infra status

clean: servers-down
	rm -rf $(VENV) build *.egg-info
