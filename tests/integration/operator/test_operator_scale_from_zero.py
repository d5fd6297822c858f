"""Scale from zero on the real control plane (issue 22): an LLMDeployment with replicas.min 0
stays at zero while nobody asks; the test stamps the demand annotation as llm-gateway does
when it holds a request; the real operator scales 0 -> 1 at once; the Deployment controller
makes the pod, the fake kubelet runs a REAL llm-server for it, the pod turns Ready, the status
shows its cold start; idle after the (test-short) scale-down window, it returns to zero.

The operator's resync is an hour here: only the demand stamp's own wake-up can bring the
replica (kopf's update handler does not see annotations under the operator's prefix).
The end-to-end version, through the gateway, is G-kube's.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
from kube_client import Kube, KubeError, wait_until
from llm_server_runtime import LlmServerRuntime
from operator_harness import API_VERSION, KIND, Llmd, autoscaled_manifest, gpu_node
from operator_thread import operator_config, running_operator

from llm_operator import metrics
from llm_operator.api.demand import DEMAND_ANNOTATION, demand_stamp

NAME = "wakes"
GATEWAY = "http://llmops-gateway.llmops.svc:8080/v1"


class ReplicaWatch:
    """Every spec.replicas the Deployment had, polled often (the test's own thread)."""

    def __init__(self, llmd: Llmd) -> None:
        self.llmd = llmd
        self.seen: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                replicas = (self.llmd.deployment().get("spec") or {}).get("replicas")
            except (KubeError, OSError):
                continue
            if replicas is not None and (not self.seen or self.seen[-1] != replicas):
                self.seen.append(replicas)

    def __enter__(self) -> ReplicaWatch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)


def cold_start_count(namespace: str) -> float | None:
    labels = {"namespace": namespace, "llmdeployment": NAME}
    return metrics.REGISTRY.get_sample_value("llmops_cold_start_seconds_count", labels)


def test_a_demand_stamp_wakes_a_deployment_at_zero_and_idle_returns_it_to_zero(
    kube: Kube,
    kubelet: Any,
    namespace: str,
    nodes: Any,
    operator_env: None,
    tmp_path: Path,
) -> None:
    gpu_node(nodes, namespace, "L4")
    runtime = LlmServerRuntime(tmp_path, limit=1)
    kubelet.runtimes[namespace] = runtime
    llmd = Llmd(kube, namespace, NAME)
    config = operator_config(
        namespace, resync_seconds=3600.0, scrape_interval_seconds=0.25, gateway_url=GATEWAY
    )
    # A 30 s scale-up window that a start from zero must not wait out; 2 s to scale down (the
    # demand stamp then counts for replicas.MIN_DEMAND_SECONDS, 15 s).
    body = autoscaled_manifest(
        namespace, NAME, scaleUpStabilizationSeconds=30, scaleDownStabilizationSeconds=2
    )
    body["spec"]["replicas"] = {"min": 0, "max": 2}
    try:
        with running_operator(config), ReplicaWatch(llmd) as watch:
            llmd.create(body)
            status = wait_until(
                lambda: llmd.status().get("phase") == "Ready" and llmd.status(), 60, "Ready at 0"
            )
            assert status["desiredReplicas"] == 0
            assert llmd.condition("Ready")["reason"] == "ScaledToZero"
            assert status["gatewayEndpoint"] == GATEWAY
            served = status["servedModel"]
            wait_until(lambda: llmd.deployment().get("spec"), 30, "the Deployment")
            # No demand: several autoscaler ticks later, still no pod.
            threading.Event().wait(2.0)
            assert llmd.deployment()["spec"]["replicas"] == 0 and llmd.pods() == []

            # The gateway holds a request: it stamps the LLMDeployment (merge patch).
            stamp = {DEMAND_ANNOTATION: demand_stamp(datetime.now(tz=UTC))}
            kube.patch(API_VERSION, KIND, NAME, {"metadata": {"annotations": stamp}}, namespace)
            wait_until(lambda: llmd.deployment()["spec"]["replicas"] == 1, 30, "0 -> 1")
            scaling = wait_until(lambda: llmd.status().get("lastScaling"), 30, "lastScaling")
            assert (scaling["from"], scaling["to"]) == (0, 1)
            assert "the gateway holds requests" in scaling["reason"]

            # The real llm-server loads; Ready once it answers /ready; its cold start is shown.
            cold = wait_until(lambda: llmd.status().get("coldStart"), 240, "coldStart")
            (pod,) = llmd.pods()
            args = pod["spec"]["containers"][0]["args"]
            assert served == args[args.index("--served-model-name") + 1]  # what to send
            assert cold["samples"] == 1 and cold["lastPod"] == pod["metadata"]["name"]
            assert cold["lastSeconds"] == cold["medianSeconds"] > 0
            wait_until(lambda: cold_start_count(namespace) == 1, 30, "cold-start histogram")
            print(f"cold start (created -> Ready) of a tiny-model pod: {cold['lastSeconds']} s")

            # The held request is answered (the gateway would now send it to the pod).
            base_url = runtime.addresses[pod["metadata"]["name"]] + "/v1"
            client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=60)
            answer = client.completions.create(model=served, prompt="hello", max_tokens=4)
            assert answer.usage is not None and answer.usage.completion_tokens > 0
            client.close()

            # Idle: after the stamp's 15 s and the 2 s window, back to zero; the pod goes.
            wait_until(lambda: llmd.deployment()["spec"]["replicas"] == 0, 120, "1 -> 0")
            scaling = wait_until(
                lambda: llmd.status()["lastScaling"]["to"] == 0 and llmd.status()["lastScaling"],
                30,
                "lastScaling 1 -> 0",
            )
            assert (scaling["from"], scaling["to"]) == (1, 0)
            assert ("Normal", "ScaledDown") in llmd.events()
            wait_until(lambda: llmd.pods() == [], 120, "the pod gone")
            assert llmd.condition("Ready")["reason"] == "ScaledToZero"
            assert cold_start_count(namespace) == 1  # measured once
            assert llmd.status()["coldStart"]["samples"] == 1
        assert watch.seen == [0, 1, 0], watch.seen
    finally:
        del kubelet.runtimes[namespace]
        runtime.close()
