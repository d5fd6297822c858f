"""The e2e suite's cluster when no $KUBECONFIG names one: the real control plane of
tests/support, with what `helm install` and a kubelet would add.

- The chart, rendered by the real Helm engine (helm-python-sdk, default values), is applied
  object by object with server-side apply: CRDs, ServiceAccount, ClusterRole and Binding,
  catalog ConfigMap, dashboards, Services, PDB. One object is not applied: the operator's
  Deployment, whose pod no kubelet here could run. Its container runs as a process instead,
  with the Deployment's own arguments (ports and the catalog file moved to this machine) and
  the ServiceAccount's token (TokenRequest), so the chart's RBAC is what the operator gets: a
  verb it lacks is a 403 here as in a cluster.
- One CPU Node; the fake kubelet runs each pod of the test namespace as a real `llm-server`
  process (llm_server_runtime.py) on a loopback IP, with the pod's own arguments.
- Ways in (`tunnels`): `port_forward` goes to one ready pod's IP, as `kubectl port-forward
  svc/...` picks one pod; `service_proxy` is a small HTTP proxy that sends each request to a
  ready pod behind the Service (what kube-proxy does with its EndpointSlices, which refuse
  loopback addresses), so it follows scaling and rollouts. A deleted pod leaves at once and
  its server keeps serving through the pod's preStop sleep, then drains, as on a node.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from control_plane import ControlPlane
from fake_kubelet import FakeKubelet, pod_port, register_node
from kube_client import Kube, wait_until
from kube_fixtures import admin_client
from llm_server_runtime import LlmServerRuntime

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "chart"))
from chart_rendering import of_component, render_objects  # noqa: E402

NODE = "e2e-cpu-node"
OPERATOR_TOKEN_SECONDS = 3600


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def operator_args(
    container: dict[str, Any], catalog: Path, metrics_port: int, health_port: int
) -> list[str]:
    """The chart's operator arguments, with what names the pod's filesystem or ports moved
    to this machine."""
    moved = {
        "--metrics-port": str(metrics_port),
        "--liveness": f"http://127.0.0.1:{health_port}/healthz",
        "--catalog-file": str(catalog),
    }
    out = []
    for arg in container.get("args") or []:
        flag = arg.split("=", 1)[0]
        out.append(f"{flag}={moved[flag]}" if flag in moved else arg)
    assert {a.split("=", 1)[0] for a in out} >= set(moved), out
    return out


class LocalTunnels:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.proxies: list[ThreadingHTTPServer] = []

    def endpoints(self, namespace: str, service: str) -> list[str]:
        """host:port of each ready pod behind the Service, as the EndpointSlice controller
        computes them (it cannot here: EndpointSlices refuse loopback addresses)."""
        found = self.kube.get("v1", "Service", service, namespace)
        if found is None:
            return []
        selector = ",".join(f"{k}={v}" for k, v in found["spec"]["selector"].items())
        target = found["spec"]["ports"][0]["targetPort"]
        out = []
        for pod in self.kube.list("v1", "Pod", namespace, selector=selector):
            conditions = (pod.get("status") or {}).get("conditions") or []
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            if ready and not pod["metadata"].get("deletionTimestamp"):
                port = pod_port(pod, target) if isinstance(target, str) else int(target)
                out.append(f"{pod['status']['podIP']}:{port}")
        return out

    def port_forward(self, namespace: str, service: str, port: int = 80) -> str:
        found = wait_until(lambda: self.endpoints(namespace, service), 60, f"{service} endpoints")
        return f"http://{found[0]}/v1"

    def service_proxy(self, namespace: str, service: str, port: int = 80) -> str:
        tunnels = self
        turn = itertools.count()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                ready = tunnels.endpoints(namespace, service)
                if not ready:
                    self.send_error(503, "no ready endpoints")
                    return
                target = ready[next(turn) % len(ready)]
                headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
                try:
                    answer = httpx.request(self.command, f"http://{target}{self.path}",
                                           content=body, headers=headers, timeout=300)  # fmt: skip
                except httpx.HTTPError as exc:
                    self.send_error(502, f"{target}: {exc}")
                    return
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type", ""))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _forward

            def log_message(self, *_: Any) -> None:  # quiet
                pass

        proxy = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        proxy.daemon_threads = True
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        self.proxies.append(proxy)
        return f"http://127.0.0.1:{proxy.server_address[1]}/v1"

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.shutdown()
            proxy.server_close()


class LocalCluster:
    def __init__(
        self,
        plane: ControlPlane,
        kubelet: FakeKubelet,
        workdir: Path,
        operator_namespace: str,
        namespace: str,
    ) -> None:
        self.plane, self.kubelet, self.workdir = plane, kubelet, workdir
        self.operator_namespace, self.namespace = operator_namespace, namespace
        self.kube = admin_client(plane)
        self.admin_kubeconfig = plane.kubeconfig
        self.runtime = LlmServerRuntime(workdir)
        self.tunnels = LocalTunnels(self.kube)
        self.operator: subprocess.Popen[bytes] = None  # type: ignore[assignment]
        self.health_url = ""

    # --- helm install --------------------------------------------------------------------

    def install_chart(self) -> dict[str, Any]:
        """Apply the rendered chart; the operator Deployment it holds is returned, unapplied."""
        objects = render_objects({})
        crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
        for crd in crds:
            self.kube.apply(crd)
        for crd in crds:
            self.kube.wait_established(crd["metadata"]["name"])
        self.kube.ensure_namespace(self.operator_namespace)
        (deployment,) = [
            o for o in of_component(objects, "operator") if o["kind"] == "Deployment"
        ]  # the gateway's Deployment is not run here
        for obj in objects:
            if obj["kind"] not in ("CustomResourceDefinition", "Deployment"):
                self.kube.apply(obj)
        return deployment

    def service_account_token(self, name: str) -> str:
        path = f"/api/v1/namespaces/{self.operator_namespace}/serviceaccounts/{name}/token"
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": OPERATOR_TOKEN_SECONDS},
        }
        return str(self.kube.request("POST", path, request)["status"]["token"])

    def wait_rbac_in_force(self, account: str) -> None:
        """RBAC reaches the authorizer through an informer: a binding just applied may not
        be in force yet, and the operator's first request would be a 403."""
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": f"system:serviceaccount:{self.operator_namespace}:{account}",
                "groups": ["system:serviceaccounts",
                           f"system:serviceaccounts:{self.operator_namespace}"],
                "resourceAttributes": {"group": "inference.llmops.dev",
                                       "resource": "llmdeployments", "verb": "watch"},
            },
        }  # fmt: skip
        path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
        wait_until(
            lambda: self.kube.request("POST", path, review)["status"].get("allowed"),
            120,
            "the chart's RBAC in force",
        )

    def start_operator(self, deployment: dict[str, Any]) -> None:
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        catalog_map = next(
            v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v
        )  # the chart mounts the catalog ConfigMap at /etc/llm-operator
        data = self.kube.get("v1", "ConfigMap", catalog_map, self.operator_namespace) or {}
        catalog = self.workdir / "catalog.yaml"
        catalog.write_text(data["data"]["catalog.yaml"])
        account = pod["serviceAccountName"]
        self.wait_rbac_in_force(account)
        token = self.service_account_token(account)
        env = {
            **os.environ,
            "KUBECONFIG": str(self.plane.token_kubeconfig(token, "llm-operator")),
            "POD_ID": "e2e-operator",
            "POD_NAME": "e2e-operator",
        }
        health = _free_port()
        self.health_url = f"http://127.0.0.1:{health}/healthz"
        args = operator_args(container, catalog, _free_port(), health)
        log = (self.workdir / "operator.log").open("wb")
        self.operator = subprocess.Popen(
            [sys.executable, "-m", "llm_operator", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

        def healthy() -> bool:
            assert self.operator.poll() is None, self.operator_log()
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(self.health_url, timeout=2).status_code == 200
            return False

        wait_until(healthy, 120, "the operator's liveness endpoint")

    def operator_log(self) -> str:
        path = self.workdir / "operator.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        register_node(self.kube, NODE, capacity={"cpu": "16", "memory": "64Gi"})
        self.kubelet.runtimes[self.namespace] = self.runtime
        self.start_operator(self.install_chart())
        return self

    def __exit__(self, *_: object) -> None:
        self.tunnels.close()
        if self.operator is not None and self.operator.poll() is None:
            self.operator.send_signal(signal.SIGTERM)
            try:
                self.operator.wait(30)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait(5)
        self.kubelet.runtimes.pop(self.namespace, None)
        self.runtime.close()
        self.kube.delete("v1", "Node", NODE)
        self.kube.close()
