"""Routing on the real control plane (issue 22 acceptance): by model across two
LLMDeployments, prefix affinity (the chosen pod's own prefix cache hits), fallback to the other
replica when the preferred one is saturated, and a replica killed mid-load (SIGKILL, then its
pod deleted): no request fails that had not started streaming.

Three real llm-server processes (tiny random model): `alpha` with 2 replicas, `beta` with 1.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import openai
import pytest
from gateway_harness import cpu_llmd, pod_metric, serving_target
from kube_client import Kube, wait_until
from llm_server_runtime import LlmServerRuntime
from operator_thread import operator_config, running_operator

from llm_gateway.directory import ModelTarget

REQUESTS = "llm_gateway_requests_total"
# Longer than the gateway's prefix_chars (256): the requests below differ only after it.
SYSTEM = "You are a meticulous assistant for a railway timetable office. " * 6


def client_for(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=120)


def picks(gateway: Any, model: str, target: ModelTarget) -> dict[tuple[str, str], float]:
    """(pod, picked_by) -> requests the gateway sent there, from its metrics."""
    return {
        (r.pod, how): gateway.sample(REQUESTS, model=model, pod=r.pod, picked_by=how)
        for r in target.replicas
        for how in ("affinity", "load", "only")
    }


def delta(after: dict[Any, float], before: dict[Any, float]) -> dict[Any, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


@pytest.fixture
def two_models(
    kube: Kube, namespace: str, nodes: Any, operator_env: None, pod_servers: LlmServerRuntime
) -> Any:
    nodes(f"{namespace}-cpu")
    with running_operator(operator_config(namespace)):
        kube.create(cpu_llmd(namespace, "alpha", "alpha-chat", 2, 2))
        kube.create(cpu_llmd(namespace, "beta", "beta-chat", 1, 1))
        yield


def test_routes_by_model_with_prefix_affinity_and_falls_back_when_saturated(
    two_models: None, kube_gateway: Callable[..., Any], pod_servers: LlmServerRuntime
) -> None:
    with kube_gateway() as gateway:
        alpha = serving_target(gateway, "alpha-chat", 2)
        beta = serving_target(gateway, "beta-chat", 1)
        assert (alpha.deployment, beta.deployment) == ("alpha", "beta")
        client = client_for(gateway.base_url)
        assert {m.id for m in client.models.list()} == {"alpha-chat", "beta-chat"}

        # By model: each answer comes from that model's pods (the server names its model).
        for model, target in (("alpha-chat", alpha), ("beta-chat", beta)):
            before = picks(gateway, model, target)
            answer = client.completions.create(model=model, prompt="Hi", max_tokens=4)
            assert answer.model == model and answer.usage is not None
            assert sum(delta(picks(gateway, model, target), before).values()) == 1
        with pytest.raises(openai.NotFoundError) as missing:
            client.completions.create(model="gamma-chat", prompt="Hi", max_tokens=4)
        assert missing.value.code == "model_not_found"

        # Affinity: one shared system prompt, different questions, one after another: one pod
        # serves them all, and its prefix cache (not the other pod's) finds the shared blocks.
        urls = {r.pod: r.url for r in alpha.replicas}
        hits_before = {pod: pod_metric(url, "vllm:prefix_cache_hits_total")
                       for pod, url in urls.items()}  # fmt: skip
        before = picks(gateway, "alpha-chat", alpha)
        for question in range(5):
            client.completions.create(
                model="alpha-chat", prompt=f"{SYSTEM}\nQuestion {question}: when?", max_tokens=2
            )
        sent = delta(picks(gateway, "alpha-chat", alpha), before)
        assert len(sent) == 1 and list(sent.values()) == [5], sent
        ((home, picked_by),) = sent
        assert picked_by == "affinity"
        hits = {pod: pod_metric(url, "vllm:prefix_cache_hits_total") - hits_before[pod]
                for pod, url in urls.items()}  # fmt: skip
        (other,) = set(urls) - {home}
        assert hits[home] >= 4 * 16 and hits[other] == 0, hits  # ≥ one 16-token block each

        # Saturation: 6 concurrent long requests with that prefix; the bounded load (c=1.25)
        # sends the third and later ones past the busy home pod to the other replica.
        before = picks(gateway, "alpha-chat", alpha)
        failures: list[str] = []
        barrier = threading.Barrier(6)

        def ask(i: int) -> None:
            barrier.wait(30)
            try:
                answer = client.completions.create(
                    model="alpha-chat", prompt=f"{SYSTEM}\nLong answer {i}", max_tokens=200,
                    extra_body={"ignore_eos": True},
                )  # fmt: skip
                assert answer.usage is not None and answer.usage.completion_tokens == 200
            except Exception as exc:  # reported below
                failures.append(repr(exc))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(240)
        assert not failures, failures
        sent = delta(picks(gateway, "alpha-chat", alpha), before)
        assert sum(sent.values()) == 6
        assert sent.get((home, "affinity"), 0) >= 2, sent
        assert sent.get((other, "load"), 0) >= 1, sent
        # Counted as each handler returns, a moment after the client has its answer.
        wait_until(
            lambda: (
                gateway.sample("llm_gateway_responses_total", model="alpha-chat", code="200") >= 12
            ),
            10,
            "12 answers counted",
        )
        client.close()


class StreamingLoad:
    """Workers streaming completions through the gateway back to back; each failure is sorted
    by whether the response had started (HTTP headers in: the client saw a 200)."""

    def __init__(self, base_url: str, model: str, workers: int) -> None:
        self.client = client_for(base_url)
        self.model = model
        self.stop = threading.Event()
        self.done = 0
        self.failed_before_start: list[str] = []
        self.failed_mid_stream: list[str] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(workers)]

    def _run(self, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                stream = self.client.completions.create(
                    model=self.model, prompt=f"worker {worker} request {n}", max_tokens=48,
                    stream=True, extra_body={"ignore_eos": True},
                )  # fmt: skip
            except Exception as exc:  # no response at all: the gateway should have retried
                self.failed_before_start.append(repr(exc))
                continue
            try:
                tokens = sum(1 for chunk in stream if chunk.choices and chunk.choices[0].text)
                assert tokens >= 1
                with self._lock:
                    self.done += 1
            except Exception as exc:  # cut mid-stream: the client saw part of an answer
                self.failed_mid_stream.append(repr(exc))

    def __enter__(self) -> StreamingLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)
        self.client.close()


def test_a_replica_killed_mid_load_fails_no_request_that_had_not_started(
    two_models: None,
    kube: Kube,
    namespace: str,
    kube_gateway: Callable[..., Any],
    pod_servers: LlmServerRuntime,
) -> None:
    with kube_gateway() as gateway:
        alpha = serving_target(gateway, "alpha-chat", 2)
        with StreamingLoad(gateway.base_url, "alpha-chat", workers=4) as load:
            wait_until(lambda: load.done >= 8, 120, "requests served before the kill")
            victim = alpha.replicas[0].pod
            # A crash, not a drain: the process dies at once, with requests on it, while the
            # pod is still listed Ready; then the pod goes (its replacement comes up).
            pod = kube.get("v1", "Pod", victim, namespace)
            assert pod is not None
            process = pod_servers.processes[pod["metadata"]["uid"]]
            process.kill()
            process.wait(10)
            kube.delete("v1", "Pod", victim, namespace)
            replaced = wait_until(
                lambda: (
                    (t := gateway.directory.get("alpha-chat")) is not None
                    and len(t.serving()) == 2
                    and victim not in {r.pod for r in t.replicas}
                    and t
                ),
                240,
                "the replacement pod serving",
            )
            done_at_replacement = load.done
            wait_until(lambda: load.done >= done_at_replacement + 12, 120, "requests served after")
        assert not load.failed_before_start, load.failed_before_start[:3]
        print(
            f"kill: {load.done} streamed, {len(load.failed_mid_stream)} cut mid-stream, "
            f"retries {gateway.samples('llm_gateway_retries_total')}"
        )
        newcomer = ({r.pod for r in replaced.replicas} - {r.pod for r in alpha.replicas}).pop()
        served_by_newcomer = sum(
            gateway.sample(REQUESTS, model="alpha-chat", pod=newcomer, picked_by=how)
            for how in ("affinity", "load", "only")
        )
        assert served_by_newcomer >= 1  # the replacement is routed to
