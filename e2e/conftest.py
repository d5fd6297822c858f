"""e2e fixtures (docs/e2e.md), on one of two clusters:

- `$KUBECONFIG` set: the cluster it names (kind, or any cluster) with the chart installed by
  `helm install` (docs/e2e.md); `kubectl port-forward` / `kubectl proxy` are the ways in. An
  unreachable cluster ends the run with one skip line (exit 0) outside CI, a failure in CI.
- no `$KUBECONFIG`: the local control plane of tests/support (real kube-apiserver,
  controller-manager and scheduler; a fake kubelet; see local_cluster.py): the chart rendered
  by the real Helm engine and applied, the operator running with the chart's arguments and its
  ServiceAccount's token, each pod a real `llm-server` process on a loopback IP.

Fixtures: `k8s` (the `kubernetes` client APIs), `e2e_namespace`, `tunnels` (the ways in to a
Service from this machine), `operator_running`.
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
LOCAL = not os.environ.get("KUBECONFIG")  # no cluster named: the local control plane


def _no_cluster_reason() -> str | None:
    """Why the cluster in $KUBECONFIG is not usable, or None when it is."""
    kubeconfig = os.environ["KUBECONFIG"]
    if not Path(kubeconfig.split(os.pathsep)[0]).is_file():
        return f"no kubeconfig at {kubeconfig}"
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
    if LOCAL:
        return
    reason = _no_cluster_reason()
    if reason is not None:
        # pytest prints this one line ("Exit: e2e skipped ...") and the run exits 0; CI fails.
        outcome, code = ("failed", 1) if os.environ.get("CI") else ("skipped", 0)
        pytest.exit(f"e2e {outcome}, no Kubernetes cluster: {reason}; recipe: docs/e2e.md", code)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The local cluster (local_cluster.LocalCluster), or None for $KUBECONFIG's."""
    if not LOCAL:
        yield None
        return
    from local_cluster import LocalCluster

    plane = request.getfixturevalue("control_plane")
    kubelet = request.getfixturevalue("kubelet")
    workdir = request.getfixturevalue("tmp_path_factory").mktemp("e2e")
    with LocalCluster(plane, kubelet, workdir, OPERATOR_NAMESPACE, NAMESPACE) as local:
        _running.append(local)
        yield local
        _running.clear()


_running: list[Any] = []  # the LocalCluster, for the failure report below


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test on the local cluster reports the operator's log and each pod's server log
    (in a cluster: `kubectl logs`)."""
    report = yield
    if report.failed and _running:
        local = _running[0]
        report.sections.append(("llm-operator log (tail)", local.operator_log()))
        for log in sorted(local.workdir.glob("*.log")):
            if log.name != "operator.log":
                tail = log.read_text(errors="replace")[-2000:]
                report.sections.append((f"pod {log.stem} llm-server log (tail)", tail))
    return report


@pytest.fixture(scope="session")
def k8s(cluster: Any) -> Any:
    import kubernetes

    client = kubernetes.client
    if cluster is None:
        kubernetes.config.load_kube_config()
        api = client.ApiClient()
    else:
        api = kubernetes.config.new_client_from_config(config_file=str(cluster.admin_kubeconfig))
    return SimpleNamespace(
        core=client.CoreV1Api(api),
        apps=client.AppsV1Api(api),
        custom=client.CustomObjectsApi(api),
        errors=client.exceptions,
    )


@pytest.fixture(scope="session")
def e2e_namespace(k8s: Any) -> Iterator[str]:
    try:
        k8s.core.create_namespace({"metadata": {"name": NAMESPACE}})
        created = True
    except k8s.errors.ApiException as exc:
        if exc.status != 409:
            raise
        created = False
    yield NAMESPACE
    if created:
        k8s.core.delete_namespace(NAMESPACE)


@pytest.fixture(scope="session")
def operator_running(k8s: Any, cluster: Any) -> None:
    """The chart's operator is up: on the local cluster it runs as a process (LocalCluster)."""
    if cluster is not None:
        assert cluster.operator.poll() is None, cluster.operator_log()
        return
    ready = [
        d
        for d in k8s.apps.list_namespaced_deployment(OPERATOR_NAMESPACE).items
        if (d.metadata.labels or {}).get("app.kubernetes.io/name") == "llm-operator"
    ]
    assert ready and (ready[0].status.ready_replicas or 0) >= 1, (
        f"no ready llm-operator Deployment in {OPERATOR_NAMESPACE}: helm install it first "
        "(docs/e2e.md) or set E2E_OPERATOR_NAMESPACE"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _background(args: list[str], ready: str, timeout: float = 30.0) -> subprocess.Popen[str]:
    """Start a kubectl helper and wait for the line that says it listens."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    line = ""
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
def tunnels(cluster: Any) -> Iterator[Any]:
    if cluster is not None:
        yield cluster.tunnels  # straight to the pods' loopback IPs (no kubelet to forward)
        return
    opened = Tunnels()
    yield opened
    opened.close()
