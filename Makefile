# The verbs of the project. `make test` is what CI runs (.ci/run); `make demo` is the quick start.
SHELL := /bin/bash
PY := .venv/bin/python
CLUSTER ?= dev
export PATH := /var/cache/hexagon/bin:$(PATH)

.PHONY: help venv testenv lint unit integration test e2e cluster-up cluster-down cluster-status images bench demo chart-crds clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

venv: ## create .venv from requirements.lock
	@bash scripts/venv.sh

testenv: ## install every real part (etcd, Kubernetes, helm, Prometheus, containerd, images); cached
	@bash scripts/testenv.sh

lint: venv ## ruff, mypy --strict, import-linter layer contracts
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	.venv/bin/lint-imports

unit: venv ## pure-code tests only (no real parts needed)
	$(PY) -m pytest -m "not controlplane and not node and not prometheus and not e2e" $(ARGS)

test: testenv lint ## everything: lint, unit, integration on real apiserver/node/Prometheus, e2e
	$(PY) -m pytest $(ARGS)

e2e: testenv ## end-to-end tests on the real single-node cluster
	$(PY) -m pytest -m e2e $(ARGS)

cluster-up: testenv ## start the local single-node cluster (LEVEL=controlplane for API only)
	$(PY) -m testenv up --name $(CLUSTER) --level $(or $(LEVEL),node)

cluster-down: ## stop the local cluster and clean the machine
	$(PY) -m testenv down --name $(CLUSTER)

cluster-status: ## show which cluster components run
	$(PY) -m testenv status --name $(CLUSTER)

images: testenv ## build the gateway, operator and Prometheus images; load them into the dev cluster
	$(PY) -m testenv images --name $(CLUSTER)

bench: testenv ## benchmarks (print figures, never assert times)
	$(PY) bench/gateway.py

demo: testenv ## the quick start: local cluster, chart, sample hexagon, a hung gateway healed live
	$(PY) -m e2e.demo

chart-crds: ## copy crds/ into the chart (a test fails when they differ)
	cp crds/*.yaml charts/hexagon/crds/

clean: ## remove the virtualenv and caches inside the repo
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache build *.egg-info
