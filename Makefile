# The front door. Every target does its own set-up from nothing (virtualenv, pip, npm).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CDK := npx --no-install cdk
CDK_FLAGS := --no-notices
STACK ?= ReportRelay
export PYTHONPATH := $(CURDIR)/functions:$(CURDIR)/cli:$(CURDIR)
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: demo test unit contract workflow infra faults pr lint format bench clean demo-dev dev infra-dev synth lint-infra test-infra diff deploy destroy openapi

# Local targets run offline against emulated AWS; deploy/diff/destroy use your AWS profile's region.
demo test unit contract workflow infra faults pr test-infra synth lint-infra: export AWS_REGION ?= us-east-1

# The tests run on pytest-xdist workers. They wait as much as they compute (on sockets, simulators, the
# state machine's waits), so more workers than cores pays: five on two cores (six is slower: the CPU is
# then the limit; README has the time measured). Tests that share a fixture instance (a synthesized stack,
# a fault matrix, a served site) go to one worker together, and the long tiers start first
# (tests/conftest.py).
WORKERS ?= 5
PYTEST := $(PY) -m pytest -q -n $(WORKERS) --dist loadgroup

# Where PYTHONDONTWRITEBYTECODE is set (as on some machines), every worker would compile the project and
# rewrite every test module's asserts again, about 8 s of CPU each: bytecode is written (in __pycache__,
# which git ignores). Before the workers start, the project is compiled and one collection rewrites the
# test modules (and pytest plugins) once, instead of five workers doing it at once (from a fresh clone:
# the parallel run 329 s without it, 287 s with it, about 20 s for the collection).
unexport PYTHONDONTWRITEBYTECODE
COMPILE := $(PY) -m compileall -q -j 0 functions cli infra scripts tests app.py
PREPARE := $(PY) -m pytest --collect-only -q -p no:cacheprovider > /dev/null

# One virtualenv, two stamps: the demo's set first (requirements-demo.txt: the Lambda runtime and moto), then
# everything else on top of it (tests, linters, benchmarks, the CDK app and its validators), so `make demo`
# stays light and a later `make test` only adds what it lacks.
$(VENV)/.stamp-demo: requirements.txt requirements-demo.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-demo.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.stamp-python: $(VENV)/.stamp-demo requirements-dev.txt requirements-cdk.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt -r requirements-cdk.txt
	touch $@

node_modules/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# The browser tests (tests/api/test_browser.py, test_console_browser.py) drive Debian's Chromium and its
# driver; the terminal test (tests/cli/test_watch_terminal.py) runs `jobs watch` in tmux. Installed with apt
# where they are missing (as root, or through sudo); where that cannot be done the build goes on, loudly,
# and those tests skip themselves.
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
TMUX := /usr/bin/tmux
BROWSER_PACKAGES := chromium chromium-driver tmux
BROWSER_SKIPPED := the browser and terminal tests will be SKIPPED; install them: sudo apt-get install $(BROWSER_PACKAGES)

build/.stamp-browser:
	@mkdir -p $(@D)
	@if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ] && [ -x $(TMUX) ]; then touch $@; exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
		echo "WARNING: $(CHROMIUM), $(CHROMEDRIVER) or $(TMUX) is missing and there is no apt-get: $(BROWSER_SKIPPED)" >&2; \
		exit 0; \
	fi; \
	if [ "$$(id -u)" = 0 ]; then as_root=; \
	elif command -v sudo >/dev/null; then as_root=sudo; \
	else echo "WARNING: installing $(BROWSER_PACKAGES) needs root and there is no sudo: $(BROWSER_SKIPPED)" >&2; exit 0; \
	fi; \
	install="$${as_root:+$$as_root }env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(BROWSER_PACKAGES)"; \
	echo "$$install"; \
	$$install || { $$as_root apt-get update && $$install; } || true; \
	if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ] && [ -x $(TMUX) ]; then touch $@; \
	else echo "WARNING: apt-get could not install $(BROWSER_PACKAGES): $(BROWSER_SKIPPED)" >&2; \
	fi

demo-dev: $(VENV)/.stamp-demo

dev: $(VENV)/.stamp-python

infra-dev: $(VENV)/.stamp-python node_modules/.stamp

demo: demo-dev  ## Fetch a report from every simulator end to end through the state machine.
	$(PY) -m reportrelay_cli demo --out out/demo

test: infra-dev build/.stamp-browser  ## Every test: units, provider contracts over HTTP, the executed state machine, the CDK app.
	$(COMPILE)
	$(PREPARE)
	$(PYTEST)

# One tier each (markers from the test's folder, tests/conftest.py); `pr` is the quick set a pull request runs.
unit: dev  ## tests/unit: the modules one by one.
	$(PYTEST) -m unit

contract: dev  ## tests/providers, tests/contract: each vendor's provider against its simulator over HTTP.
	$(PYTEST) -m contract

workflow: dev  ## tests/workflow, tests/iam, tests/awsfaults: the state machine executed on emulated AWS.
	$(PYTEST) -m workflow

infra: dev  ## tests/infra: the CDK app synthesized and checked.
	$(PYTEST) -m infra

faults: dev  ## tests/faults: every fault for every vendor through the state machine.
	$(PYTEST) -m faults

pr: dev build/.stamp-browser  ## The quick tiers: unit, contract, api (with the browser) and cli.
	$(PYTEST) -m "unit or contract or api or cli"

lint: infra-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: dev  ## Throughput and peak memory: streaming into S3 (SeaweedFS over HTTPS, links paced to 100 and 40 MiB/s; 128 MiB, 1 GiB; a resumed 2 GiB) against boto3; myreports JSON to CSV (100k, 1M rows); the wait policy on a simulated clock; 20, 50 and 200 jobs on a connection capped at 5.
	$(PY) benchmarks/transfer.py
	$(PY) benchmarks/myreports_csv.py
	$(PY) benchmarks/polling.py
	$(PY) benchmarks/concurrency.py

synth: infra-dev  ## Synthesize the CloudFormation template (offline).
	$(CDK) synth $(CDK_FLAGS) --quiet

lint-infra: synth  ## cfn-lint the template; validate the deployed ASL with asl-validator and statelint.
	$(VENV)/bin/cfn-lint cdk.out/*.template.json
	mkdir -p build
	$(PY) -m infra.definition cdk.out/$(STACK).template.json > build/deployed.asl.json
	npx --no-install asl-validator --json-path build/deployed.asl.json
	$(VENV)/bin/statelint --ignore=FLOAT build/deployed.asl.json

openapi: dev  ## Regenerate docs/openapi.json from the job API's routes (a test fails while it is stale).
	$(PY) scripts/openapi.py

test-infra: dev
	$(PY) -m pytest -q tests/infra tests/unit/test_schedules.py

diff: infra-dev
	$(CDK) diff $(CDK_FLAGS)

deploy: infra-dev  ## Deploy to the AWS account and region of your current credentials.
	$(CDK) deploy $(CDK_FLAGS) --require-approval broadening

destroy: infra-dev
	$(CDK) destroy $(CDK_FLAGS)

clean:
	rm -rf $(VENV) node_modules cdk.out out build .pytest_cache .ruff_cache
