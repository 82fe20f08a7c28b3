# The front door. Every target does its own set-up from nothing (virtualenv, pip, npm).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/functions:$(CURDIR)
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export AWS_REGION ?= us-east-1

.PHONY: demo test lint format bench clean dev

$(VENV)/.stamp-python: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

dev: $(VENV)/.stamp-python

demo: dev  ## Fetch a report end to end through the state machine, against the bundled simulators.
	$(PY) -m reportrelay.cli demo --out out/demo

test: dev  ## Every test: unit, provider contracts over HTTP, the executed state machine.
	$(PY) -m pytest -q

lint: dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: dev  ## Throughput and peak memory of streaming into S3 (128 MiB and 1 GiB).
	$(PY) benchmarks/transfer.py

clean:
	rm -rf $(VENV) node_modules cdk.out out .pytest_cache .ruff_cache
