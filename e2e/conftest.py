"""e2e against the cluster in $KUBECONFIG (docs/e2e.md); one skip line and exit 0 without one.

Fixtures: the Kubernetes API clients, a namespace for the test, and the two ways in to a
Service from this machine (`kubectl port-forward`, and `kubectl proxy` for the API server's
service proxy, which follows the Service's endpoints through a rollout).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

OPERATOR_NAMESPACE = os.environ.get("E2E_OPERATOR_NAMESPACE", "llm-system")
NAMESPACE = os.environ.get("E2E_NAMESPACE", "llmops-e2e")


def _no_cluster_reason() -> str | None:
    """Why there is no usable cluster, or None when there is one."""
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if not Path(kubeconfig.split(os.pathsep)[0]).is_file():
        return f"no kubeconfig at {kubeconfig} ($KUBECONFIG or ~/.kube/config)"
    if shutil.which("kubectl") is None:
        return "kubectl is not on PATH (the suite port-forwards with it)"
    import kubernetes

    try:
        kubernetes.config.load_kube_config()
        kubernetes.client.VersionApi().get_code(_request_timeout=5)
    except Exception as exc:  # any failure to reach it means: no cluster here
        return f"the cluster in {kubeconfig} is unreachable ({type(exc).__name__})"
    return None


def pytest_configure(config: pytest.Config) -> None:
    reason = _no_cluster_reason()
    if reason is not None:
        # pytest prints this one line ("Exit: e2e skipped ...") and the run exits 0.
        pytest.exit(f"e2e skipped, no Kubernetes cluster: {reason}; recipe: docs/e2e.md", 0)


@pytest.fixture(scope="session")
def kube() -> Any:
    import kubernetes

    kubernetes.config.load_kube_config()
    client = kubernetes.client
    return SimpleNamespace(
        core=client.CoreV1Api(),
        apps=client.AppsV1Api(),
        custom=client.CustomObjectsApi(),
        errors=client.exceptions,
    )


@pytest.fixture(scope="session")
def namespace(kube: Any) -> Iterator[str]:
    try:
        kube.core.create_namespace({"metadata": {"name": NAMESPACE}})
        created = True
    except kube.errors.ApiException as exc:
        if exc.status != 409:
            raise
        created = False
    yield NAMESPACE
    if created:
        kube.core.delete_namespace(NAMESPACE)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _background(args: list[str], ready: str, timeout: float = 30.0) -> subprocess.Popen[str]:
    """Start a kubectl helper and wait for the line that says it listens."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if re.search(ready, line):
            return process
        if process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"{' '.join(args)} did not start: {line.strip()}")


class Tunnels:
    """kubectl port-forward / proxy processes, stopped at the end of the session."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []

    def port_forward(self, namespace: str, service: str, port: int = 80) -> str:
        local = _free_port()
        target = f"svc/{service}"
        args = ["kubectl", "-n", namespace, "port-forward", target, f"{local}:{port}"]
        self.processes.append(_background(args, r"Forwarding from"))
        return f"http://127.0.0.1:{local}/v1"

    def service_proxy(self, namespace: str, service: str, port: int = 80) -> str:
        """The API server's proxy to the Service: each request goes to a ready endpoint."""
        local = _free_port()
        args = ["kubectl", "proxy", f"--port={local}"]
        self.processes.append(_background(args, r"Starting to serve"))
        path = f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/v1"
        return f"http://127.0.0.1:{local}{path}"

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(10)


@pytest.fixture(scope="session")
def tunnels() -> Iterator[Tunnels]:
    opened = Tunnels()
    yield opened
    opened.close()
