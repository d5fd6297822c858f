#!/usr/bin/env bash
# Prints the kind cluster config: one node with the host's model folder ($1) at /models.
set -euo pipefail
cat <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
    extraMounts:
      - hostPath: $1
        containerPath: /models
        readOnly: true
YAML
