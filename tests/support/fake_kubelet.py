"""A fake kubelet (kwok's idea): Nodes as plain API objects, and bound Pods moved to
Running/Ready with a loopback IP, where a real process can listen when a test needs traffic.

- `register_node` creates a Node with labels, taints and capacity (e.g. `nvidia.com/gpu`),
  Ready, as a kubelet would register itself.
- `FakeKubelet` watches all Pods. A pod bound to a node (spec.nodeName) gets an IP from a
  /24 of 127.0.0.0/8 chosen at random per kubelet (test sessions running side by side on one
  machine must not hand out the same address and port). Where its namespace has a
  `PodRuntime` (`kubelet.runtimes[namespace]`), the runtime starts it there and the pod turns
  Ready when the runtime says so (its readiness probe), else at once. A pod being deleted is
  stopped and removed (gracePeriodSeconds=0): with no kubelet it would stay Terminating.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from kube_client import Kube, KubeError

log = logging.getLogger(__name__)
STRATEGIC = "application/strategic-merge-patch+json"
NODE_CAPACITY = {"cpu": "64", "memory": "512Gi", "pods": "250", "ephemeral-storage": "1Ti"}


class PodRuntime(Protocol):
    """What runs a pod's containers: a test starts a real llm-server, or nothing."""

    def start(self, pod: Mapping[str, Any], ip: str) -> None: ...
    def ready(self, pod: Mapping[str, Any], ip: str) -> bool: ...
    def stop(self, pod: Mapping[str, Any]) -> None: ...


def _now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def register_node(
    kube: Kube,
    name: str,
    labels: Mapping[str, str] | None = None,
    capacity: Mapping[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints or []},
    }
    kube.apply(node)
    # The TaintNodesByCondition admission adds node.kubernetes.io/not-ready on create; a node
    # lifecycle controller would lift it once the kubelet reports Ready. Lift it ourselves.
    kube.patch("v1", "Node", name, {"spec": {"taints": taints or []}})
    resources = {**NODE_CAPACITY, **(capacity or {})}
    status = {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "lastHeartbeatTime": _now(),
                "lastTransitionTime": _now(),
            },
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
    }
    return kube.patch("v1", "Node", name, {"status": status}, sub="status")


def pod_port(pod: Mapping[str, Any], name: str = "http") -> int:
    for container in pod["spec"]["containers"]:
        for port in container.get("ports") or []:
            if port.get("name") == name:
                return int(port["containerPort"])
    raise KeyError(f"pod {pod['metadata']['name']} has no port named {name}")


class FakeKubelet:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.runtimes: dict[str, PodRuntime] = {}  # namespace -> what runs its pods
        subnet = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}"
        self._ips = (f"{subnet}.{n}" for n in itertools.cycle(range(2, 255)))
        self._started: dict[str, tuple[dict[str, Any], str]] = {}  # uid -> (pod, ip)
        self._ready: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._watch_loop, name="fake-kubelet", daemon=True),
            threading.Thread(target=self._probe_loop, name="fake-kubelet-probe", daemon=True),
        ]

    def __enter__(self) -> FakeKubelet:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        for pod, _ in list(self._started.values()):
            self._stop_pod(pod)

    def _runtime(self, pod: Mapping[str, Any]) -> PodRuntime | None:
        return self.runtimes.get(pod["metadata"]["namespace"])

    def _stop_pod(self, pod: Mapping[str, Any]) -> None:
        runtime = self._runtime(pod)
        if runtime is not None:
            runtime.stop(pod)

    def ip_of(self, pod_name: str) -> str | None:
        for pod, ip in list(self._started.values()):
            if pod["metadata"]["name"] == pod_name:
                return ip
        return None

    # --- the pod lifecycle -------------------------------------------------------------------

    def _watch_loop(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    listing = self.kube.request("GET", "/api/v1/pods")
                    for pod in listing.get("items") or []:
                        self._handle(pod)
                    version = listing["metadata"]["resourceVersion"]
                for event in self.kube.watch("/api/v1/pods", version, timeout_s=5):
                    if self._stop.is_set():
                        return
                    if event["type"] == "ERROR":  # e.g. 410 Gone: list again
                        version = ""
                        break
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._handle(event["object"])
                    elif event["type"] == "DELETED":
                        self._forget(event["object"])
            except (httpx.HTTPError, KubeError) as exc:
                log.debug("fake kubelet watch: %s", exc)
                self._stop.wait(0.2)

    def _handle(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            self._forget(pod)
            with contextlib.suppress(KubeError):
                self.kube.delete("v1", "Pod", meta["name"], meta["namespace"], grace_seconds=0)
            return
        if not pod["spec"].get("nodeName") or meta["uid"] in self._started:
            return
        ip = next(self._ips)
        with self._lock:
            self._started[meta["uid"]] = (pod, ip)
        runtime = self._runtime(pod)
        if runtime is not None:
            runtime.start(pod, ip)
        self._write_status(pod, ip, ready=runtime is None)

    def _forget(self, pod: Mapping[str, Any]) -> None:
        with self._lock:
            started = self._started.pop(pod["metadata"]["uid"], None)
            self._ready.discard(pod["metadata"]["uid"])
        if started is not None:
            self._stop_pod(started[0])

    def _probe_loop(self) -> None:
        while not self._stop.wait(0.1):
            with self._lock:
                started = list(self._started.items())
            waiting = [(u, p, ip) for u, (p, ip) in started if u not in self._ready]
            for uid, pod, ip in waiting:
                runtime = self._runtime(pod)
                if runtime is None:
                    self._ready.add(uid)  # written Ready when it started
                elif runtime.ready(pod, ip):
                    self._ready.add(uid)
                    with contextlib.suppress(KubeError):
                        self._write_status(pod, ip, ready=True)

    def _write_status(self, pod: Mapping[str, Any], ip: str, ready: bool) -> None:
        meta, now = pod["metadata"], _now()
        flag = "True" if ready else "False"
        containers = [
            {"name": c["name"], "ready": ready, "started": True, "restartCount": 0,
             "image": c.get("image", ""), "imageID": "", "state": {"running": {"startedAt": now}}}
            for c in pod["spec"]["containers"]
        ]  # fmt: skip
        status = {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": now,
            "conditions": [
                {"type": kind, "status": value, "lastTransitionTime": now}
                for kind, value in (
                    ("Initialized", "True"),
                    ("PodReadyToStartContainers", "True"),
                    ("ContainersReady", flag),
                    ("Ready", flag),
                )
            ],
            "containerStatuses": containers,
        }
        path = self.kube.path("v1", "Pod", meta["namespace"], meta["name"], "status")
        try:
            self.kube.request("PATCH", path, {"status": status}, content_type=STRATEGIC)
        except KubeError as exc:
            if exc.status != 404:  # deleted meanwhile
                raise
