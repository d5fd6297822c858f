"""Routes through the gateway on the real control plane (issue 23): LLMRoutes watched by the
gateway (KubeRoutes), two REAL llm-server pods behind it (the operator's Deployments, the fake
kubelet): the tiny random-weight model as the "cheap" target (its answers' logprobs are poor)
and SmolLM2-135M-Instruct as the "good" one. Clients are the official `openai` package.

A cascade escalates from cheap to good by the logprob gate (the tiny model's answer), by the
length gate (finish_reason "length") and by the pattern gate; the escalations, the attempts'
dollars (equal to the tokens the pods themselves counted, at each deployment's status.cost
price) and the direct dollars are in the gateway's metrics. A split whose target's server is
killed falls back to the next deployment. (The empty gate is unit-tested with stubs: a real
model's empty answer cannot be asked for.)
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
from control_plane import ControlPlane
from gateway_harness import cpu_llmd, pod_metric, serving_pods, serving_target
from gateway_thread import RunningGateway, running_gateway
from kube_client import Kube, wait_until
from llm_server_runtime import LlmServerRuntime
from operator_thread import operator_config, running_operator
from smollm2_file import smollm2_gguf

from llm_gateway.kube_api import KubeApi, load_configuration
from llm_gateway.kube_directory import KubeDirectory
from llm_gateway.kube_routes import KubeRoutes
from llm_gateway.settings import GatewaySettings
from llm_operator.render.objects import DEPLOYMENT_LABEL

API = "inference.llmops.dev/v1alpha1"
PRICES = {"cheap": 100.0, "good": 1000.0}  # $ per 1M tokens, written into status.cost
SERVED = {"cheap": "cheap-chat", "good": "good-chat"}
QUIET = {"escalateOnLength": False, "escalateOnEmpty": False}  # one test per route below
ROUTES = {
    "ask-logprob": {"minMeanTokenLogprob": -2.5, **QUIET},
    "ask-length": {"escalateOnLength": True, "escalateOnEmpty": False},
    "ask-pattern": {"rejectPattern": "^", **QUIET},  # matches every answer
}
PROMPT = "The capital of France is"


class TwoModelRuntime(LlmServerRuntime):
    """Runs each pod with the model its LLMDeployment stands for (`models`: name -> --model)."""

    def __init__(self, log_dir: Path, models: Mapping[str, str]) -> None:
        super().__init__(log_dir)
        self.models = dict(models)
        self.pods: dict[str, str] = {}  # LLMDeployment name -> pod uid

    def start(self, pod: Mapping[str, Any], ip: str) -> None:
        deployment = pod["metadata"]["labels"][DEPLOYMENT_LABEL]
        self.model = self.models[deployment]  # read by start() below, on this thread
        self.pods[deployment] = pod["metadata"]["uid"]
        super().start(pod, ip)

    def kill(self, deployment: str) -> None:
        process = self.processes[self.pods[deployment]]
        process.send_signal(signal.SIGKILL)
        process.wait(10)


@pytest.fixture
def two_model_servers(
    control_plane: ControlPlane, kubelet: Any, namespace: str, tmp_path: Path
) -> Iterator[TwoModelRuntime]:
    runtime = TwoModelRuntime(tmp_path, {"cheap": "tiny-random", "good": str(smollm2_gguf())})
    with serving_pods(control_plane, kubelet, namespace, runtime):
        yield runtime


@pytest.fixture
def route_gateway(control_plane: ControlPlane, namespace: str) -> Callable[..., Any]:
    @contextmanager
    def start() -> Iterator[tuple[RunningGateway, KubeRoutes]]:
        def api() -> KubeApi:
            return KubeApi(load_configuration(str(control_plane.kubeconfig)))

        directory = KubeDirectory(api(), (namespace,), resync_seconds=30)
        routes = KubeRoutes(api(), (namespace,), resync_seconds=30)
        settings = GatewaySettings(kube=True, namespaces=(namespace,), hold_timeout_seconds=5)
        with running_gateway(directory, settings, routes=routes) as gateway:
            yield gateway, routes

    return start


def llmr(namespace: str, model: str, **spec: Any) -> dict[str, Any]:
    meta = {"name": model, "namespace": namespace}
    return {"apiVersion": API, "kind": "LLMRoute", "metadata": meta,
            "spec": {"model": model, **spec}}  # fmt: skip


def pod_tokens(url: str) -> float:
    return pod_metric(url, "vllm:prompt_tokens_total") + pod_metric(
        url, "vllm:generation_tokens_total"
    )


def test_cascade_gates_and_fallback_on_real_servers(
    kube: Kube,
    namespace: str,
    nodes: Any,
    operator_env: None,
    two_model_servers: TwoModelRuntime,
    route_gateway: Callable[..., Any],
) -> None:
    nodes(f"{namespace}-cpu")
    for model, gate in ROUTES.items():
        kube.create(llmr(namespace, model, cascade={"steps": ["cheap", "good"], "gate": gate}))
    kube.create(llmr(namespace, "ask-split", targets=[{"deployment": "cheap"}], fallback=["good"]))

    with route_gateway() as (gateway, routes):
        with running_operator(operator_config(namespace)):
            for name, served in SERVED.items():
                kube.create(cpu_llmd(namespace, name, served, 1, 1))
            pods = {name: serving_target(gateway, SERVED[name], 1).replicas[0] for name in SERVED}
        # Stopped, the operator cannot rewrite the prices below (a CPU replica costs $0/h).
        for name, price in PRICES.items():
            kube.patch(API, "LLMDeployment", name,
                       {"status": {"cost": {"dollarsPerMillionTokens": price}}}, namespace,
                       sub="status")  # fmt: skip
        wait_until(
            lambda: all(
                (t := gateway.directory.get(SERVED[n])) and t.dollars_per_million_tokens == p
                for n, p in PRICES.items()
            ),
            30, "the prices in the gateway",
        )  # fmt: skip
        wait_until(lambda: all(routes.get_route(m) for m in [*ROUTES, "ask-split"]), 30, "routes")
        client = openai.OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0, timeout=300)

        # --- the cascade: each gate escalates the tiny model's answer to SmolLM2 -------------
        for model, gate in (("ask-logprob", "logprob"), ("ask-length", "length"),
                            ("ask-pattern", "pattern")):  # fmt: skip
            before = {name: pod_tokens(pod.url) for name, pod in pods.items()}
            answer = client.completions.create(
                model=model, prompt=PROMPT, max_tokens=6, temperature=0,
                extra_body={"ignore_eos": True},
            )  # fmt: skip
            assert answer.model == SERVED["good"], (model, answer)
            assert answer.choices[0].logprobs is None  # asked upstream for the gate only
            assert answer.usage is not None
            route = {"namespace": namespace, "route": model}
            escalations = gateway.samples("llm_gateway_cascade_escalations_total")
            assert [(labels["step"], labels["gate"], value) for labels, value in escalations
                    if labels["route"] == model] == [("cheap", gate, 1.0)]  # fmt: skip
            for target, outcome in (("cheap", "escalated"), ("good", "served")):
                wait_until(
                    lambda r=route, t=target, o=outcome: gateway.sample(
                        "llm_gateway_route_requests_total", **r, target=t, outcome=o) == 1,
                    10, f"{model} {target} counted as {outcome}",
                )  # fmt: skip
            # Both attempts paid, as the pods counted their tokens; direct: the good one only.
            used = {name: pod_tokens(pod.url) - before[name] for name, pod in pods.items()}
            assert used["good"] == answer.usage.total_tokens
            paid = sum(used[name] * PRICES[name] for name in PRICES) / 1e6
            assert gateway.sample("llm_gateway_route_dollars_total", **route) == pytest.approx(paid)
            direct = answer.usage.total_tokens * PRICES["good"] / 1e6
            assert gateway.sample("llm_gateway_route_direct_dollars_total", **route) == (
                pytest.approx(direct)
            )

        # A streamed cascade: buffered, then sent as one valid stream.
        chunks = list(client.completions.create(
            model="ask-logprob", prompt=PROMPT, max_tokens=6, temperature=0, stream=True,
            extra_body={"ignore_eos": True},
        ))  # fmt: skip
        assert "".join(c.choices[0].text for c in chunks if c.choices)
        assert chunks[-1].choices[0].finish_reason == "length"

        # --- a split whose target's server is killed falls back to the next -------------------
        assert (
            client.completions.create(model="ask-split", prompt=PROMPT, max_tokens=4).model
            == (SERVED["cheap"])
        )
        two_model_servers.kill("cheap")
        answer = client.completions.create(model="ask-split", prompt=PROMPT, max_tokens=4)
        assert answer.model == SERVED["good"]
        split = {"namespace": namespace, "route": "ask-split"}
        # The gateway counts an attempt once its relay has ended, which can be just after the
        # client has read the whole answer: wait for the counters, do not race them.
        for target, outcome in (("cheap", "fallback"), ("good", "served")):
            wait_until(
                lambda t=target, o=outcome: gateway.sample(
                    "llm_gateway_route_requests_total", **split, target=t, outcome=o) == 1,
                10, f"ask-split {target} counted as {outcome}",
            )  # fmt: skip
