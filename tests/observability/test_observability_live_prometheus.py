"""Every dashboard query and every recording rule returns data from a real Prometheus.

A real Prometheus (Debian's package, on loopback) scrapes a real `llm-server` process and the
real operator (kopf against KMock, serving its /metrics) while real OpenAI requests load the
server; it loads the chart's rules file. Then each PromQL expression of each dashboard panel
and annotation (variables substituted with the real namespace and deployment), each recorded
series and each variable's label_values must return data.

The server's scrape job is what the Prometheus Operator makes of the LLMDeployment's rendered
ServiceMonitor: Kubernetes service discovery's `__meta_*` labels (set here as static target
labels, from the Service the operator applied), the operator's standard relabelings
(namespace, service, pod, container, job, endpoint), then the ServiceMonitor's own relabelings.
So the `deployment` label every dashboard filters on comes from the real template. The
operator's job keeps its labels (honor_labels), as the chart's ServiceMonitor does.

KMock runs no controllers, so the test plays the Deployment controller: pod a points at the
server (status.podIP 127.0.0.1, its `http` port); after the autoscaler scales up, pod b is
ready but its server never answers (the autoscaler's scrape failures).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from kmock_harness import (
    LLMD,
    NAMESPACE,
    Cluster,
    autoscaled_manifest,
    eventually,
    loopback_pod,
    running_operator,
)
from kmock_harness import operator_config as base_config
from running_prometheus import running_prometheus
from running_server import SERVED_NAME, ServerProcess, free_port, run_server

from llm_operator.api.resource import LLMDeployment
from llm_operator.catalog import default_catalog
from llm_operator.observability import rules
from llm_operator.render import RenderSettings, desired_objects
from llm_operator.resolve import resolve

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "charts" / "llm-operator" / "files" / "prometheus-rules.yaml"
DASHBOARDS = sorted((ROOT / "charts" / "llm-operator" / "files" / "dashboards").glob("*.json"))
DEPLOYMENTS = "apps/v1/deployments"
NAME = "chat"
RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval is with 15 s scrapes
DEADLINE_S = 120
# Long enough to fill whole 16-token KV blocks, so varied requests share cached prefixes.
SHARED_PREFIX = (
    "You are a helpful assistant for a team that runs language models on Kubernetes. "
    "Answer briefly and precisely, and say when you do not know. The question is:"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    from llm_server.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), family="llama", seed=0)
    logs = tmp_path_factory.mktemp("observability-server-logs")
    # One running sequence at a time, so concurrent requests queue (the autoscaling signal).
    with run_server(model, logs, "--max-num-seqs", "1", "--response-cache") as running:
        yield running


def llmdeployment() -> dict[str, Any]:
    return autoscaled_manifest(NAME, targetQueueDepth=1, scaleUpStabilizationSeconds=0)


def _sanitize(label: str) -> str:
    """Kubernetes label key -> the `__meta_kubernetes_*_label_<key>` suffix Prometheus uses."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def _snake(key: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)


def server_job(service: dict[str, Any], monitor: dict[str, Any], pod_name: str, target: str) -> Any:
    """The scrape job the Prometheus Operator generates for the ServiceMonitor's endpoint."""
    (endpoint,) = monitor["spec"]["endpoints"]
    meta = service["metadata"]
    labels = {
        "__meta_kubernetes_namespace": meta["namespace"],
        "__meta_kubernetes_service_name": meta["name"],
        "__meta_kubernetes_pod_name": pod_name,
        "__meta_kubernetes_pod_container_name": "llm-server",
        **{f"__meta_kubernetes_service_label_{_sanitize(k)}": v for k, v in meta["labels"].items()},
    }
    standard = [
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"},
        {"target_label": "endpoint", "replacement": endpoint["port"]},
    ]
    own = [{_snake(k): v for k, v in r.items()} for r in endpoint.get("relabelings", [])]
    return {
        "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/0",
        "metrics_path": endpoint["path"],
        "static_configs": [{"targets": [target], "labels": labels}],
        "relabel_configs": standard + own,
    }


def operator_job(target: str) -> Any:
    return {
        "job_name": "llm-operator",
        "honor_labels": True,  # as the chart's ServiceMonitor: the series' namespace wins
        "static_configs": [
            {
                "targets": [target],
                "labels": {"namespace": "llm-operator", "pod": "llm-operator-0"},
            }
        ],
    }


