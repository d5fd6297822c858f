"""Scale from zero through the gateway (part 3 of benchmarks/gateway.py; run that one).

The integration harness of tests/support: a real control plane, the real operator
(in-process), the fake kubelet running a real llm-server per pod on a loopback IP (the model
of `model_path`), loopback_endpoints for its EndpointSlice, and the gateway with a
KubeDirectory. An LLMDeployment at replicas.min 0 and no pod; `clients` concurrent streamed
requests through the gateway; reported: first request sent → first token (each client),
requests lost, the hold time, and the pod's cold start (status.coldStart: created → Ready).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from control_plane import ControlPlane
from fake_kubelet import FakeKubelet, register_node
from gateway_thread import running_gateway
from kube_client import wait_until
from kube_fixtures import admin_client, install_crds
from llm_server_runtime import LlmServerRuntime
from llmd_manifest import llmd_manifest
from loopback_endpoints import LoopbackEndpoints
from operator_thread import operator_config, running_operator

from llm_gateway.kube_api import KubeApi, load_configuration
from llm_gateway.kube_directory import KubeDirectory
from llm_gateway.settings import GatewaySettings

NAMESPACE, NAME, MODEL = "cold", "cold", "cold-chat"


async def _first_tokens(base: str, clients: int) -> list[float | str]:
    """Per client: seconds to its first streamed token, or the error's repr (a lost request)."""
    body = {"model": MODEL, "prompt": "Wake up and say hello.", "max_tokens": 4, "stream": True}
    sent = time.perf_counter()

    async def one(session: aiohttp.ClientSession) -> float | str:
        try:
            async with session.post(base + "/v1/completions", json=body) as response:
                response.raise_for_status()
                first = None
                async for line in response.content:
                    if first is None and line.startswith(b"data: {"):
                        first = time.perf_counter() - sent
                return first if first is not None else "no token"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return repr(exc)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        return list(await asyncio.gather(*(one(session) for _ in range(clients))))


def run(quick: bool, workdir: Path, model_path: str = "tiny-random") -> dict[str, Any]:
    clients = 3 if quick else 8
    plane = ControlPlane(Path(tempfile.mkdtemp(prefix="cold-plane-"))).start()
    old_kubeconfig = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(plane.kubeconfig)  # the operator's clients read it
    kube = admin_client(plane)
    runtime = LlmServerRuntime(workdir, model=model_path)
    try:
        install_crds(kube)
        with FakeKubelet(admin_client(plane)) as kubelet:
            kube.ensure_namespace(NAMESPACE)
            register_node(kube, "cold-node")
            kubelet.runtimes[NAMESPACE] = runtime
            model = {"uri": "hf://bench/cold", "servedName": MODEL, "maxContextLength": 1024}
            body = llmd_manifest(
                NAMESPACE, NAME, model=model, accelerator={"type": "cpu"},
                optimization={"quantization": "none"}, replicas={"min": 0, "max": 1},
                autoscaling={"scaleDownStabilizationSeconds": 2},
            )  # fmt: skip
            api = KubeApi(load_configuration(str(plane.kubeconfig)))
            directory = KubeDirectory(api, (NAMESPACE,))
            settings = GatewaySettings(kube=True, namespaces=(NAMESPACE,))
            with (
                running_operator(operator_config(NAMESPACE, scrape_interval_seconds=0.25)),
                LoopbackEndpoints(admin_client(plane), NAMESPACE),
                running_gateway(directory, settings) as gateway,
            ):
                kube.create(body)
                wait_until(lambda: directory.get(MODEL), 60, "the model known at zero")
                assert kube.list("v1", "Pod", NAMESPACE) == []
                results = asyncio.run(_first_tokens(gateway.url, clients))
                status = wait_until(
                    lambda: ((kube.get("inference.llmops.dev/v1alpha1", "LLMDeployment", NAME,
                                       NAMESPACE) or {}).get("status") or {}).get("coldStart"),
                    60, "status.coldStart",
                )  # fmt: skip
                hold_sum = gateway.sample("llm_gateway_hold_seconds_sum", model=MODEL)
                holds = gateway.sample("llm_gateway_holds_total", model=MODEL, outcome="served")
    finally:
        runtime.close()
        kube.close()
        plane.stop()
        if old_kubeconfig is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = old_kubeconfig
    firsts = [r for r in results if isinstance(r, float)]
    return {
        "model": Path(model_path).name, "clients": clients,
        "first_token_s": [round(f, 2) for f in firsts],
        "first_token_min_s": round(min(firsts), 2) if firsts else None,
        "first_token_median_s": round(statistics.median(firsts), 2) if firsts else None,
        "lost": [r for r in results if not isinstance(r, float)],
        "held_and_served": holds, "mean_hold_s": round(hold_sum / holds, 2) if holds else None,
        "pod_cold_start_s": status.get("lastSeconds"),
    }  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    if not result:
        return "## Scale from zero\n\nNot run."
    return "\n".join([
        "## Scale from zero (through the gateway)", "",
        f"An LLMDeployment at 0 replicas ({result['model']} on CPU, the real operator on a real "
        f"control plane, a real llm-server started by the fake kubelet); {result['clients']} "
        "concurrent streamed requests sent at once.", "",
        "| first request → first token (s), fastest | median | pod cold start, created → "
        "Ready (s) | mean hold (s) | held and served | lost |", "|---:|---:|---:|---:|---:|---:|",
        f"| {result['first_token_min_s']} | {result['first_token_median_s']} | "
        f"{result['pod_cold_start_s']} | {result['mean_hold_s']} | "
        f"{result['held_and_served']:.0f} | **{len(result['lost'])}** |",
    ])  # fmt: skip


if __name__ == "__main__":
    print("part of benchmarks/gateway.py: run that one")
