#!/usr/bin/env bash
# The e2e recipe (docs/e2e.md): a kind cluster with both images loaded and the chart installed.
#   e2e/kind-up.sh            # create the kind cluster "llmops-e2e", then everything else
#   E2E_NO_CLUSTER=1 e2e/kind-up.sh   # the cluster exists already (CI: helm/kind-action)
# Needs docker, kind, kubectl and helm. Then: KUBECONFIG=~/.kube/config make e2e.
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=${E2E_CLUSTER:-llmops-e2e}
TAG=${E2E_TAG:-e2e}
OPERATOR_IMAGE=ghcr.io/llmops-dev/llm-operator
SERVER_IMAGE=ghcr.io/llmops-dev/llm-server
MODELS=$PWD/.e2e/models

# Images: the operator, and the CPU build of the server (CPU pods run <tag>-cpu).
docker build -f operator/Dockerfile -t "$OPERATOR_IMAGE:$TAG" .
docker build -f server_image/Dockerfile --build-arg VARIANT=cpu -t "$SERVER_IMAGE:$TAG-cpu" .

# examples/cpu-tiny.yaml serves file:///models/tiny-random (a hostPath on the node): build
# the tiny random-weight model with the server image itself, readable by its UID 10001.
mkdir -p "$MODELS"
if [ ! -f "$MODELS/tiny-random/model.safetensors" ]; then
  docker run --rm --user "$(id -u):$(id -g)" -v "$MODELS:/out" --entrypoint python \
    "$SERVER_IMAGE:$TAG-cpu" -c \
    "from pathlib import Path; from llm_server.tiny_model import build_tiny_model; build_tiny_model(Path('/out/tiny-random'))"
fi
chmod -R a+rX "$MODELS"

if [ -z "${E2E_NO_CLUSTER:-}" ]; then
  e2e/kind-config.sh "$MODELS" > .e2e/kind-config.yaml
  kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --config .e2e/kind-config.yaml
fi
kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE:$TAG" "$SERVER_IMAGE:$TAG-cpu"

helm upgrade --install llmops charts/llm-operator \
  --namespace llm-system --create-namespace \
  --set image.tag="$TAG" --set image.pullPolicy=Never \
  --set server.image.tag="$TAG" \
  --set operator.resyncSeconds=10 \
  --wait --timeout 5m
kubectl -n llm-system rollout status deployment/llmops-llm-operator --timeout 3m
