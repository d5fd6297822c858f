"""The kinds the operator writes or watches, in one table (house rule 11: one owner per fact).

handlers.py registers an index and a watch for each child kind and for pods; k8s.py turns
(apiVersion, kind) into the URL's plural. Adding a kind the renderer produces means one row
here (and its verbs in the chart's RBAC, which tests/chart checks against this table).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceKind:
    api_version: str
    kind: str
    plural: str


# Gateway API Inference Extension: rendered only while the API server serves it (start-up check).
INFERENCE_POOL = ResourceKind("inference.networking.k8s.io/v1", "InferencePool", "inferencepools")
# Every kind of object rendered from an LLMDeployment (render/objects.py), owner-referenced.
CHILD_KINDS: tuple[ResourceKind, ...] = (
    ResourceKind("v1", "ConfigMap", "configmaps"),
    ResourceKind("v1", "Service", "services"),
    ResourceKind("apps/v1", "Deployment", "deployments"),
    ResourceKind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    ResourceKind("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors"),
    ResourceKind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    ResourceKind("keda.sh/v1alpha1", "ScaledObject", "scaledobjects"),
    INFERENCE_POOL,
)
POD = ResourceKind("v1", "Pod", "pods")  # watched (the Deployment's pods), never written
EVENT = ResourceKind("v1", "Event", "events")  # written, never watched

# What the operator watches: its children and their pods (all labelled managed-by).
WATCHED: tuple[ResourceKind, ...] = (*CHILD_KINDS, POD)

PLURALS: dict[tuple[str, str], str] = {
    (k.api_version, k.kind): k.plural for k in (*CHILD_KINDS, POD, EVENT)
}
