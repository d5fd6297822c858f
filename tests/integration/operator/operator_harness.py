"""Harness: the real operator (kopf with handlers.py, in-process) against the real control
plane of tests/support: kube-apiserver with the project's CRD, the controller-manager making
ReplicaSets and Pods and collecting garbage, the scheduler binding pods to fake GPU Nodes (or
marking them Unschedulable), and the fake kubelet making bound pods Ready.

The operator talks to the API server as in a pod, through $KUBECONFIG (the `operator_env`
fixture points it at the admin's, or a test at a ServiceAccount token's); the tests use the
`kube` client. Nothing here plays a controller.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from control_plane import ControlPlane
from kube_client import Kube
from vendored_crds import inference_pool_crd

from llm_operator.catalog import default_catalog
from llm_operator.cost import replica_dollars_per_hour
from llm_operator.render.objects import DEPLOYMENT_LABEL

API_VERSION = "inference.llmops.dev/v1alpha1"
KIND = "LLMDeployment"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"  # NVIDIA GPU feature discovery's label
GPU_RESOURCE = "nvidia.com/gpu"
# The four children of a builtin-autoscaled LLMDeployment: (apiVersion, kind, name suffix).
CHILDREN = (
    ("v1", "ConfigMap", "-config"),
    ("v1", "Service", ""),
    ("apps/v1", "Deployment", ""),
    ("policy/v1", "PodDisruptionBudget", ""),
)

BASE_SPEC: dict[str, Any] = {
    "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "parameterCount": "8B"},
    "optimization": {"quantization": "int8"},
    "accelerator": {"type": "L4", "fallbacks": [{"type": "A10G"}]},
    "replicas": {"min": 1, "max": 2},
}


def manifest(namespace: str, name: str = "chat", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {**copy.deepcopy(BASE_SPEC), **spec},
    }


L4_PER_HOUR = replica_dollars_per_hour(default_catalog(), "L4", 1, "on-demand")
BUDGET_FOR_TWO = round(L4_PER_HOUR * 2.5, 2)  # pays for 2 L4 replicas; replicas.max is 4


def autoscaled_manifest(namespace: str, name: str, **autoscaling: Any) -> dict[str, Any]:
    """An L4 LLMDeployment the autoscaler may scale 1-4 under a budget that pays for 2.
    maxConcurrentSequences / 8 = 1 running request makes a replica full, so a server run with
    --max-num-seqs 1 and a few concurrent clients gives it a real queue to scale on."""
    model = {**BASE_SPEC["model"], "maxContextLength": 1024}  # the tiny test model's length
    return manifest(
        namespace,
        name,
        model=model,
        optimization={"quantization": "int8", "batching": {"maxConcurrentSequences": 8}},
        accelerator={"type": "L4"},
        replicas={"min": 1, "max": 4},
        autoscaling={"budget": {"maxDollarsPerHour": BUDGET_FOR_TWO}, **autoscaling},
    )


@pytest.fixture
def operator_env(control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's clients (kopf's and k8s.py's) read $KUBECONFIG: the admin's here."""
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))


def gpu_node(
    register: Callable[..., dict[str, Any]], namespace: str, accelerator: str, gpus: int = 8
) -> str:
    """A Node with `gpus` of the catalog's `accelerator`, labelled as GPU feature discovery
    labels it (the label the rendered node affinity asks for). Named after the test."""
    found = default_catalog().get(accelerator)
    assert found is not None, accelerator
    product = found.product_labels[0]
    name = f"{namespace}-{accelerator.lower()}"[:63]
    register(name, labels={GPU_PRODUCT_LABEL: product}, capacity={GPU_RESOURCE: str(gpus)})
    return name


class Llmd:
    """One LLMDeployment on the real API server, and what hangs off it."""

    def __init__(self, kube: Kube, namespace: str, name: str = "chat") -> None:
        self.kube, self.namespace, self.name = kube, namespace, name

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.kube.create(body)

    def get(self) -> dict[str, Any] | None:
        return self.kube.get(API_VERSION, KIND, self.name, self.namespace)

    def status(self) -> dict[str, Any]:
        return dict((self.get() or {}).get("status") or {})

    def condition(self, type_: str) -> dict[str, Any]:
        return condition(self.get(), type_)

    def patch_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self.kube.patch(API_VERSION, KIND, self.name, {"spec": spec}, self.namespace)

    def delete(self) -> None:
        self.kube.delete(API_VERSION, KIND, self.name, self.namespace)

    def child(self, api_version: str, kind: str, suffix: str = "") -> dict[str, Any] | None:
        return self.kube.get(api_version, kind, self.name + suffix, self.namespace)

    def children(self) -> list[dict[str, Any] | None]:
        return [self.child(v, k, s) for v, k, s in CHILDREN]

    def deployment(self) -> dict[str, Any]:
        return self.child("apps/v1", "Deployment") or {}

    def pods(self) -> list[dict[str, Any]]:
        selector = f"{DEPLOYMENT_LABEL}={self.name}"
        return self.kube.list("v1", "Pod", self.namespace, selector=selector)

    def events(self) -> list[tuple[str, str]]:
        """(type, reason) of the Events about it, oldest first."""
        found = self._events()
        found.sort(key=lambda e: e.get("eventTime") or e.get("firstTimestamp") or "")
        return [(e["type"], e["reason"]) for e in found]

    def event_messages(self, reason: str) -> list[str]:
        return [e["message"] for e in self._events() if e["reason"] == reason]

    def _events(self) -> list[dict[str, Any]]:
        # The Deployment has the same name: its controller's Events are not ours.
        found = self.kube.events(self.namespace, self.name)
        return [e for e in found if e["involvedObject"]["kind"] == KIND]


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def stand_in_crd(api_version: str, kind: str, plural: str) -> dict[str, Any]:
    """A CRD that serves `kind` and accepts any body: for the kinds of projects not installed
    here (KEDA's ScaledObject, the Prometheus Operator's ServiceMonitor). kopf resolves the
    kinds it watches at start-up, so apply it before the operator starts."""
    group, version = api_version.split("/")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def install_stand_in_crds(kube: Kube) -> None:
    """KEDA's and the Prometheus Operator's kinds (any body), and the real InferencePool CRD."""
    for crd in (
        stand_in_crd("keda.sh/v1alpha1", "ScaledObject", "scaledobjects"),
        stand_in_crd("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors"),
        inference_pool_crd(),
    ):
        kube.apply(crd)
        kube.wait_established(crd["metadata"]["name"])
