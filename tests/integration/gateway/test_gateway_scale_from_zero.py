"""Scale from zero through the gateway, end to end on the real control plane (issue 22
acceptance): an LLMDeployment with replicas.min 0 has no pod; three clients ask for its model
at once; the gateway holds them and stamps the LLMDeployment (KubeDirectory.signal_demand);
the real operator scales 0 -> 1; the fake kubelet runs a REAL llm-server for the pod; the pod
turns Ready, its EndpointSlice lists it, the gateway sends the held requests there: all three
are answered, none lost. Idle past the scale-down window, it returns to zero, and the gateway
still knows the model (a later request would be held again).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
from gateway_harness import cpu_llmd
from kube_client import Kube, wait_until
from llm_server_runtime import LlmServerRuntime
from operator_thread import operator_config, running_operator

from llm_operator.api.demand import DEMAND_ANNOTATION, parse_demand_stamp

API = "inference.llmops.dev/v1alpha1"
MODEL = "sleepy-chat"
CLIENTS = 3


def test_requests_at_zero_replicas_are_held_until_a_pod_serves_and_idle_returns_to_zero(
    kube: Kube,
    namespace: str,
    nodes: Any,
    operator_env: None,
    pod_servers: LlmServerRuntime,
    kube_gateway: Callable[..., Any],
) -> None:
    nodes(f"{namespace}-cpu")
    config = operator_config(namespace, scrape_interval_seconds=0.25)
    autoscaling = {"scaleUpStabilizationSeconds": 30, "scaleDownStabilizationSeconds": 2}
    body = cpu_llmd(namespace, "sleepy", MODEL, 0, 1, autoscaling=autoscaling)

    def replicas() -> int | None:
        deployment = kube.get("apps/v1", "Deployment", "sleepy", namespace) or {}
        return (deployment.get("spec") or {}).get("replicas")

    with running_operator(config), kube_gateway(hold_timeout_seconds=240) as gateway:
        kube.create(body)
        wait_until(lambda: gateway.directory.get(MODEL), 60, "the model known at zero")
        wait_until(lambda: replicas() == 0, 60, "the Deployment at 0")
        assert gateway.directory.get(MODEL).replicas == ()
        assert kube.list("v1", "Pod", namespace) == []

        client = openai.OpenAI(
            base_url=gateway.base_url, api_key="none", max_retries=0, timeout=300
        )
        answered: list[float] = []
        failures: list[str] = []
        sent_at = time.monotonic()

        def ask(i: int) -> None:
            try:
                answer = client.completions.create(
                    model=MODEL, prompt=f"client {i} wakes the model", max_tokens=8
                )
                assert answer.model == MODEL and answer.usage is not None
                answered.append(time.monotonic() - sent_at)
            except Exception as exc:  # reported below
                failures.append(repr(exc))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        wait_until(
            lambda: gateway.sample("llm_gateway_held_requests", model=MODEL) == CLIENTS or answered,
            60,
            "the requests held",
        )
        # The gateway's demand stamp on the LLMDeployment; the operator scales 0 -> 1.
        llmd = wait_until(
            lambda: (
                (obj := kube.get(API, "LLMDeployment", "sleepy", namespace))
                and DEMAND_ANNOTATION in (obj["metadata"].get("annotations") or {})
                and obj
            ),
            30,
            "the demand annotation",
        )
        assert parse_demand_stamp(llmd["metadata"]["annotations"][DEMAND_ANNOTATION])
        wait_until(lambda: (replicas() or 0) >= 1, 60, "0 -> 1")
        for thread in threads:
            thread.join(300)
        client.close()
        assert not failures, failures
        assert len(answered) == CLIENTS  # none lost
        assert gateway.sample("llm_gateway_holds_total", model=MODEL, outcome="served") == CLIENTS
        assert gateway.sample("llm_gateway_held_requests", model=MODEL) == 0
        wait_until(  # counted as each handler returns, a moment after the client's answer
            lambda: (
                gateway.sample("llm_gateway_responses_total", model=MODEL, code="200") == CLIENTS
            ),
            10,
            "the answers counted",
        )
        print(f"scale from zero: first request -> answered in {min(answered):.1f} s")

        # Idle: after the demand stamp's window and the 2 s scale-down window, back to zero.
        wait_until(lambda: replicas() == 0, 180, "1 -> 0")
        wait_until(lambda: kube.list("v1", "Pod", namespace) == [], 120, "the pod gone")
        wait_until(
            lambda: (t := gateway.directory.get(MODEL)) is not None and t.replicas == (),
            60,
            "the gateway sees zero replicas",
        )
        models = httpx.get(gateway.base_url + "/models", timeout=10).json()["data"]
        assert MODEL in {m["id"] for m in models}
