"""Issue 16, item 3: the scale subresource works for every LLMDeployment on the real API
server, with or without `replicas.desired` (kubectl scale, HPA and KEDA read and write it)."""

from __future__ import annotations

from typing import Any

import pytest
from kube_client import Kube

API = "inference.llmops.dev/v1alpha1"


def _llmd(name: str, namespace: str, replicas: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "parameterCount": "8B"},
        "accelerator": {"type": "L4"},
        "autoscaling": {"mode": "none"},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    meta = {"name": name, "namespace": namespace}
    return {"apiVersion": API, "kind": "LLMDeployment", "metadata": meta, "spec": spec}


@pytest.mark.parametrize(
    "replicas",
    [None, {"min": 1, "max": 3}, {"min": 0, "max": 2}, {"min": 1, "max": 4, "desired": 2}],
    ids=["no-replicas", "range-only", "min-zero", "desired-set"],
)
def test_scale_reads_and_writes_for_every_llmdeployment(
    kube: Kube, namespace: str, replicas: dict[str, Any] | None
) -> None:
    kube.create(_llmd("chat", namespace, replicas))
    scale_path = kube.path(API, "LLMDeployment", namespace, "chat", "scale")

    scale = kube.request("GET", scale_path)  # was 500 without replicas.desired

    assert scale["kind"] == "Scale"
    expected = (replicas or {}).get("desired", 1)
    assert scale["spec"]["replicas"] == expected
    assert scale["status"]["replicas"] == 0  # no status yet: the server's default
    scale["spec"]["replicas"] = 2
    kube.request("PUT", scale_path, scale)  # kubectl scale --replicas=2
    stored = kube.get(API, "LLMDeployment", "chat", namespace) or {}
    assert stored["spec"]["replicas"]["desired"] == 2
    assert kube.request("GET", scale_path)["spec"]["replicas"] == 2


def test_scale_reports_status_replicas_and_selector(kube: Kube, namespace: str) -> None:
    kube.create(_llmd("chat", namespace, {"min": 1, "max": 3}))
    selector = "app.kubernetes.io/name=llm-server,inference.llmops.dev/deployment=chat"
    status = {"status": {"replicas": 3, "selector": selector}}
    kube.patch(API, "LLMDeployment", "chat", status, namespace, sub="status")

    scale = kube.request("GET", kube.path(API, "LLMDeployment", namespace, "chat", "scale"))

    assert scale["status"] == {"replicas": 3, "selector": selector}
