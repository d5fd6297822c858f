"""The autoscaler end to end on the real control plane: the real operator scraping a REAL
llm-server process that the fake kubelet runs for the pod the Deployment controller made, on
the pod's loopback IP and container port (where the collector looks on a cluster), under a
real queue built by concurrent OpenAI requests sent to that pod.

The server runs the pod's own rendered arguments on the tiny random-weight model, with one
running sequence (--max-num-seqs 1), so concurrent requests queue. Only the first pod gets a
process (LlmServerRuntime limit=1): the pod of the scale-up stays starting, never Ready (it
bills, and its coming capacity holds further scale-up), and one process keeps the test short.

While the server is idle, the collector is checked against it and against endpoints that
fail in each way a scrape can (500, a hang, not metrics, refused, no IP yet).

Also: keda mode renders the ScaledObject with the budget-capped bounds and never writes the
Deployment's replicas (a stand-in CRD serves KEDA's ScaledObject kind).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from control_plane import ControlPlane
from kube_client import Kube, KubeError, wait_until
from kube_fixtures import admin_client
from llm_server_runtime import LlmServerRuntime
from operator_harness import (
    BUDGET_FOR_TWO,
    L4_PER_HOUR,
    Llmd,
    autoscaled_manifest,
    gpu_node,
    install_stand_in_crds,
)
from operator_thread import operator_config, running_operator

from llm_operator import metrics
from llm_operator.autoscale.collector import Collector, ScrapeTarget
from llm_operator.render import RenderSettings

NAME = "autoscaled"
WORKERS = 6  # concurrent clients: 1 runs, the rest queue (targets: 1 running, 1 waiting)


class Load:
    """WORKERS clients sending completions to `base_url` back to back until the block ends."""

    def __init__(self, base_url: str, model: str) -> None:
        self.client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=120)
        self.model = model
        self.stop = threading.Event()
        self.done: list[int] = []
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(WORKERS)]

    def _run(self, i: int) -> None:
        while not self.stop.is_set():
            try:
                answer = self.client.completions.create(
                    model=self.model,
                    prompt=f"client {i} asks about queues",
                    max_tokens=48,
                    temperature=0,
                    extra_body={"ignore_eos": True},
                )
                assert answer.usage is not None and answer.usage.completion_tokens == 48
                self.done.append(i)
            except Exception as exc:  # reported by the test
                self.failures.append(repr(exc))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)
        self.client.close()


class ReplicaRecorder:
    """Every spec.replicas the Deployment had, from a watch (no write can slip between polls)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.seen: list[int | None] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        path = self.kube.path("apps/v1", "Deployment", self.namespace)
        listing = self.kube.request("GET", path, params={"fieldSelector": f"metadata.name={NAME}"})
        version = listing["metadata"]["resourceVersion"]
        self.seen += [d["spec"].get("replicas") for d in listing["items"]]
        while not self.stop.is_set():
            try:
                for event in self.kube.watch(path, version, timeout_s=2):
                    version = event["object"]["metadata"]["resourceVersion"]
                    obj = event["object"]
                    if event["type"] in ("ADDED", "MODIFIED") and obj["metadata"]["name"] == NAME:
                        replicas = obj["spec"].get("replicas")
                        if not self.seen or self.seen[-1] != replicas:
                            self.seen.append(replicas)
            except (KubeError, OSError) as exc:  # a dropped watch: resume from `version`
                print(f"replica recorder: {exc}")

    def __enter__(self) -> ReplicaRecorder:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)


def sample(name: str, namespace: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"namespace": namespace, **labels})