@contextlib.asynccontextmanager
async def load(server: ServerProcess) -> AsyncIterator[list[str]]:
    """Five clients sending varied completions (a queue, prefix-cache hits), and one that
    repeats a greedy request (response-cache hits) and sends a bad one (a rejection)."""
    client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
    stop = asyncio.Event()
    served: list[str] = []

    async def varied(i: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            answer = await client.completions.create(
                model=SERVED_NAME, prompt=f"{SHARED_PREFIX} what is request {i}.{n}?",
                max_tokens=24, temperature=0, extra_body={"ignore_eos": True},
            )  # fmt: skip
            assert answer.usage is not None and answer.usage.completion_tokens == 24
            served.append("varied")

    async def repeated() -> None:
        while not stop.is_set():
            await client.completions.create(
                model=SERVED_NAME, prompt="the same question again", max_tokens=8, temperature=0
            )
            with pytest.raises(openai.BadRequestError):
                await client.completions.create(model=SERVED_NAME, prompt="x", temperature=5)
            served.append("repeated")
            await asyncio.sleep(0.2)

    tasks = [asyncio.create_task(varied(i)) for i in range(5)]
    tasks.append(asyncio.create_task(repeated()))
    try:
        yield served
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await client.close()


def substitute(expr: str) -> str:
    """What Grafana sends for namespace=default, deployment=chat."""
    return (
        expr.replace("$namespace", NAMESPACE)
        .replace("$deployment", NAME)
        .replace("$__rate_interval", RATE_INTERVAL)
    )


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard panel target and annotation and every recorded
    series (selected for our deployment or namespace)."""
    out = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                where = f"{path.stem}: panel {panel['title']!r} query {target['refId']}"
                out.append((where, substitute(target["expr"])))
        for annotation in dashboard["annotations"]["list"]:
            if "expr" in annotation:
                where = f"{path.stem}: annotation {annotation['name']!r}"
                out.append((where, substitute(annotation["expr"])))
    for rule in rules.recording_rules():
        record = rule["record"]
        matchers = [f'namespace="{NAMESPACE}"']
        if record.startswith("namespace_deployment:"):
            matchers.append(f'deployment="{NAME}"')
        out.append((f"recording rule {record}", f"{record}{{{', '.join(matchers)}}}"))
    return out


def variables() -> list[tuple[str, str, str, str]]:
    """(where, label, series selector, value we expect) of every label_values variable."""
    out = []
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"])
            assert match, variable["definition"]
            expected = {"namespace": NAMESPACE, "deployment": NAME}[match.group(2)]
            where = f"{path.stem}: variable {variable['name']}"
            out.append((where, match.group(2), substitute(match.group(1)), expected))
    return out


def _has_data(prometheus: str, expr: str) -> bool:
    """A non-empty result with at least one finite value."""
    try:
        response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5)
    except httpx.HTTPError:
        return False
    assert response.status_code in (200, 503), f"{expr}: {response.text}"  # 400: bad PromQL
    if response.status_code != 200:
        return False
    return any(math.isfinite(float(r["value"][1])) for r in response.json()["data"]["result"])


def _has_label_value(prometheus: str, label: str, series: str, expected: str) -> bool:
    url = f"{prometheus}/api/v1/label/{label}/values"
    try:
        response = httpx.get(url, params={"match[]": series}, timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and expected in response.json()["data"]


def wait_for_data(prometheus: str, deadline_s: float) -> list[str]:
    """Poll every check until it has data; return those that never had any."""
    pending = {where: expr for where, expr in queries()}
    labels = {where: rest for where, *rest in variables()}
    deadline = time.monotonic() + deadline_s
    while (pending or labels) and time.monotonic() < deadline:
        pending = {w: e for w, e in pending.items() if not _has_data(prometheus, e)}
        labels = {w: v for w, v in labels.items() if not _has_label_value(prometheus, *v)}
        time.sleep(0.5)
    return [f"{w}: {e}" for w, e in pending.items()] + [f"{w}: {v}" for w, v in labels.items()]


async def test_every_dashboard_and_rule_query_returns_data(
    cluster: Cluster, server: ServerProcess, tmp_path: Path
) -> None:
    metrics_port = free_port()
    config = base_config(
        metrics_port=metrics_port, scrape_interval_seconds=0.25, scrape_timeout_seconds=1.0
    )
    manifest = llmdeployment()
    async with running_operator(config):
        await cluster.create(LLMD, manifest)
        service = await eventually(lambda: cluster.get("v1/services", NAME))
        await eventually(lambda: cluster.get(DEPLOYMENTS, NAME))
        server_port = int(server.base_url.rsplit(":", 1)[1])
        await cluster.create("v1/pods", loopback_pod(NAME, f"{NAME}-a", server_port))
        ready = {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}
        await cluster.patch(DEPLOYMENTS, NAME, {"status": ready}, sub="status")
        await eventually(lambda: cluster.status(NAME).get("phase") == "Ready")

        resource = LLMDeployment.model_validate(manifest)
        rendered = desired_objects(
            resource,
            resolve(resource.spec, default_catalog()),
            RenderSettings(service_monitor=True),
        )
        (monitor,) = [o for o in rendered if o["kind"] == "ServiceMonitor"]
        jobs = [
            server_job(service, monitor, f"{NAME}-a", server.base_url.removeprefix("http://")),
            operator_job(f"127.0.0.1:{metrics_port}"),
        ]
        with running_prometheus(jobs, tmp_path, [RULES_FILE]) as prometheus:
            async with load(server) as served:
                # The queue makes the autoscaler scale up (the budget stops it at 2).
                await eventually(lambda: cluster.status(NAME).get("desiredReplicas") == 2, 60)
                silent = loopback_pod(NAME, f"{NAME}-b", free_port())  # never answers
                await cluster.create("v1/pods", silent)
                ready = {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}
                await cluster.patch(DEPLOYMENTS, NAME, {"status": ready}, sub="status")
                missing = await asyncio.to_thread(wait_for_data, prometheus, DEADLINE_S)
            assert "varied" in served and "repeated" in served
            health = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
            broken = [
                (r.get("name"), r.get("lastError"))
                for g in health
                for r in g["rules"]
                if r.get("health") != "ok"
            ]
            log = (tmp_path / "prometheus.log").read_text(errors="replace")[-3000:]
    assert not missing, "no data for:\n" + "\n".join(missing) + "\nprometheus log:\n" + log
    assert not broken
    assert len(queries()) > 40  # every panel, annotation and rule was checked
