"""Two operator replicas with kopf peering on the real API server: one acts, the other
stands by and takes over when the first stops; and `--catalog-configmap`: a ConfigMap's
catalog changes prices and the GPU node labels the pods ask for."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import yaml
from kube_client import Kube, wait_until
from operator_harness import (
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    Llmd,
    gpu_node,
    manifest,
)
from operator_thread import operator_config, running_operator

from llm_operator.__main__ import prepare_cluster
from llm_operator.k8s import KubeApi

PEERING = "llm-operator"


def writes(memo: Any) -> int:
    """Requests that change something, sent by this replica's own client (k8s.py)."""
    runtime = getattr(memo, "runtime", None)
    counted = runtime.api.requests if runtime is not None else {}
    return sum(counted.get(verb, 0) for verb in ("apply", "post", "patch", "delete"))


@pytest.fixture
def failover(
    kube: Kube, kubelet: Any, namespace: str, nodes: Any, operator_env: None
) -> dict[str, Any]:
    """Two replicas: the leader (priority 10) creates and readies an LLMDeployment while the
    standby (5) is paused; the leader stops, the standby reconciles a spec change. Returns
    what each replica wrote and the Events."""
    gpu_node(nodes, namespace, "L4")
    config = operator_config(namespace, peering=PEERING)
    api = KubeApi.from_environment()
    try:  # as __main__.run does before kopf starts: the KopfPeering object
        asyncio.run(prepare_cluster(api, config, timeout=10))
    finally:
        api.close()
    llmd = Llmd(kube, namespace)
    seen: dict[str, Any] = {}

    def peers() -> set[str]:
        peering = kube.get("kopf.dev/v1", "KopfPeering", PEERING, namespace) or {}
        return set(peering.get("status") or {})

    with running_operator(config, peering=True, priority=5, identity="replica-b") as standby:
        with running_operator(config, peering=True, priority=10, identity="replica-a") as leader:
            wait_until(lambda: {"replica-a", "replica-b"} <= peers(), 60, "both peers")
            llmd.create(manifest(namespace))
            wait_until(lambda: llmd.status().get("phase") == "Ready", 120, "Ready")
            time.sleep(1.0)  # two resync periods: the standby would have acted by now
            seen["leader_writes"], seen["standby_paused_writes"] = writes(leader), writes(standby)
        # The leader stopped (and left the peering): the standby resumes and reconciles.
        spec = manifest(namespace)["spec"]
        spec["model"]["maxContextLength"] = 2048
        llmd.patch_spec(spec)
        wait_until(lambda: llmd.status().get("observedGeneration") == 2, 120, "generation 2")
        wait_until(lambda: llmd.status().get("phase") == "Ready", 120, "Ready again")
        seen["standby_writes"] = writes(standby)
    seen["events"] = llmd.events()
    return seen


def test_two_replicas_one_acts_the_other_takes_over(failover: dict[str, Any]) -> None:
    assert failover["leader_writes"] > 0
    assert failover["standby_paused_writes"] == 0  # paused: a lower priority than a live peer
    assert failover["standby_writes"] > 0  # it took over
    assert ("Normal", "Updated") in failover["events"]  # the spec change, by the new leader


def test_failover_emits_no_second_created_or_ready_event(failover: dict[str, Any]) -> None:
    """The new leader's indices are cold when it resumes; it must not re-create (Created) or
    flap the status (a second Ready) before the spec change it was given. After that change
    the rollout sets Ready False until the new pods are ready, so one more Ready is right."""
    reasons = [reason for _, reason in failover["events"]]
    assert reasons.count("Created") == 1, reasons
    assert reasons[: reasons.index("Updated")] == ["Created", "Ready"], reasons


def test_catalog_configmap_sets_prices_and_node_labels(
    kube: Kube, kubelet: Any, namespace: str, nodes: Any, operator_env: None
) -> None:
    override = {
        "accelerators": [
            {"name": "L4", "productLabels": ["Our-L4"], "prices": {"onDemand": 9.5}},
        ]
    }
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "gpu-catalog", "namespace": namespace},
            "data": {"catalog.yaml": yaml.safe_dump(override)},
        }
    )
    node = f"{namespace}-our-l4"[:63]
    nodes(node, labels={GPU_PRODUCT_LABEL: "Our-L4"}, capacity={GPU_RESOURCE: "4"})
    config = operator_config(namespace, catalog_configmap=f"{namespace}/gpu-catalog")
    llmd = Llmd(kube, namespace)
    with running_operator(config):
        llmd.create(manifest(namespace, accelerator={"type": "L4"}))
        wait_until(lambda: llmd.status().get("phase") == "Ready", 120, "Ready on our L4 node")
        assert {p["spec"]["nodeName"] for p in llmd.pods()} == {node}
        assert llmd.status()["cost"]["dollarsPerHour"] == 9.5