def test_scales_up_on_a_real_queue_within_budget_and_back_down(
    kube: Kube,
    kubelet: Any,
    namespace: str,
    nodes: Any,
    operator_env: None,
    tmp_path: Path,
    control_plane: ControlPlane,
) -> None:
    gpu_node(nodes, namespace, "L4")
    runtime = LlmServerRuntime(tmp_path, extra_args=("--max-num-seqs", "1"), limit=1)
    kubelet.runtimes[namespace] = runtime
    llmd = Llmd(kube, namespace, NAME)
    # The scale-up's pod never turns Ready here: a pod stuck past its startup budget (the
    # startup probe's, 10 s here) no longer holds scale-down as a loading pod would.
    config = operator_config(
        namespace,
        scrape_interval_seconds=0.25,
        scrape_timeout_seconds=2.0,
        render=RenderSettings(startup_timeout_seconds=10),
    )
    decisions_up = sample(
        "llmops_autoscaler_decisions_total", namespace, deployment=NAME, direction="up"
    )
    cost_labels = {"deployment": NAME, "accelerator": "L4", "capacity": "on-demand"}

    def budget_limited() -> dict[str, Any]:
        return llmd.condition("BudgetLimited")

    watcher = admin_client(control_plane)  # its own connection: it lives in a thread
    try:
        with running_operator(config), ReplicaRecorder(watcher, namespace) as recorder:
            # A 0 s scale-up window: scale as soon as the queue is seen; 2 s to scale down.
            autoscaling = {"targetQueueDepth": 1, "scaleUpStabilizationSeconds": 0}
            body = autoscaled_manifest(
                namespace, NAME, **autoscaling, scaleDownStabilizationSeconds=2
            )
            llmd.create(body)
            # The kubelet starts the pod's llm-server; Ready when it answers /ready.
            wait_until(lambda: llmd.status().get("phase") == "Ready", 240, "phase Ready")
            assert llmd.deployment()["spec"]["replicas"] == 1
            assert llmd.status()["desiredReplicas"] == 1  # idle: holds at min
            (pod,) = llmd.pods()
            base_url = runtime.addresses[pod["metadata"]["name"]] + "/v1"
            assert base_url.startswith(f"http://{pod['status']['podIP']}:")
            args = pod["spec"]["containers"][0]["args"]
            served_name = args[args.index("--served-model-name") + 1]
            host, port = base_url.removeprefix("http://").removesuffix("/v1").split(":")
            asyncio.run(collector_marks_pods_that_do_not_answer_as_failed(
                ScrapeTarget("real", host, int(port))))  # fmt: skip

            with Load(base_url, served_name) as load:
                # The queue on the pod asks for ~WORKERS replicas; max is 4, budget pays for 2.
                wait_until(lambda: llmd.status().get("desiredReplicas") == 2, 120, "desired 2")
                wait_until(lambda: llmd.deployment()["spec"]["replicas"] == 2, 60, "2 written")
                limited = wait_until(
                    lambda: budget_limited().get("status") == "True" and budget_limited(),
                    60,
                    "BudgetLimited",
                )
                assert limited["reason"] == "BudgetExceeded"
                assert f"${BUDGET_FOR_TWO:.2f}/h pays for 2 replica(s)" in limited["message"]
                scaling = llmd.status()["lastScaling"]
                assert (scaling["from"], scaling["to"]) == (1, 2)
                assert "waiting" in scaling["reason"] and "budget" in scaling["reason"]
                wait_until(lambda: ("Warning", "BudgetLimited") in llmd.events(), 60, "Event")
                assert ("Normal", "ScaledUp") in llmd.events()
                wait_until(
                    lambda: (
                        sample(
                            "llmops_autoscaler_limited", namespace, deployment=NAME, limit="budget"
                        )
                        == 1
                    ),
                    60,
                    "the limited gauge",
                )
                # The Deployment controller made pod b; it loads (never Ready here) and bills.
                wait_until(
                    lambda: llmd.status()["cost"]["dollarsPerHour"] > L4_PER_HOUR, 60, "2 billed"
                )
                starting = {**cost_labels, "state": "starting"}
                wait_until(
                    lambda: sample("llmops_deployment_replicas", namespace, **starting) == 1,
                    60,
                    "one starting replica",
                )
                wait_until(
                    lambda: sample(
                        "llmops_deployment_cost_per_million_tokens", namespace, **cost_labels
                    ),
                    60,
                    "a $/1M tokens figure",
                )
                wait_until(lambda: len(load.done) >= 3, 120, "requests served")
            assert not load.failures, load.failures[:3]

            # Load gone: after the 2 s scale-down window the count comes back to min.
            wait_until(lambda: llmd.status().get("desiredReplicas") == 1, 120, "desired 1")
            wait_until(lambda: llmd.deployment()["spec"]["replicas"] == 1, 60, "1 written")
            assert ("Normal", "ScaledDown") in llmd.events()
            scaling = llmd.status()["lastScaling"]
            assert (scaling["from"], scaling["to"]) == (2, 1)
            wait_until(lambda: budget_limited().get("status") == "False", 60, "not limited")
            # The ReplicaSet controller removed the pod that never got Ready; pod a serves on.
            wait_until(lambda: len(llmd.pods()) == 1, 120, "one pod left")
            assert llmd.pods()[0]["metadata"]["uid"] == pod["metadata"]["uid"]
            wait_until(
                lambda: llmd.status()["cost"]["dollarsPerHour"] == pytest.approx(L4_PER_HOUR),
                60,
                "one replica billed",
            )
            cost = llmd.status()["cost"]
            assert cost["budgetDollarsPerHour"] == BUDGET_FOR_TWO
            assert cost["dollarsPerMillionTokens"] > 0

            # Never above the budget: every replica count the Deployment had is <= 2.
            assert recorder.seen == [1, 2, 1], recorder.seen
            desired = {**cost_labels, "state": "desired"}
            wait_until(
                lambda: sample("llmops_deployment_replicas", namespace, **desired) == 1,
                60,
                "desired series",
            )
            budget = sample("llmops_deployment_budget_dollars_per_hour", namespace, **cost_labels)
            assert budget == BUDGET_FOR_TWO
            up = sample(
                "llmops_autoscaler_decisions_total", namespace, deployment=NAME, direction="up"
            )
            assert (up or 0) - (decisions_up or 0) >= 1
            assert sample(
                "llmops_autoscaler_decisions_total", namespace, deployment=NAME, direction="down"
            )

            llmd.delete()
            wait_until(lambda: llmd.get() is None, 60, "deleted")
            wait_until(
                lambda: (
                    sample("llmops_deployment_cost_dollars_per_hour", namespace, **cost_labels)
                    is None
                ),
                60,
                "cost series removed",
            )
    finally:
        del kubelet.runtimes[namespace]
        runtime.close()
        watcher.close()


