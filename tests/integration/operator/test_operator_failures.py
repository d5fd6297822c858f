"""The real scheduler finds no L4 -> GPU fallback to the A10G node, pods Ready there; a spec
the API server accepts but no GPU can serve -> Failed once, no retry storm; a restarted
operator keeps status and makes nothing twice. All on the real control plane."""

from __future__ import annotations

import time
from typing import Any

from kube_client import Kube, wait_until
from operator_harness import Llmd, gpu_node, manifest
from operator_thread import operator_config, running_operator

from llm_operator.render.objects import ACCELERATOR_LABEL, OPTION_LABEL


def pod_labels(llmd: Llmd) -> dict[str, str]:
    return dict(llmd.deployment()["spec"]["template"]["metadata"]["labels"])


def test_no_l4_node_falls_back_to_the_a10g_node(
    kube: Kube, kubelet: Any, namespace: str, nodes: Any, operator_env: None
) -> None:
    a10g = gpu_node(nodes, namespace, "A10G")  # the cluster has A10Gs only
    llmd = Llmd(kube, namespace)
    with running_operator(operator_config(namespace)):  # unschedulable timeout 0.5 s in tests
        llmd.create(manifest(namespace))
        wait_until(lambda: llmd.condition("FallbackActive").get("status") == "True", 60,
                   "FallbackActive")  # fmt: skip
        status = llmd.status()
        assert status["accelerator"] == {
            "type": "A10G",
            "count": 1,
            "capacity": "on-demand",
            "fallbackIndex": 0,
        }
        assert status["fallback"]["index"] == 0
        assert status["fallback"]["nextPrimaryProbe"]
        labels = pod_labels(llmd)
        assert (labels[OPTION_LABEL], labels[ACCELERATOR_LABEL]) == ("fallback-0", "A10G")
        wait_until(lambda: llmd.status().get("phase") == "Ready", 120, "Ready on the fallback")
        assert {p["spec"]["nodeName"] for p in llmd.pods()} == {a10g}
        warnings = [e for e in llmd.events() if e[0] == "Warning"]
        assert warnings == [("Warning", "FallbackActivated")]
        (message,) = llmd.event_messages("FallbackActivated")
        assert "primary (1x L4) unschedulable" in message


def test_unservable_spec_fails_once_without_a_retry_storm(
    kube: Kube, namespace: str, operator_env: None
) -> None:
    llmd = Llmd(kube, namespace)
    # Valid for the API server (and its CEL rules); 405B unquantized fits on no L4 count.
    huge = manifest(
        namespace,
        model={"uri": "hf://meta-llama/Llama-3.1-405B-Instruct", "parameterCount": "405B"},
        optimization={"quantization": "none"},
        accelerator={"type": "L4"},
    )
    with running_operator(operator_config(namespace)) as memo:
        llmd.create(huge)
        wait_until(lambda: llmd.status().get("phase") == "Failed", 60, "phase Failed")
        degraded = llmd.condition("Degraded")
        assert (degraded["status"], degraded["reason"]) == ("True", "InsufficientGPUMemory")
        assert "nothing fits" in degraded["message"]

        def settled() -> str | None:
            """The resourceVersion once kopf's own bookkeeping patch after the failure is in
            (it lands just after our status write); a retry storm never settles."""
            first = llmd.get()["metadata"]["resourceVersion"]  # type: ignore[index]
            time.sleep(0.6)  # longer than the test operator's resync period
            same = llmd.get()["metadata"]["resourceVersion"] == first  # type: ignore[index]
            return str(first) if same else None

        version = wait_until(settled, 60, "no more writes to the LLMDeployment")
        writes = sum(memo.runtime.api.requests.values())
        time.sleep(1.5)  # three resync periods of the test operator
        assert llmd.get()["metadata"]["resourceVersion"] == version  # type: ignore[index]
        assert sum(memo.runtime.api.requests.values()) == writes  # no request at all
        assert llmd.events() == [("Warning", "InsufficientGPUMemory")]
        assert llmd.deployment() == {}


def test_restart_keeps_status_and_makes_nothing_twice(
    kube: Kube, kubelet: Any, namespace: str, nodes: Any, operator_env: None
) -> None:
    gpu_node(nodes, namespace, "A10G")
    llmd = Llmd(kube, namespace)
    with running_operator(operator_config(namespace)):
        llmd.create(manifest(namespace))
        wait_until(lambda: llmd.status().get("phase") == "Ready", 120, "Ready on the fallback")
        before = llmd.status()
        children = {c["kind"]: c["metadata"]["uid"] for c in llmd.children() if c}
        pods = {p["metadata"]["uid"] for p in llmd.pods()}
    with running_operator(operator_config(namespace)):
        # The restarted operator resumes and reconciles; given three resync periods to undo
        # anything, it must settle on the same state.
        time.sleep(1.5)
        after = llmd.status()
        assert after["phase"] == "Ready"
        assert after["fallback"] == before["fallback"]  # still on the fallback, same since
        assert [c for c in after["conditions"] if c["type"] == "FallbackActive"] == [
            c for c in before["conditions"] if c["type"] == "FallbackActive"
        ]
        assert {c["kind"]: c["metadata"]["uid"] for c in llmd.children() if c} == children
        assert {p["metadata"]["uid"] for p in llmd.pods()} == pods  # no rollout either
    reasons = [reason for _, reason in llmd.events()]
    assert reasons.count("FallbackActivated") == 1
    assert reasons.count("Created") == 1
