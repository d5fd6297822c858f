"""EndpointSlices for pods on loopback IPs: what the EndpointSlice controller would publish,
if the API server let it.

The fake kubelet gives pods 127.x.y.z addresses (so real servers can listen on them), and the
API server refuses loopback addresses in EndpointSlices ("may not be in the loopback range"):
the controller-manager's slices for such pods stay empty. This publisher writes, for each
Service in one namespace, the slice the controller would write — the Service's labels plus
kubernetes.io/service-name, one endpoint per selected pod with an IP, the port of the
Service's named target port, conditions ready / serving / terminating from the pod, a
targetRef — with addressType FQDN, the one type whose addresses may be any DNS name (a dotted
quad is one). A client that dials the address as written reaches the pod's server.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping
from typing import Any

import httpx
from kube_client import Kube, KubeError

log = logging.getLogger(__name__)
MANAGED_BY = "loopback-endpoints.test.llmops.dev"


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _port(pod: Mapping[str, Any], target: Any) -> int | None:
    if isinstance(target, int):
        return target
    for container in pod["spec"]["containers"]:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    return None


def endpoint_slice(service: Mapping[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    """The slice for `service` over `pods` (those its selector picks)."""
    meta = service["metadata"]
    spec_port = service["spec"]["ports"][0]
    target = spec_port.get("targetPort", spec_port["port"])
    endpoints, port = [], None
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        ip = (pod.get("status") or {}).get("podIP")
        pod_port = _port(pod, target)
        if not ip or pod_port is None:
            continue
        port = pod_port
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        ready = _ready(pod)
        endpoints.append({
            "addresses": [ip],
            "conditions": {"ready": ready and not terminating, "serving": ready,
                           "terminating": terminating},
            "targetRef": {"kind": "Pod", "name": pod["metadata"]["name"],
                          "namespace": meta["namespace"], "uid": pod["metadata"]["uid"]},
        })  # fmt: skip
    labels = {
        **(meta.get("labels") or {}),
        "kubernetes.io/service-name": meta["name"],
        "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
    }
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{meta['name']}-loopback", "namespace": meta["namespace"],
                     "labels": labels},
        "addressType": "FQDN",
        "ports": [{"name": spec_port.get("name"), "port": port or spec_port["port"],
                   "protocol": spec_port.get("protocol", "TCP")}],
        "endpoints": endpoints,
    }  # fmt: skip


def _selects(selector: Mapping[str, str], pod: Mapping[str, Any]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class LoopbackEndpoints:
    """Keeps the slices of one namespace's Services in step with its pods (polls every
    `interval` seconds, writes only what changed)."""

    def __init__(self, kube: Kube, namespace: str, interval: float = 0.1) -> None:
        self.kube, self.namespace, self.interval = kube, namespace, interval
        self._written: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loopback-endpoints", daemon=True)

    def __enter__(self) -> LoopbackEndpoints:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sync()
            except (httpx.HTTPError, KubeError) as exc:
                log.debug("loopback endpoints: %s", exc)

    def sync(self) -> None:
        services = self.kube.list("v1", "Service", self.namespace)
        pods = self.kube.list("v1", "Pod", self.namespace)
        for service in services:
            selector = service["spec"].get("selector") or {}
            if not selector or not service["spec"].get("ports"):
                continue
            wanted = endpoint_slice(service, [p for p in pods if _selects(selector, p)])
            name = wanted["metadata"]["name"]
            if self._written.get(name) != wanted:
                with contextlib.suppress(KubeError):  # e.g. the namespace is going
                    self.kube.apply(wanted)
                    self._written[name] = wanted
