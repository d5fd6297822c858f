"""One LLMDeployment's life on a cluster, in order (docs/e2e.md): the one in $KUBECONFIG,
or without one the local control plane (conftest.py, local_cluster.py).

apply the CPU example -> Ready -> OpenAI requests through a port-forward -> load until it
scales up -> idle until it scales down -> a policy change rolls the pods with no failed request
-> delete, and every child is gone. The tests share one LLMDeployment and run in file order;
a failure stops the rest (`-x` is implied by each step needing the one before).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "inference.llmops.dev", "v1alpha1", "llmdeployments"
SELECTOR = "inference.llmops.dev/deployment={name}"


def example(namespace: str) -> dict[str, Any]:
    """examples/cpu-tiny.yaml, in the test namespace, with windows short enough to watch."""
    body: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "cpu-tiny.yaml").read_text())
    body["metadata"]["namespace"] = namespace
    body["spec"]["replicas"] = {"min": 1, "max": 2}
    body["spec"]["autoscaling"].update(
        targetQueueDepth=1, scaleUpStabilizationSeconds=0, scaleDownStabilizationSeconds=30
    )
    body["spec"]["server"]["resources"] = {
        "requests": {"cpu": "500m", "memory": "1Gi"},  # two replicas fit on one kind node
        "limits": {"memory": "2Gi"},
    }
    return body


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class Deployed:
    """The LLMDeployment under test and what the cluster says about it."""

    def __init__(self, kube: Any, body: dict[str, Any]) -> None:
        self.kube, self.body = kube, body
        self.name, self.namespace = body["metadata"]["name"], body["metadata"]["namespace"]

    def get(self) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.kube.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            )
            return obj
        except self.kube.errors.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def status(self) -> dict[str, Any]:
        return dict((self.get() or {}).get("status") or {})

    def patch_spec(self, spec: dict[str, Any]) -> None:
        self.kube.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name, {"spec": spec}
        )

    def deployment(self) -> Any:
        return self.kube.apps.read_namespaced_deployment(self.name, self.namespace)

    def pods(self) -> list[Any]:
        selector = SELECTOR.format(name=self.name)
        return list(
            self.kube.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        )


@pytest.fixture(scope="module")
def deployed(k8s: Any, e2e_namespace: str, operator_running: None) -> Iterator[Deployed]:
    body = example(e2e_namespace)
    k8s.custom.create_namespaced_custom_object(GROUP, VERSION, e2e_namespace, PLURAL, body)
    target = Deployed(k8s, body)
    yield target
    if target.get() is not None:  # a failed run leaves nothing behind
        k8s.custom.delete_namespaced_custom_object(
            GROUP, VERSION, e2e_namespace, PLURAL, target.name
        )


def ask(client: openai.OpenAI, model: str, max_tokens: int = 16) -> str:
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say something about Kubernetes."}],
        max_tokens=max_tokens,
        temperature=0,
    )
    return str(reply.choices[0].message.content)


class Load:
    """`clients` threads sending requests back to back; counts answers and failures."""

    def __init__(self, base_url: str, model: str, clients: int, max_tokens: int) -> None:
        self.client = openai.OpenAI(base_url=base_url, api_key="e2e", max_retries=0, timeout=120)
        self.model, self.max_tokens = model, max_tokens
        self.stop = threading.Event()
        self.ok, self.failures = 0, []  # type: ignore[var-annotated]
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                ask(self.client, self.model, self.max_tokens)
                with self.lock:
                    self.ok += 1
            except Exception as exc:  # every failure is reported by the test
                with self.lock:
                    self.failures.append(repr(exc))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(180)


def test_applied_example_becomes_ready(deployed: Deployed) -> None:
    wait_for("phase Ready", lambda: deployed.status().get("phase") == "Ready", timeout=600)
    status = deployed.status()
    ready = {c["type"]: c["status"] for c in status["conditions"]}
    assert ready["Ready"] == "True" and ready["Degraded"] == "False"
    assert status["endpoint"] == f"http://{deployed.name}.{deployed.namespace}.svc/v1"
    kinds = {ref.kind for ref in deployed.deployment().metadata.owner_references}
    assert kinds == {"LLMDeployment"}


def test_openai_requests_through_a_port_forward(deployed: Deployed, tunnels: Any) -> None:
    base_url = tunnels.port_forward(deployed.namespace, deployed.name)
    client = openai.OpenAI(base_url=base_url, api_key="e2e", max_retries=0, timeout=60)
    model = deployed.body["spec"]["model"]["servedName"]
    assert [m.id for m in client.models.list().data] == [model]
    assert ask(client, model)
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=8, stream=True
    )
    chunks = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(chunks)


def test_load_scales_it_up(deployed: Deployed, tunnels: Any) -> None:
    base_url = tunnels.service_proxy(deployed.namespace, deployed.name)
    model = deployed.body["spec"]["model"]["servedName"]
    with Load(base_url, model, clients=24, max_tokens=256) as load:
        wait_for(
            "status.desiredReplicas 2",
            lambda: deployed.status().get("desiredReplicas") == 2,
            timeout=300,
        )
        wait_for("2 ready pods", lambda: deployed.deployment().status.ready_replicas == 2, 600)
    assert load.ok > 0 and not load.failures, load.failures[:3]
    scaling = deployed.status()["lastScaling"]
    assert (scaling["from"], scaling["to"]) == (1, 2) and scaling["reason"]
    assert deployed.deployment().spec.replicas == 2


def test_idle_scales_it_down(deployed: Deployed) -> None:
    # Scale-down window 30 s (example()), then the next tick; no traffic meanwhile.
    wait_for("status.desiredReplicas 1", lambda: deployed.status().get("desiredReplicas") == 1, 300)
    wait_for("Deployment at 1 replica", lambda: deployed.deployment().spec.replicas == 1, 120)
    scaling = deployed.status()["lastScaling"]
    assert (scaling["from"], scaling["to"]) == (2, 1)


def test_policy_change_rolls_the_pods_without_a_failed_request(
    deployed: Deployed, tunnels: Any
) -> None:
    before = {p.metadata.name for p in deployed.pods()}
    generation = deployed.deployment().metadata.generation
    spec = copy.deepcopy(deployed.body["spec"])
    spec["optimization"]["batching"]["maxConcurrentSequences"] = 8
    base_url = tunnels.service_proxy(deployed.namespace, deployed.name)
    model = spec["model"]["servedName"]
    with Load(base_url, model, clients=4, max_tokens=32) as load:
        deployed.patch_spec({"optimization": spec["optimization"]})

        def rolled() -> bool:
            d = deployed.deployment()
            s = d.status
            return bool(
                d.metadata.generation > generation
                and s.observed_generation == d.metadata.generation
                and s.updated_replicas == s.replicas == s.ready_replicas
                and not before & {p.metadata.name for p in deployed.pods()}
            )

        wait_for("the rolling update", rolled, timeout=600)
        time.sleep(5)  # requests in flight across the last switch
    assert load.ok > 0
    assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:3]}"
    args = deployed.deployment().spec.template.spec.containers[0].args
    assert args[args.index("--max-num-seqs") + 1] == "8"


def test_delete_removes_everything(deployed: Deployed, k8s: Any) -> None:
    k8s.custom.delete_namespaced_custom_object(
        GROUP, VERSION, deployed.namespace, PLURAL, deployed.name
    )
    wait_for("the LLMDeployment gone", lambda: deployed.get() is None, timeout=120)
    selector = SELECTOR.format(name=deployed.name)
    ns = deployed.namespace

    def children() -> list[str]:
        found = []
        for lister in (
            k8s.apps.list_namespaced_deployment,
            k8s.core.list_namespaced_service,
            k8s.core.list_namespaced_config_map,
            k8s.core.list_namespaced_pod,
        ):
            found += [i.metadata.name for i in lister(ns, label_selector=selector).items]
        return found

    wait_for("children garbage-collected", lambda: not children(), timeout=300)