def test_keda_mode_renders_a_scaled_object_and_leaves_replicas_alone(
    kube: Kube, namespace: str, operator_env: None
) -> None:
    install_stand_in_crds(kube)  # KEDA's ScaledObject kind, before the operator starts
    body = autoscaled_manifest(namespace, NAME, mode="keda", targetQueueDepth=3)
    body["spec"]["replicas"] = {"min": 1, "max": 5}  # the budget pays for 2
    llmd = Llmd(kube, namespace, NAME)
    with running_operator(operator_config(namespace, scrape_interval_seconds=0.25)):
        uid = llmd.create(body)["metadata"]["uid"]
        scaled = wait_until(lambda: llmd.child("keda.sh/v1alpha1", "ScaledObject"), 60, "SO")
        deployment = wait_until(lambda: llmd.child("apps/v1", "Deployment"), 60, "Deployment")
        # KEDA's HPA owns spec.replicas: the operator applies none (the server defaulted 1).
        owned = json.dumps([f for f in deployment["metadata"]["managedFields"]
                            if f["manager"] == "llm-operator"])  # fmt: skip
        assert "f:replicas" not in owned
        assert scaled["metadata"]["ownerReferences"][0]["uid"] == uid
        spec = scaled["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                          "name": NAME}  # fmt: skip
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 2)
        trigger = spec["triggers"][0]
        assert trigger["type"] == "prometheus"
        assert trigger["metadata"]["threshold"] == "3"
        assert trigger["metadata"]["query"] == (
            f'sum(vllm:num_requests_waiting{{namespace="{namespace}",service="{NAME}"}})'
        )
        limited = wait_until(
            lambda: (
                llmd.condition("BudgetLimited").get("status") == "True"
                and llmd.condition("BudgetLimited")
            ),
            60,
            "BudgetLimited",
        )
        assert "maxReplicaCount is lowered to 2" in limited["message"]
        assert llmd.condition("ScalingLimited") == {}

        # The HPA scales the Deployment; the operator reports it and writes nothing back.
        scaled_up = kube.patch("apps/v1", "Deployment", NAME, {"spec": {"replicas": 2}}, namespace)
        wait_until(lambda: llmd.status().get("desiredReplicas") == 2, 60, "desired 2 reported")
        time.sleep(1.0)  # two resync periods and four autoscaler ticks
        now = llmd.deployment()
        assert now["spec"]["replicas"] == 2
        assert now["metadata"]["generation"] == scaled_up["metadata"]["generation"]


async def collector_marks_pods_that_do_not_answer_as_failed(real: ScrapeTarget) -> None:
    """One scrape per pod per tick, each with its own timeout; no answer is unknown load.
    `real` is an idle llm-server (the scaling test's pod, so no second server starts)."""
    from aiohttp import web

    release = asyncio.Event()

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def hangs(_: web.Request) -> web.Response:
        await release.wait()  # until the test ends: only the scrape timeout gets past it
        return web.Response(text="too late")

    async def not_metrics(_: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>")

    runners, ports = [], {}
    for name, handler in (("broken", broken), ("hangs", hangs), ("html", not_metrics)):
        app = web.Application()
        app.router.add_get("/metrics", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        ports[name] = runner.addresses[0][1]
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        ports["refused"] = sock.getsockname()[1]
    collector = Collector(timeout_seconds=0.5)
    targets = [real]
    targets += [ScrapeTarget(name, "127.0.0.1", port) for name, port in ports.items()]
    targets.append(ScrapeTarget("no-ip-yet", None, 8000))
    try:
        pods = await asyncio.wait_for(collector.scrape(targets), 30)  # a hang guard only
    finally:
        release.set()
        await collector.close()
        for runner in runners:
            await runner.cleanup()
    assert [(p.name, p.scrape_ok) for p in pods] == [
        ("real", True),
        ("broken", False),
        ("hangs", False),
        ("html", False),
        ("refused", False),
        ("no-ip-yet", False),
    ]
    assert pods[0].waiting == 0 and pods[0].running == 0  # the idle real server
