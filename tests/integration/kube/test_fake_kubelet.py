"""The harness itself: a Deployment on the real control plane becomes Ready pods with
loopback IPs on a registered Node, and deleting it removes them (garbage collector + kubelet)."""

from __future__ import annotations

from typing import Any

from kube_client import Kube, wait_until


def _deployment(namespace: str, replicas: int) -> dict[str, Any]:
    labels = {"app": "web"}
    container = {"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 8000}]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def test_deployment_pods_become_ready_on_loopback_and_go_with_it(
    kube: Kube, kubelet: Any, namespace: str, nodes: Any
) -> None:
    nodes("harness-node")
    kube.apply(_deployment(namespace, 2))

    def ready() -> bool:
        status = (kube.get("apps/v1", "Deployment", "web", namespace) or {}).get("status") or {}
        return status.get("readyReplicas") == 2

    wait_until(ready, 30, "2 ready replicas")
    pods = kube.list("v1", "Pod", namespace)
    assert {p["spec"]["nodeName"] for p in pods} == {"harness-node"}
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 2 and all(ip.startswith("127.") for ip in ips)

    kube.delete("apps/v1", "Deployment", "web", namespace)
    wait_until(lambda: not kube.list("v1", "Pod", namespace), 30, "pods deleted")
