"""Unschedulable pods -> GPU fallback; invalid spec -> Degraded once; delete; restart."""

from __future__ import annotations

import asyncio

from operator_harness import (
    LLMD,
    Cluster,
    condition,
    eventually,
    manifest,
    pending_pod,
    running_operator,
)

from llm_operator.render.objects import ACCELERATOR_LABEL, OPTION_LABEL

DEPLOYMENTS = "apps/v1/deployments"


def pod_labels(cluster: Cluster) -> dict[str, str]:
    deployment = cluster.get(DEPLOYMENTS, "chat") or {}
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


async def test_unschedulable_primary_falls_back_after_the_timeout(cluster: Cluster) -> None:
    async with running_operator():  # unschedulable timeout 0.5 s in tests
        await cluster.create(LLMD, manifest())
        await eventually(lambda: cluster.get(DEPLOYMENTS, "chat"))
        assert pod_labels(cluster)[OPTION_LABEL] == "primary"
        await cluster.create("v1/pods", pending_pod("chat", "chat-abc", "primary"))

        await eventually(
            lambda: condition(cluster.get(LLMD, "chat"), "FallbackActive").get("status") == "True"
        )
        status = cluster.status("chat")
        assert status["accelerator"] == {
            "type": "A10G",
            "count": 1,
            "capacity": "on-demand",
            "fallbackIndex": 0,
        }
        assert status["fallback"]["index"] == 0
        assert status["fallback"]["nextPrimaryProbe"]
        labels = await eventually(
            lambda: pod_labels(cluster)[OPTION_LABEL] == "fallback-0" and pod_labels(cluster)
        )
        assert labels[ACCELERATOR_LABEL] == "A10G"
        warnings = [e for e in cluster.events("chat") if e["type"] == "Warning"]
        assert [e["reason"] for e in warnings] == ["FallbackActivated"]  # sent before status
        assert "primary (1x L4) unschedulable" in warnings[0]["message"]


async def test_invalid_spec_is_degraded_once_without_a_retry_storm(cluster: Cluster) -> None:
    bad = manifest()
    bad["spec"]["accelerator"] = {"type": "T4"}
    bad["spec"]["optimization"] = {"quantization": "fp8"}  # the CRD's CEL would refuse this
    async with running_operator():
        await cluster.create(LLMD, bad)
        await eventually(lambda: cluster.status("chat").get("phase") == "Failed")
        degraded = condition(cluster.get(LLMD, "chat"), "Degraded")
        assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
        assert "fp8" in degraded["message"]
        await asyncio.sleep(1.5)  # three resync periods of the test operator
        assert cluster.requests("PATCH", LLMD + "", "chat") >= 1
        status_writes = sum(
            1
            for r in cluster.server
            if r.subresource == "status" and r.name == "chat" and r.method.value == "PATCH"
        )
        assert status_writes == 1
        assert [(e["type"], e["reason"]) for e in cluster.events("chat")] == [
            ("Warning", "InvalidSpec")
        ]
        assert cluster.objects(DEPLOYMENTS) == []


async def test_delete_removes_every_child(cluster: Cluster) -> None:
    async with running_operator():
        await cluster.create(LLMD, manifest())
        await eventually(lambda: len(cluster.objects(DEPLOYMENTS)) == 1)
        await eventually(lambda: cluster.status("chat"))
        await cluster.delete(LLMD, "chat")
        await eventually(lambda: cluster.get(LLMD, "chat") is None)  # kopf released it
        collected = await cluster.collect_garbage()  # Kubernetes' GC, by ownerReference uid
        assert collected == 4
        await asyncio.sleep(0.6)  # a resync period: nothing comes back
        for resource in ("v1/configmaps", "v1/services", DEPLOYMENTS):
            assert cluster.objects(resource) == []


async def test_restart_keeps_status_and_creates_no_duplicates(cluster: Cluster) -> None:
    async with running_operator():
        await cluster.create(LLMD, manifest())
        await cluster.create("v1/pods", pending_pod("chat", "chat-abc", "primary"))
        await eventually(lambda: cluster.status("chat").get("fallback"))
        before = cluster.status("chat")
    async with running_operator():
        ready = {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}
        await cluster.patch(DEPLOYMENTS, "chat", {"status": ready}, sub="status")
        await eventually(lambda: cluster.status("chat").get("phase") == "Ready")
        after = cluster.status("chat")
    assert after["fallback"] == before["fallback"]  # still on the fallback, same since
    fallback = condition({"status": after}, "FallbackActive")
    assert (
        fallback["lastTransitionTime"]
        == condition({"status": before}, "FallbackActive")["lastTransitionTime"]
    )
    for resource in ("v1/configmaps", "v1/services", DEPLOYMENTS):
        assert len(cluster.objects(resource)) == 1
        assert cluster.requests("POST", resource) == 1
    reasons = [e["reason"] for e in cluster.events("chat")]
    assert reasons.count("FallbackActivated") == 1
    assert reasons.count("Created") == 1
