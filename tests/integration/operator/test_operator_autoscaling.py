"""The autoscaler end to end: the real operator (kopf, against KMock) scraping a REAL
llm-server process on loopback, under a real queue built by concurrent OpenAI requests.

KMock runs no controllers, so the test plays the Deployment controller: the ready Pod it
creates points at the server (status.podIP 127.0.0.1, the container's `http` port = the
server's port), exactly where the collector looks on a cluster; the pod of the scale-up stays
starting (it bills, and its coming capacity holds further scale-up). The server runs the tiny
random-weight model with one running sequence (--max-num-seqs 1), so concurrent requests queue.
One process keeps the test's start-up short (a second one would only repeat the first).

Also: keda mode renders the ScaledObject with the budget-capped bounds and never writes the
Deployment's replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from operator_harness import (
    BUDGET_FOR_TWO,
    L4_PER_HOUR,
    LLMD,
    NAMESPACE,
    Cluster,
    autoscaled_manifest,
    condition,
    eventually,
    loopback_pod,
    running_operator,
)
from operator_harness import operator_config as base_config

from llm_operator import metrics
from llm_operator.autoscale.collector import Collector, ScrapeTarget

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "server" / "integration"))
from running_server import SERVED_NAME, ServerProcess, run_server

DEPLOYMENTS = "apps/v1/deployments"
SCALED_OBJECTS = "keda.sh/v1alpha1/scaledobjects"
NAME = "autoscaled"
WORKERS = 6  # concurrent clients: 1 runs, the rest queue (targets: 1 running, 1 waiting)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    from llm_server.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), family="llama", seed=0)
    logs = tmp_path_factory.mktemp("autoscale-server-logs")
    with run_server(model, logs, "--max-num-seqs", "1") as process:
        yield process


def spec(**autoscaling: Any) -> dict[str, Any]:
    return autoscaled_manifest(NAME, **autoscaling)


@contextlib.asynccontextmanager
async def load(server: ServerProcess) -> AsyncIterator[list[int]]:
    """WORKERS clients, each sending completions back to back until the block ends."""
    client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
    stop = asyncio.Event()
    done: list[int] = []

    async def worker(i: int) -> None:
        while not stop.is_set():
            answer = await client.completions.create(
                model=SERVED_NAME,
                prompt=f"client {i} asks about queues",
                max_tokens=48,
                temperature=0,
                extra_body={"ignore_eos": True},
            )
            assert answer.usage is not None and answer.usage.completion_tokens == 48
            done.append(i)

    tasks = [asyncio.create_task(worker(i)) for i in range(WORKERS)]
    try:
        yield done
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await client.close()


def sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"namespace": NAMESPACE, **labels})


def replicas_written(cluster: Cluster) -> list[int]:
    """spec.replicas of every Deployment write the operator sent (KMock's request log)."""
    out = []
    for request in list(cluster.server):
        if request.resource is None or request.resource.plural != "deployments":
            continue
        body = request.data if isinstance(request.data, dict) else {}
        if str(request.method.value).upper() in ("POST", "PATCH") and "spec" in body:
            replicas = body["spec"].get("replicas")
            if replicas is not None:
                out.append(int(replicas))
    return out


def reasons(cluster: Cluster) -> list[tuple[str, str]]:
    return [(e["type"], e["reason"]) for e in cluster.events(NAME)]


async def test_scales_up_on_a_real_queue_within_budget_and_back_down(
    cluster: Cluster, server: ServerProcess
) -> None:
    config = base_config(scrape_interval_seconds=0.25, scrape_timeout_seconds=2.0)
    decisions_up = sample("llmops_autoscaler_decisions_total", deployment=NAME, direction="up")
    cost_labels = {"deployment": NAME, "accelerator": "L4", "capacity": "on-demand"}
    async with running_operator(config):
        # A 0 s scale-up window: scale as soon as the queue is seen; 2 s to scale down.
        autoscaling = {"targetQueueDepth": 1, "scaleUpStabilizationSeconds": 0}
        await cluster.create(LLMD, spec(**autoscaling, scaleDownStabilizationSeconds=2))
        await eventually(lambda: cluster.get(DEPLOYMENTS, NAME))
        assert cluster.get(DEPLOYMENTS, NAME)["spec"]["replicas"] == 1
        await cluster.create("v1/pods", loopback_pod(NAME, f"{NAME}-a", server.port))
        ready = {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}
        await cluster.patch(DEPLOYMENTS, NAME, {"status": ready}, sub="status")
        await eventually(lambda: cluster.status(NAME).get("phase") == "Ready")
        assert cluster.status(NAME)["desiredReplicas"] == 1  # idle: holds at min

        async with load(server) as finished:
            # The queue on pod a asks for ~WORKERS replicas; max is 4, the budget pays for 2.
            await eventually(lambda: cluster.status(NAME).get("desiredReplicas") == 2, 20)
            assert cluster.get(DEPLOYMENTS, NAME)["spec"]["replicas"] == 2
            limited = await eventually(
                lambda: (
                    condition(cluster.get(LLMD, NAME), "BudgetLimited").get("status") == "True"
                    and condition(cluster.get(LLMD, NAME), "BudgetLimited")
                )
            )
            assert limited["reason"] == "BudgetExceeded"
            assert f"${BUDGET_FOR_TWO:.2f}/h pays for 2 replica(s)" in limited["message"]
            scaling = cluster.status(NAME)["lastScaling"]
            assert (scaling["from"], scaling["to"]) == (1, 2)
            assert "waiting" in scaling["reason"] and "budget" in scaling["reason"]
            await eventually(lambda: ("Warning", "BudgetLimited") in reasons(cluster))
            assert ("Normal", "ScaledUp") in reasons(cluster)
            await eventually(
                lambda: sample("llmops_autoscaler_limited", deployment=NAME, limit="budget") == 1
            )

            # The Deployment controller creates pod b; it loads weights (not ready) and bills.
            starting = loopback_pod(NAME, f"{NAME}-b", server.port, ready=False)
            await cluster.create("v1/pods", starting)
            ready = {"replicas": 2, "readyReplicas": 1, "updatedReplicas": 2}
            await cluster.patch(DEPLOYMENTS, NAME, {"status": ready}, sub="status")
            await eventually(lambda: cluster.status(NAME)["cost"]["dollarsPerHour"] > L4_PER_HOUR)
            starting = {**cost_labels, "state": "starting"}
            await eventually(lambda: sample("llmops_deployment_replicas", **starting) == 1)
            await eventually(
                lambda: sample("llmops_deployment_cost_per_million_tokens", **cost_labels)
            )
            await eventually(lambda: len(finished) >= 3, 30)  # real requests were served

        # Load gone: after the 2 s scale-down window the count comes back to min.
        await eventually(lambda: cluster.status(NAME).get("desiredReplicas") == 1, 20)
        assert cluster.get(DEPLOYMENTS, NAME)["spec"]["replicas"] == 1
        assert ("Normal", "ScaledDown") in reasons(cluster)
        status = cluster.status(NAME)
        assert (status["lastScaling"]["from"], status["lastScaling"]["to"]) == (2, 1)
        await eventually(
            lambda: condition(cluster.get(LLMD, NAME), "BudgetLimited").get("status") == "False"
        )
        assert status["cost"]["dollarsPerHour"] == pytest.approx(2 * L4_PER_HOUR, abs=1e-3)
        assert status["cost"]["budgetDollarsPerHour"] == BUDGET_FOR_TWO
        assert status["cost"]["dollarsPerMillionTokens"] > 0

        # Never above the budget: every replica count the operator wrote is <= 2.
        written = replicas_written(cluster)
        assert max(written) == 2 and set(written) <= {1, 2}
        # The series are set right after the status write, all in one go.
        desired = {**cost_labels, "state": "desired"}
        await eventually(lambda: sample("llmops_deployment_replicas", **desired) == 1)
        assert sample("llmops_deployment_budget_dollars_per_hour", **cost_labels) == BUDGET_FOR_TWO
        assert sample("llmops_deployment_replicas", **cost_labels, state="current") == 2
        assert sample("llmops_deployment_replicas", **cost_labels, state="ready") == 1
        assert sample("llmops_deployment_cost_dollars_per_hour", **cost_labels) == pytest.approx(
            2 * L4_PER_HOUR
        )
        up = sample("llmops_autoscaler_decisions_total", deployment=NAME, direction="up")
        assert (up or 0) - (decisions_up or 0) >= 1
        assert sample("llmops_autoscaler_decisions_total", deployment=NAME, direction="down")

        await cluster.delete(LLMD, NAME)
        await eventually(lambda: cluster.get(LLMD, NAME) is None)
        await eventually(
            lambda: sample("llmops_deployment_cost_dollars_per_hour", **cost_labels) is None
        )


async def test_keda_mode_renders_a_scaled_object_and_leaves_replicas_alone(
    cluster: Cluster,
) -> None:
    manifest = spec(mode="keda", targetQueueDepth=3)
    manifest["spec"]["replicas"] = {"min": 1, "max": 5}  # the budget pays for 2
    async with running_operator(base_config(scrape_interval_seconds=0.25)):
        await cluster.create(LLMD, manifest)
        scaled = await eventually(lambda: cluster.get(SCALED_OBJECTS, NAME))
        deployment = await eventually(lambda: cluster.get(DEPLOYMENTS, NAME))
        assert "replicas" not in deployment["spec"]  # KEDA's HPA owns it
        uid = cluster.get(LLMD, NAME)["metadata"]["uid"]
        assert scaled["metadata"]["ownerReferences"][0]["uid"] == uid
        body = scaled["spec"]
        assert body["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": NAME,
        }
        assert (body["minReplicaCount"], body["maxReplicaCount"]) == (1, 2)
        trigger = body["triggers"][0]
        assert trigger["type"] == "prometheus"
        assert trigger["metadata"]["threshold"] == "3"
        assert trigger["metadata"]["query"] == (
            f'sum(vllm:num_requests_waiting{{namespace="{NAMESPACE}",service="{NAME}"}})'
        )
        limited = await eventually(
            lambda: (
                condition(cluster.get(LLMD, NAME), "BudgetLimited").get("status") == "True"
                and condition(cluster.get(LLMD, NAME), "BudgetLimited")
            )
        )
        assert "maxReplicaCount is lowered to 2" in limited["message"]
        assert condition(cluster.get(LLMD, NAME), "ScalingLimited") == {}

        # The HPA scales the Deployment; the operator reports it and writes nothing back.
        writes = cluster.requests("PATCH", DEPLOYMENTS) + cluster.requests("POST", DEPLOYMENTS)
        await cluster.patch(DEPLOYMENTS, NAME, {"spec": {"replicas": 2}})
        await eventually(lambda: cluster.status(NAME).get("desiredReplicas") == 2)
        await asyncio.sleep(1.0)  # two resync periods and four autoscaler ticks
        after = cluster.requests("PATCH", DEPLOYMENTS) + cluster.requests("POST", DEPLOYMENTS)
        assert after == writes + 1  # only the test's own patch
        assert cluster.get(DEPLOYMENTS, NAME)["spec"]["replicas"] == 2
        assert replicas_written(cluster) == [2]  # the HPA's (the test's) write only


async def test_collector_marks_pods_that_do_not_answer_as_failed(server: ServerProcess) -> None:
    """One scrape per pod per tick, each with its own timeout; no answer is unknown load."""
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
    targets = [ScrapeTarget("real", "127.0.0.1", int(server.base_url.rsplit(":", 1)[1]))]
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
