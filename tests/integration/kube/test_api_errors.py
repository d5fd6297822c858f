"""Issue 16, item 1: API errors classified by what they mean (k8s.py `_typed`).

On the real API server: a `server.podTemplate` the server refuses, as 422 (an invalid field)
or as 500 "failed to convert new object" (an unparseable quantity), is permanent: Failed /
Degraded=True `RejectedByAPIServer`, one Warning Event, no hot retry. A 409 from the real
server is temporary. A 503 is a fault the real server does not produce on demand, so a tiny
HTTP server on loopback (below) answers it to the operator's client.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import kubernetes
import pytest
from control_plane import ControlPlane
from kube_client import Kube, wait_until
from llmd_manifest import llmd_manifest
from operator_thread import operator_config, running_operator

from llm_operator.k8s import ApiError, ForbiddenError, KubeApi, RejectedError, _typed

API = "inference.llmops.dev/v1alpha1"
CONTAINER = "llm-server"


def _llmd(namespace: str, pod_template: dict[str, Any]) -> dict[str, Any]:
    return llmd_manifest(namespace, server={"podTemplate": pod_template})


def _condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


UNPARSEABLE_CPU = {
    "spec": {"containers": [{"name": CONTAINER, "resources": {"limits": {"cpu": "abc"}}}]}
}
INVALID_PORT = {"spec": {"containers": [{"name": CONTAINER, "ports": [{"containerPort": 0}]}]}}


@pytest.mark.parametrize(
    "pod_template", [UNPARSEABLE_CPU, INVALID_PORT], ids=["500-conversion", "422-invalid"]
)
def test_a_pod_template_the_server_refuses_fails_once_with_an_event(
    kube: Kube,
    namespace: str,
    control_plane: ControlPlane,
    monkeypatch: pytest.MonkeyPatch,
    pod_template: dict[str, Any],
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    kube.create(_llmd(namespace, pod_template))
    with running_operator(operator_config(namespace, resync_seconds=0.2)) as memo:

        def failed() -> dict[str, Any] | None:
            obj = kube.get(API, "LLMDeployment", "chat", namespace)
            return obj if (obj or {}).get("status", {}).get("phase") == "Failed" else None

        obj = wait_until(failed, 120, "phase Failed")
        degraded = _condition(obj, "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "RejectedByAPIServer"
        assert "Deployment" in degraded["message"] or "cpu" in degraded["message"]
        events = wait_until(
            lambda: [e for e in kube.events(namespace, "chat")
                     if e["reason"] == "RejectedByAPIServer"],
            120, "a RejectedByAPIServer Event",
        )  # fmt: skip
        applies = memo.runtime.api.requests["apply"]
        # No hot retry: ten resync intervals later the operator has not applied again.
        time.sleep(2.0)
        assert memo.runtime.api.requests["apply"] == applies
        assert len([e for e in kube.events(namespace, "chat")
                    if e["reason"] == "RejectedByAPIServer"]) == len(events) == 1  # fmt: skip


def test_a_conflict_from_the_real_server_is_temporary(
    kube: Kube, namespace: str, control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    api = KubeApi.from_environment()
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "c", "namespace": namespace}}  # fmt: skip
    target = f"/api/v1/namespaces/{namespace}/configmaps"

    async def create_twice() -> ApiError:
        await api.call("POST", target, body=config_map)
        with pytest.raises(ApiError) as caught:
            await api.call("POST", target, body=config_map)
        return caught.value

    try:
        error = asyncio.run(create_twice())
    finally:
        api.close()
    assert error.status == 409
    typed = _typed(error)
    assert isinstance(typed, kopf.TemporaryError) and typed.delay and typed.delay > 0


class _Unavailable(http.server.BaseHTTPRequestHandler):
    """What an overloaded or restarting API server (or its load balancer) answers."""

    def do_PATCH(self) -> None:
        body = json.dumps({"kind": "Status", "status": "Failure", "reason": "ServiceUnavailable",
                           "message": "the server is currently unable to handle the request",
                           "code": 503}).encode()  # fmt: skip
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def unavailable_server(tmp_path: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_503_is_temporary_with_backoff(unavailable_server: str) -> None:
    configuration = kubernetes.client.Configuration()
    configuration.host = unavailable_server
    api = KubeApi(configuration)
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "d", "namespace": "default"}}  # fmt: skip
    try:
        with pytest.raises(ApiError) as caught:
            asyncio.run(api.apply(deployment))
    finally:
        api.close()
    typed = _typed(caught.value)
    assert isinstance(typed, kopf.TemporaryError) and typed.delay and typed.delay >= 5
    assert not isinstance(typed, RejectedError)


@pytest.mark.parametrize(
    ("status", "reason", "message", "kind"),
    [
        (422, "Invalid", "Deployment.apps \"x\" is invalid", "rejected"),
        (400, "BadRequest", "unknown field", "rejected"),
        (500, "InternalError", "failed to convert new object (apps/v1, Kind=Deployment) "
         "to smd typed: quantities must match the regular expression", "rejected"),
        (500, "InternalError", "etcdserver: request timed out", "temporary"),
        (409, "Conflict", "the object has been modified", "temporary"),
        (429, "TooManyRequests", "slow down", "temporary"),
        (503, "ServiceUnavailable", "unable to handle the request", "temporary"),
        (504, "Timeout", "timeout", "temporary"),
        (0, "Unreachable", "connection refused", "temporary"),
        (403, "Forbidden", "cannot patch deployments", "forbidden"),
    ],
)  # fmt: skip
def test_errors_are_classified_by_meaning(status: int, reason: str, message: str,
                                          kind: str) -> None:  # fmt: skip
    typed = _typed(ApiError(status, reason, message))
    if kind == "rejected":
        assert isinstance(typed, RejectedError)
    elif kind == "forbidden":
        assert isinstance(typed, ForbiddenError)
    else:
        assert isinstance(typed, kopf.TemporaryError) and typed.delay
