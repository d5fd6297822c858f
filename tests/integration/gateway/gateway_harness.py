"""Harness: the gateway on the real control plane. The real operator (in-process) makes each
LLMDeployment's Deployment and Service, the Deployment controller its pods, the fake kubelet
runs a REAL llm-server per pod on a loopback IP, loopback_endpoints publishes their
EndpointSlices (as the controller would, were loopback addresses allowed there), and the
gateway (in-process, a KubeDirectory with the admin's kubeconfig) routes to them. Clients are
the official `openai` package.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from control_plane import ControlPlane
from gateway_thread import RunningGateway, running_gateway
from kube_client import wait_until
from kube_fixtures import admin_client
from llm_server_runtime import LlmServerRuntime
from llmd_manifest import llmd_manifest
from loopback_endpoints import LoopbackEndpoints

from llm_gateway.directory import ModelTarget
from llm_gateway.kube_api import KubeApi, load_configuration
from llm_gateway.kube_directory import KubeDirectory
from llm_gateway.kube_tenants import KubeTenants
from llm_gateway.settings import GatewaySettings
from llm_operator.api.tenant import API_KEY_DATA_KEY, TENANT_LABEL

RuntimeT = TypeVar("RuntimeT", bound=LlmServerRuntime)
API = "inference.llmops.dev/v1alpha1"


def cpu_llmd(
    namespace: str, name: str, served: str, min_replicas: int, max_replicas: int, **spec: Any
) -> dict[str, Any]:
    """A tiny-model LLMDeployment on CPU (any Node fits it) serving `served`."""
    model = {"uri": f"hf://test-org/{name}", "servedName": served, "maxContextLength": 1024}
    return llmd_manifest(
        namespace,
        name,
        model=model,
        accelerator={"type": "cpu"},
        optimization={"quantization": "none"},
        replicas={"min": min_replicas, "max": max_replicas},
        **spec,
    )


@pytest.fixture
def operator_env(control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's clients (kopf's and k8s.py's) read $KUBECONFIG: the admin's here."""
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))


@pytest.fixture
def pod_servers(
    control_plane: ControlPlane, kubelet: Any, namespace: str, tmp_path: Path
) -> Iterator[LlmServerRuntime]:
    """Real llm-server processes for the pods of this test's namespace, and their endpoints
    (loopback_endpoints.py: the API server refuses the controller's slices for loopback IPs)."""
    with serving_pods(control_plane, kubelet, namespace, LlmServerRuntime(tmp_path)) as runtime:
        yield runtime


@contextmanager
def serving_pods(
    control_plane: ControlPlane, kubelet: Any, namespace: str, runtime: RuntimeT
) -> Iterator[RuntimeT]:
    """`runtime` runs the namespace's pods, and their EndpointSlices are published."""
    kubelet.runtimes[namespace] = runtime
    publisher = admin_client(control_plane)
    try:
        with LoopbackEndpoints(publisher, namespace):
            yield runtime
    finally:
        del kubelet.runtimes[namespace]
        runtime.close()
        publisher.close()


@pytest.fixture
def kube_gateway(control_plane: ControlPlane, namespace: str) -> Callable[..., Any]:
    """kube_gateway(**settings): the gateway watching this test's namespace (a context)."""

    def start(**settings: Any) -> Any:
        api = KubeApi(load_configuration(str(control_plane.kubeconfig)))
        directory = KubeDirectory(api, (namespace,), resync_seconds=30)
        values = {"kube": True, "namespaces": (namespace,), **settings}
        return running_gateway(directory, GatewaySettings(**values))

    return start


def tenant(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    """An LLMTenant manifest."""
    meta = {"name": name, "namespace": namespace}
    return {"apiVersion": API, "kind": "LLMTenant", "metadata": meta, "spec": spec}


def key_secret(namespace: str, tenant_name: str, key: str) -> dict[str, Any]:
    """The Secret holding one of `tenant_name`'s API keys."""
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": f"{tenant_name}-key", "namespace": namespace,
                     "labels": {TENANT_LABEL: tenant_name}},
        "data": {API_KEY_DATA_KEY: base64.b64encode(key.encode()).decode()},
    }  # fmt: skip


@pytest.fixture
def tenant_gateway(control_plane: ControlPlane, namespace: str) -> Callable[..., Any]:
    """tenant_gateway(**settings): the gateway with its directory and tenants watched."""

    @contextmanager
    def start(**settings: Any) -> Iterator[tuple[RunningGateway, KubeTenants]]:
        def api() -> KubeApi:
            return KubeApi(load_configuration(str(control_plane.kubeconfig)))

        directory = KubeDirectory(api(), (namespace,), resync_seconds=30)
        tenants = KubeTenants(api(), (namespace,), resync_seconds=30)
        values = {"kube": True, "namespaces": (namespace,), **settings}
        with running_gateway(directory, GatewaySettings(**values), tenants) as gateway:
            yield gateway, tenants

    return start


def serving_target(gateway: RunningGateway, model: str, replicas: int) -> ModelTarget:
    """Wait until the gateway sees `replicas` ready, non-draining replicas of `model`."""

    def check() -> ModelTarget | None:
        target = gateway.directory.get(model)
        return target if target is not None and len(target.serving()) == replicas else None

    try:
        found: ModelTarget = wait_until(check, 240, f"{replicas} serving replica(s) of {model}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the gateway sees {gateway.directory.get(model)}") from None
    return found


def pod_metric(url: str, name: str) -> float:
    """One unlabelled series from a pod's /metrics (llm-server's own exposition)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in {url}/metrics")
