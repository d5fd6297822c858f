"""KubeDirectory against the real API server, without servers: LLMDeployments and
EndpointSlices written by the test (addresses from 10.0.0.0/8: valid in a slice, never dialled),
watched through the admin's kubeconfig.

- targets follow creates, endpoint conditions, slice deletes; wait_changed wakes on each;
- a slice without the operator's deployment label (not a Service of ours) is not watched;
- two LLMDeployments serving one model: the oldest wins, one warning; deleting it hands over;
- signal_demand merge-patches the demand annotation once per DEMAND_REFRESH_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from control_plane import ControlPlane
from kube_client import Kube
from llmd_manifest import llmd_manifest

from llm_gateway.directory import ModelTarget, Replica
from llm_gateway.kube_api import KubeApi, load_configuration
from llm_gateway.kube_directory import KubeDirectory
from llm_operator.api.demand import DEMAND_ANNOTATION, parse_demand_stamp
from llm_operator.render.objects import DEPLOYMENT_LABEL

API = "inference.llmops.dev/v1alpha1"


def llmd(namespace: str, name: str, served: str) -> dict[str, Any]:
    model = {"uri": f"hf://org/{name}", "servedName": served}
    return llmd_manifest(namespace, name, model=model, accelerator={"type": "cpu"})


def endpoint_slice(
    namespace: str, service: str, endpoints: list[tuple[str, str, dict[str, bool]]],
    labelled: bool = True,
) -> dict[str, Any]:  # fmt: skip
    labels = {"kubernetes.io/service-name": service}
    if labelled:
        labels[DEPLOYMENT_LABEL] = service
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-x1", "namespace": namespace, "labels": labels},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [ip], "conditions": conditions,
             "targetRef": {"kind": "Pod", "name": pod, "namespace": namespace}}
            for pod, ip, conditions in endpoints
        ],
    }  # fmt: skip


async def eventually(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        await asyncio.sleep(0.05)
    return result


def replicas_of(directory: KubeDirectory, model: str) -> tuple[Replica, ...] | None:
    target = directory.get(model)
    return None if target is None else target.replicas


def test_the_directory_follows_deployments_slices_collisions_and_stamps_demand(
    control_plane: ControlPlane, kube: Kube, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="llm_gateway.kube_directory")

    async def scenario() -> None:
        api = KubeApi(load_configuration(str(control_plane.kubeconfig)))
        async with KubeDirectory(api, (namespace,), resync_seconds=30) as directory:
            assert await directory.wait_synced(30) and directory.synced()
            assert directory.models() == []

            kube.create(llmd(namespace, "first", "shared-model"))
            await eventually(lambda: directory.get("shared-model"), "the model")
            assert directory.get("shared-model") == ModelTarget(
                "shared-model",
                namespace,
                "first",
                (),
                capacity_per_replica=64,  # the default
            )

            # A Service's slice: ready, not ready, terminating; and a slice not of ours.
            kube.apply(endpoint_slice(namespace, "first", [
                ("first-a", "10.0.0.1", {"ready": True}),
                ("first-b", "10.0.0.2", {"ready": False}),
                ("first-c", "10.0.0.3", {"ready": False, "serving": True, "terminating": True}),
            ]))  # fmt: skip
            stray = endpoint_slice(namespace, "first", [("stray", "10.9.9.9", {})], False)
            stray["metadata"]["name"] = "stray"
            kube.apply(stray)
            found = await eventually(lambda: replicas_of(directory, "shared-model"), "replicas")
            assert found == (
                Replica("first-a", "http://10.0.0.1:8000", ready=True, terminating=False),
                Replica("first-b", "http://10.0.0.2:8000", ready=False, terminating=False),
                Replica("first-c", "http://10.0.0.3:8000", ready=False, terminating=True),
            )
            target = directory.get("shared-model")
            assert target is not None and [r.pod for r in target.serving()] == ["first-a"]

            # A change wakes a waiter (a held request) before its timeout.
            waiter = asyncio.create_task(directory.wait_changed(30))
            await asyncio.sleep(0.1)
            kube.apply(endpoint_slice(namespace, "first", [
                ("first-a", "10.0.0.1", {"ready": True}), ("first-b", "10.0.0.2", {"ready": True}),
            ]))  # fmt: skip
            started = time.monotonic()
            await asyncio.wait_for(waiter, 30)
            assert time.monotonic() - started < 30
            await eventually(
                lambda: len((directory.get("shared-model") or target).serving()) == 2, "2 ready"
            )

            # A younger LLMDeployment serving the same model: the oldest keeps it, one warning.
            await asyncio.sleep(1.1)  # creationTimestamp has a resolution of one second
            kube.create(llmd(namespace, "second", "shared-model"))
            kube.create(llmd(namespace, "other", "other-model"))
            await eventually(lambda: directory.get("other-model"), "the other model")
            assert directory.get("shared-model").deployment == "first"  # type: ignore[union-attr]
            kube.patch(API, "LLMDeployment", "second", {"metadata": {"labels": {"x": "y"}}},
                       namespace)  # fmt: skip
            await asyncio.sleep(0.5)
            warnings = [r.getMessage() for r in caplog.records if "several" in r.getMessage()]
            assert len(warnings) == 1, warnings
            assert f"{namespace}/first" in warnings[0] and f"{namespace}/second" in warnings[0]

            # Demand: one merge patch of the annotation; again within the refresh: no write.
            await directory.signal_demand(directory.get("shared-model"))  # type: ignore[arg-type]
            stamped = kube.get(API, "LLMDeployment", "first", namespace) or {}
            stamp = (stamped["metadata"].get("annotations") or {}).get(DEMAND_ANNOTATION)
            assert parse_demand_stamp(stamp) is not None
            assert stamped["spec"]["model"]["servedName"] == "shared-model"  # spec untouched
            await directory.signal_demand(directory.get("shared-model"))  # type: ignore[arg-type]
            again = kube.get(API, "LLMDeployment", "first", namespace) or {}
            assert again["metadata"]["resourceVersion"] == stamped["metadata"]["resourceVersion"]

            # The oldest goes: the model moves to the other deployment (its Service has no
            # slice yet: known, zero replicas).
            kube.delete(API, "LLMDeployment", "first", namespace)
            await eventually(
                lambda: (t := directory.get("shared-model")) and t.deployment == "second",
                "handed over",
            )
            assert replicas_of(directory, "shared-model") == ()
            kube.delete("discovery.k8s.io/v1", "EndpointSlice", "first-x1", namespace)
            kube.delete(API, "LLMDeployment", "second", namespace)
            await eventually(lambda: directory.get("shared-model") is None, "the model gone")

    asyncio.run(scenario())
