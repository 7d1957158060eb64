# Switchyard. Every target installs what it needs (virtualenv, pinned packages, pinned CDK CLI).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONWARNINGS := ignore::UserWarning:moto.cloudformation.parsing

.DEFAULT_GOAL := help
.PHONY: help demo dev test test-fast synth lint bench bench-smoke fuzz chaos chaos-orders chaos-sync mutation mutation-changed generate clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements/dev.lock requirements/lambda.txt requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: $(STAMP) ## run the demo: signed webhooks end to end on the embedded local stack, then a polled shop
	$(PY) -m switchyard_local.demo

dev: $(STAMP) ## keep the local stack running (prints the webhook URL and signing secret)
	$(VENV)/bin/switchyard local up

test: $(STAMP) node_modules/.installed ## run all tests (unit, integration, infra, end-to-end)
	# four workers on two cores: the end-to-end groups spend most of their time waiting on backoffs; bytecode
	# is written (the environment may forbid it) so a second run and each worker reuse the compiled tests
	PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -q -n 4 --dist loadgroup

test-fast: $(STAMP) ## unit tests only
	$(PY) -m pytest -q tests/unit

synth: $(STAMP) node_modules/.installed ## synthesize the CDK app (layer with dependencies) and cfn-lint it
	npx cdk synth --quiet
	$(VENV)/bin/cfn-lint cdk.out/Switchyard-*.template.json --non-zero-exit-code error

lint: $(STAMP) ## ruff, mypy and the layer contracts (import-linter, pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	PYTHONPATH=shared:local:. $(VENV)/bin/lint-imports

bench: $(STAMP) ## benchmarks (ratios in one run, cost per order per flow): bench/REPORT.md
	$(PY) -m bench.run

bench-smoke: $(STAMP) ## a tiny run of every benchmark (CI)
	$(PY) -m bench.run --smoke

fuzz: $(STAMP) ## fuzz every webhook endpoint (schemathesis, hostile input) and the parsers: 0 5xx, nothing queued when rejected
	$(PY) -m switchyard_local.fuzz

chaos-sync: $(STAMP) ## people edit Clarity and Streak at once, webhooks and APIs misbehave: does every pair converge?
	$(PY) -m switchyard_local.chaos_sync $(CHAOS_SYNC_ARGS)

chaos: chaos-orders chaos-sync ## both chaos harnesses: orders across every flow, and two-way convergence

chaos-orders: $(STAMP) ## orders across every flow under faults, reconciled (CHAOS_ARGS="--orders 2000 --seed 7 --max-seconds 900")
	$(PY) -m switchyard_local.chaos $(CHAOS_ARGS)

mutation: $(STAMP) ## mutation testing of the core (mutmut, fast suites): score per module and the survivors
	$(PY) -m switchyard_local.mutation $(MUTATION_ARGS)

MUTATION_BASE ?= main
mutation-changed: $(STAMP) ## mutate the core modules changed against MUTATION_BASE: <= 30 mutants, <= 5 min, >= 75 % killed (CI)
	$(PY) -m switchyard_local.mutation --changed $(MUTATION_BASE) --sample 30 --budget-seconds 300 --min-score 75 $(MUTATION_ARGS)

generate: $(STAMP) ## regenerate, from the envelope models, the ingest validators and docs/openapi.json
	$(PY) -m switchyard_local.codegen
	$(PY) -m switchyard_local.openapi > docs/openapi.json

clean: ## remove the virtualenv, node_modules and build output
	rm -rf $(VENV) node_modules cdk.out .local-stack bench/results
