"""LLMRoute status from the real operator on the real control plane (issue 23, routes).

Two LLMDeployments (one Ready on a fake L4 node, one that no node can take) and an LLMRoute
over them: the operator reports each target's existence and readiness from the deployments'
status, Ready and ShadowsModel conditions, follows a spec change, and fills `lastHour` from a
stand-in for the gateway: a loopback HTTP server serving the gateway's route counters (rising
on each scrape), published as the EndpointSlice of the Service named by --gateway-service.
The window math itself is unit-tested (tests/unit/operator/test_route_status.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kube_client import Kube, wait_until
from operator_harness import API_VERSION, Llmd, gpu_node, manifest
from operator_thread import operator_config, running_operator

GATEWAY = "llm-gateway"


class CounterPage(BaseHTTPRequestHandler):
    """Each GET: 10 more requests (2 escalations), $0.5 spent, $2 direct, for the route."""

    scrapes = 0
    namespace = ""

    def do_GET(self) -> None:
        cls = type(self)
        cls.scrapes += 1
        n, route = cls.scrapes, f'namespace="{cls.namespace}",route="assistant"'
        lines = [
            ("llm_gateway_route_requests_total", 'target="cheap",outcome="served"', 10 * n),
            ("llm_gateway_route_requests_total", 'target="cheap",outcome="escalated"', 2 * n),
            ("llm_gateway_cascade_escalations_total", 'step="cheap",gate="logprob"', 2 * n),
            ("llm_gateway_route_dollars_total", "", 0.5 * n),
            ("llm_gateway_route_direct_dollars_total", "", 2.0 * n),
        ]
        page = "".join(
            f"{name}{{{route}{',' if more else ''}{more}}} {value}\n" for name, more, value in lines
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def gateway_stand_in(kube: Kube, namespace: str) -> Iterator[None]:
    CounterPage.scrapes, CounterPage.namespace = 0, namespace
    server = ThreadingHTTPServer(("127.0.0.1", 0), CounterPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kube.create({"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": GATEWAY, "namespace": namespace},
                 "spec": {"ports": [{"name": "http", "port": 8080}]}})  # fmt: skip
    # The API server refuses loopback IPs in IPv4 slices; FQDN ones take any name.
    kube.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                 "metadata": {"name": f"{GATEWAY}-a", "namespace": namespace,
                              "labels": {"kubernetes.io/service-name": GATEWAY}},
                 "addressType": "FQDN",
                 "ports": [{"name": "http", "port": server.server_port}],
                 "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True},
                                "targetRef": {"kind": "Pod", "name": "gw-0"}}]})  # fmt: skip
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def _route(namespace: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "LLMRoute",
            "metadata": {"name": "assistant", "namespace": namespace},
            "spec": {"model": "assistant", **spec}}  # fmt: skip


def test_route_status_targets_conditions_and_last_hour(
    kube: Kube, kubelet: Any, namespace: str, nodes: Any, operator_env: None,
    gateway_stand_in: None,
) -> None:  # fmt: skip
    gpu_node(nodes, namespace, "L4")
    cheap, big = Llmd(kube, namespace, "cheap"), Llmd(kube, namespace, "big")
    model = {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "parameterCount": "8B",
             "servedName": "assistant"}  # fmt: skip
    config = operator_config(
        namespace, gateway_service=(namespace, GATEWAY), gateway_scrape_seconds=0.5
    )

    def status() -> dict[str, Any]:
        found = kube.get(API_VERSION, "LLMRoute", "assistant", namespace) or {}
        return dict(found.get("status") or {})

    def condition(kind: str) -> dict[str, Any]:
        return next((c for c in status().get("conditions", []) if c["type"] == kind), {})

    with running_operator(config):
        cheap.create(manifest(namespace, "cheap", model=model))
        big.create(manifest(namespace, "big", accelerator={"type": "H100-80GB"}))  # no such node
        wait_until(lambda: cheap.status().get("phase") == "Ready", 120, "cheap Ready")
        split = [{"deployment": "cheap", "weight": 90}, {"deployment": "big", "weight": 10}]
        kube.create(_route(namespace, fallback=["later"], targets=split))
        wait_until(lambda: condition("Ready").get("reason") == "MissingDeployments", 60, "status")
        targets = {t["deployment"]: t for t in status()["targets"]}
        assert (targets["cheap"]["ready"], targets["cheap"]["readyReplicas"]) == (True, 1)
        assert targets["cheap"]["role"] == "target" and targets["big"]["ready"] is False
        assert targets["big"]["exists"] is True and targets["later"]["exists"] is False
        assert targets["later"]["role"] == "fallback"
        # The operator's own figure (none until it has measured a token rate).
        price = (cheap.status().get("cost") or {}).get("dollarsPerMillionTokens")
        assert targets["cheap"].get("dollarsPerMillionTokens") == price
        assert "later" in condition("Ready")["message"]
        shadow = condition("ShadowsModel")
        assert shadow["status"] == "True" and "cheap" in shadow["message"]

        kube.patch(API_VERSION, "LLMRoute", "assistant", {"spec": {"fallback": None}}, namespace)
        wait_until(lambda: condition("Ready").get("status") == "True", 60, "Ready after the edit")
        assert condition("Ready")["reason"] == "TargetsReady"
        assert status()["observedGeneration"] == 2
        assert [t["deployment"] for t in status()["targets"]] == ["cheap", "big"]

        wait_until(lambda: (status().get("lastHour") or {}).get("requests", 0) >= 20, 60,
                   "lastHour from the gateway's counters")  # fmt: skip
        hour = status()["lastHour"]
        assert hour["escalationRate"] == 0.2  # 2 escalations per 10 requests
        assert hour["dollars"] == pytest.approx(hour["requests"] * 0.05)
        assert hour["directDollars"] == pytest.approx(hour["requests"] * 0.2)
        assert 0 < hour["windowSeconds"] <= 3600

        kube.delete(API_VERSION, "LLMRoute", "assistant", namespace)
        wait_until(lambda: kube.get(API_VERSION, "LLMRoute", "assistant", namespace) is None,
                   60, "the route's finalizer released")  # fmt: skip
