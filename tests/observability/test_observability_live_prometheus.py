"""Every dashboard query and every recording rule returns data from a real Prometheus.

A real Prometheus (Debian's package, on loopback) scrapes a real `llm-server` process and the
real operator (kopf on the real control plane of tests/support, serving its /metrics) while
real OpenAI requests load the server; it loads the chart's rules file. Then each PromQL
expression of each dashboard panel and annotation (variables substituted with the real
namespace and deployment), each recorded series and each variable's label_values must return
data.

The server is the LLMDeployment's first pod: the Deployment controller makes it, the scheduler
binds it to a fake L4 Node, and the fake kubelet runs it as an `llm-server` process with the
pod's own arguments on its loopback IP. When the autoscaler scales up, the second pod turns
Ready with nothing listening (the autoscaler's scrape failures).

The server's scrape job is what the Prometheus Operator makes of the LLMDeployment's rendered
ServiceMonitor: Kubernetes service discovery's `__meta_*` labels (set here as static target
labels, from the Service the operator applied), the operator's standard relabelings
(namespace, service, pod, container, job, endpoint), then the ServiceMonitor's own relabelings.
So the `deployment` label every dashboard filters on comes from the real template. The
operator's job keeps its labels (honor_labels), as the chart's ServiceMonitor does.

A real `llm-gateway` (static directory: the serving pod plus a replica with nothing listening,
and a model with no replica) takes its own traffic, so the Gateway row has picks, retries and
holds to show; its job keeps its labels too, as the chart's gateway ServiceMonitor does.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
from gateway_traffic import ASLEEP, GatewayLoad, running_gateway
from kube_client import Kube, wait_until
from llm_server_runtime import LlmServerRuntime
from operator_harness import Llmd, autoscaled_manifest, gpu_node
from operator_thread import operator_config, running_operator
from running_prometheus import running_prometheus
from running_server import free_port

from llm_operator.api.resource import LLMDeployment
from llm_operator.catalog import default_catalog
from llm_operator.observability import chargeback, rules
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


def llmdeployment(namespace: str) -> dict[str, Any]:
    return autoscaled_manifest(namespace, NAME, targetQueueDepth=1, scaleUpStabilizationSeconds=0)


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


def operator_job(target: str, job: str = "llm-operator") -> Any:
    """The operator's or the gateway's: honor_labels, as the chart's ServiceMonitors (the
    operator's series carry their deployment's namespace, the gateway's the replica's pod)."""
    return {
        "job_name": job,
        "honor_labels": True,
        "static_configs": [
            {
                "targets": [target],
                "labels": {"namespace": "llm-operator", "pod": f"{job}-0"},
            }
        ],
    }


class Load:
    """Five clients sending varied completions (a queue, prefix-cache hits), and one that
    repeats a greedy request (response-cache hits) and sends a bad one (a rejection)."""

    def __init__(self, base_url: str, model: str) -> None:
        self.client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=120)
        self.model = model
        self.stop = threading.Event()
        self.served: list[str] = []
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._varied, args=(i,)) for i in range(5)]
        self.threads.append(threading.Thread(target=self._repeated))

    def _varied(self, i: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                answer = self.client.completions.create(
                    model=self.model, prompt=f"{SHARED_PREFIX} what is request {i}.{n}?",
                    max_tokens=24, temperature=0, extra_body={"ignore_eos": True},
                )  # fmt: skip
                assert answer.usage is not None and answer.usage.completion_tokens == 24
                self.served.append("varied")
            except Exception as exc:  # reported by the test
                self.failures.append(repr(exc))

    def _repeated(self) -> None:
        while not self.stop.is_set():
            try:
                self.client.completions.create(
                    model=self.model, prompt="the same question again", max_tokens=8, temperature=0
                )
                try:
                    self.client.completions.create(model=self.model, prompt="x", temperature=5)
                    self.failures.append("temperature=5 was accepted")
                except openai.BadRequestError:
                    pass
                self.served.append("repeated")
            except Exception as exc:  # reported by the test
                self.failures.append(repr(exc))
            self.stop.wait(0.2)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)
        self.client.close()


def substitute(expr: str, namespace: str) -> str:
    """What Grafana sends for the test's namespace, deployment=chat and model=All (".*")."""
    return (
        expr.replace("$namespace", namespace)
        .replace("$deployment", NAME)
        .replace("$model", ".*")
        .replace("$__rate_interval", RATE_INTERVAL)
    )


def queries(namespace: str) -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard panel target and annotation and every recorded
    series (selected for our deployment or namespace)."""
    out = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                if any(series in target["expr"] for series in chargeback.SERIES):
                    continue  # the Tenants row: tenants' traffic in test_chargeback_live.py
                where = f"{path.stem}: panel {panel['title']!r} query {target['refId']}"
                out.append((where, substitute(target["expr"], namespace)))
        for annotation in dashboard["annotations"]["list"]:
            if "expr" in annotation:
                where = f"{path.stem}: annotation {annotation['name']!r}"
                out.append((where, substitute(annotation["expr"], namespace)))
    for rule in rules.recording_rules():
        record = rule["record"]
        matchers = [f'namespace="{namespace}"']
        if record.startswith("namespace_deployment:"):
            matchers.append(f'deployment="{NAME}"')
        out.append((f"recording rule {record}", f"{record}{{{', '.join(matchers)}}}"))
    return out


def variables(namespace: str, model: str) -> list[tuple[str, str, str, str]]:
    """(where, label, series selector, value we expect) of every label_values variable."""
    out = []
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"])
            assert match, variable["definition"]
            expected = {"namespace": namespace, "deployment": NAME, "model": model}[match.group(2)]
            where = f"{path.stem}: variable {variable['name']}"
            out.append((where, match.group(2), substitute(match.group(1), namespace), expected))
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


def wait_for_data(prometheus: str, namespace: str, model: str, deadline_s: float) -> list[str]:
    """Poll every check until it has data; return those that never had any."""
    pending = {where: expr for where, expr in queries(namespace)}
    labels = {where: rest for where, *rest in variables(namespace, model)}
    deadline = time.monotonic() + deadline_s
    while (pending or labels) and time.monotonic() < deadline:
        pending = {w: e for w, e in pending.items() if not _has_data(prometheus, e)}
        labels = {w: v for w, v in labels.items() if not _has_label_value(prometheus, *v)}
        time.sleep(0.5)
    return [f"{w}: {e}" for w, e in pending.items()] + [f"{w}: {v}" for w, v in labels.items()]


def test_every_dashboard_and_rule_query_returns_data(
    kube: Kube, kubelet: Any, namespace: str, nodes: Any, operator_env: None, tmp_path: Path
) -> None:
    gpu_node(nodes, namespace, "L4")
    # Pod a serves (one running sequence at a time, so concurrent requests queue: the
    # autoscaling signal); pod b of the scale-up is Ready with nothing listening.
    extra = ("--max-num-seqs", "1", "--response-cache")
    runtime = LlmServerRuntime(tmp_path, extra_args=extra, limit=1, others_ready=True)
    kubelet.runtimes[namespace] = runtime
    metrics_port = free_port()
    config = operator_config(
        namespace,
        metrics_port=metrics_port,
        scrape_interval_seconds=0.25,
        scrape_timeout_seconds=1.0,
    )
    manifest = llmdeployment(namespace)
    llmd = Llmd(kube, namespace, NAME)
    try:
        with running_operator(config):
            llmd.create(manifest)
            service = wait_until(lambda: llmd.child("v1", "Service"), 60, "the Service")
            wait_until(lambda: llmd.status().get("phase") == "Ready", 240, "phase Ready")
            (pod,) = llmd.pods()
            address = runtime.addresses[pod["metadata"]["name"]]
            args = pod["spec"]["containers"][0]["args"]
            served_name = args[args.index("--served-model-name") + 1]

            resource = LLMDeployment.model_validate(manifest)
            rendered = desired_objects(
                resource,
                resolve(resource.spec, default_catalog()),
                RenderSettings(service_monitor=True),
            )
            (monitor,) = [o for o in rendered if o["kind"] == "ServiceMonitor"]
            nothing_listening = f"http://127.0.0.1:{free_port()}"
            directory = {served_name: [address, nothing_listening], ASLEEP: []}
            with running_gateway(directory, tmp_path) as gateway:
                jobs = [
                    server_job(
                        service, monitor, pod["metadata"]["name"], address.removeprefix("http://")
                    ),
                    operator_job(f"127.0.0.1:{metrics_port}"),
                    operator_job(gateway.removeprefix("http://"), "llm-gateway"),
                ]
                with (
                    running_prometheus(jobs, tmp_path, [RULES_FILE]) as prometheus,
                    Load(f"{address}/v1", served_name) as load,
                    GatewayLoad(gateway, served_name, SHARED_PREFIX) as through_gateway,
                ):
                    # The queue makes the autoscaler scale up (the budget stops it at 2).
                    wait_until(lambda: llmd.status().get("desiredReplicas") == 2, 120, "2")
                    wait_until(lambda: len(llmd.pods()) == 2, 120, "pod b")
                    missing = wait_for_data(prometheus, namespace, served_name, DEADLINE_S)
                    health = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()
                    log = (tmp_path / "prometheus.log").read_text(errors="replace")[-3000:]
                assert not load.failures, load.failures[:3]
                assert "varied" in load.served and "repeated" in load.served
                # Through the gateway: none failed (the dead replica's refusals were retried),
                # the sleeping model's requests were held to a 503 or refused over the bound.
                assert not through_gateway.failures, through_gateway.failures[:3]
                served, held = len(through_gateway.served), sorted(set(through_gateway.held))
                assert served and held == [429, 503], (served, held)
                broken = [
                    (r.get("name"), r.get("lastError"))
                    for g in health["data"]["groups"]
                    for r in g["rules"]
                    if r.get("health") != "ok"
                ]
    finally:
        del kubelet.runtimes[namespace]
        runtime.close()
    assert not missing, "no data for:\n" + "\n".join(missing) + "\nprometheus log:\n" + log
    assert not broken
    assert len(queries(namespace)) > 40  # every panel, annotation and rule was checked
