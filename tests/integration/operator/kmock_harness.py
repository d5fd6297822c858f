"""Harness: the real operator (kopf, in-process) against KMock's stateful Kubernetes API, for
the tests that still use it (tests/observability: the live-Prometheus test, which needs no
controller and whose pods point at one shared server process; see its docstring).
The operator's own integration tests run on the real control plane (operator_harness.py).

KMock stores objects and streams watch events, but it is no API server: it assigns no uid,
resourceVersion or generation (the harness sets uid and generation as the API server would),
merges every PATCH as a JSON merge patch (server-side apply included), does not create on
apply (the executor falls back to a create; see k8s.py), runs no controllers and no garbage
collector. `Cluster.collect_garbage` plays Kubernetes' garbage collector by ownerReference
uid, and tests play the Deployment controller and the scheduler by patching status and
creating Pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import jsonpatch
import kmock
import kopf
import pytest
import yaml
from gapless_watch import GaplessWatch

from llm_operator.catalog import default_catalog
from llm_operator.cost import replica_dollars_per_hour
from llm_operator.plan import FallbackSettings
from llm_operator.render.objects import OPTION_LABEL
from llm_operator.settings import OperatorConfig

NAMESPACE = "default"
LLMD = "inference.llmops.dev/v1alpha1/llmdeployments"
RESOURCES: dict[str, tuple[str, set[str]]] = {
    LLMD: ("LLMDeployment", {"status"}),
    "apps/v1/deployments": ("Deployment", {"status", "scale"}),
    "v1/configmaps": ("ConfigMap", set()),
    "v1/services": ("Service", {"status"}),
    "v1/pods": ("Pod", {"status"}),
    "v1/events": ("Event", set()),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", {"status"}),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", set()),
    "keda.sh/v1alpha1/scaledobjects": ("ScaledObject", {"status"}),
}
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}
CHILD_KINDS = ("configmaps", "services", "deployments", "poddisruptionbudgets")

BASE: dict[str, Any] = {
    "apiVersion": "inference.llmops.dev/v1alpha1",
    "kind": "LLMDeployment",
    "metadata": {"name": "chat", "namespace": NAMESPACE},
    "spec": {
        "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "parameterCount": "8B"},
        "optimization": {"quantization": "int8"},
        "accelerator": {"type": "L4", "fallbacks": [{"type": "A10G"}]},
        "replicas": {"min": 1, "max": 2},
    },
}


def manifest(name: str = "chat", **spec: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out["metadata"]["name"] = name
    out["spec"].update(spec)
    return out


L4_PER_HOUR = replica_dollars_per_hour(default_catalog(), "L4", 1, "on-demand")
BUDGET_FOR_TWO = round(L4_PER_HOUR * 2.5, 2)  # pays for 2 L4 replicas; replicas.max is 4


def autoscaled_manifest(name: str, **autoscaling: Any) -> dict[str, Any]:
    """An L4 LLMDeployment the autoscaler may scale 1-4 under a budget that pays for 2.
    maxConcurrentSequences / 8 = 1 running request makes a replica full, so a server run with
    --max-num-seqs 1 and a few concurrent clients gives it a real queue to scale on."""
    return {
        "apiVersion": "inference.llmops.dev/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "parameterCount": "8B"},
            "optimization": {"quantization": "int8", "batching": {"maxConcurrentSequences": 8}},
            "accelerator": {"type": "L4"},
            "replicas": {"min": 1, "max": 4},
            "autoscaling": {"budget": {"maxDollarsPerHour": BUDGET_FOR_TWO}, **autoscaling},
        },
    }


def resource_path(resource: str, name: str | None = None, sub: str | None = None) -> str:
    group_version, plural = resource.rsplit("/", 1)
    root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    out = f"{root}/namespaces/{NAMESPACE}/{plural}"
    return out + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


class ApiServer(GaplessWatch, kmock.KubernetesEmulator):
    """KMock plus what the operator relies on: uid and a resourceVersion bumped on each write,
    and watches that lose no change between their snapshot and their stream (gapless_watch).

    kopf guards its own patches with a JSON-patch `test` of metadata.resourceVersion and waits
    for the watch event carrying the version its patch produced, so versions must move.
    """

    _version = 1
    kinds: ClassVar[Mapping[str, str]] = {name: kind for name, (kind, _) in RESOURCES.items()}

    def declare_resources(self) -> None:
        """Serve RESOURCES (namespaced), plus namespaces for discovery."""
        for name, (kind, subresources) in RESOURCES.items():
            self.resources[name] = kmock.ResourceInfo(
                kind=kind, namespaced=True, verbs=VERBS, subresources=subresources
            )
        # kopf waits for namespaces to be discoverable even when it watches named ones only.
        self.resources["v1/namespaces"] = kmock.ResourceInfo(
            kind="Namespace", namespaced=False, verbs=VERBS
        )

    async def _handle(self, request: Any) -> Any:
        if request.resource is not None and request.action is not None:
            self._stamp(request)
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchTestFailed as exc:  # the API server answers 422 Invalid
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc

    def _stamp(self, request: Any) -> None:
        """A new resourceVersion on every write, a uid on every create."""
        action = str(request.action).rsplit(".", 1)[-1].upper()
        if action not in {"CREATE", "UPDATE"}:
            return
        type(self)._version += 1
        version = str(self._version)
        if isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta["resourceVersion"] = version
            if action == "CREATE":
                meta.setdefault("uid", str(uuid.uuid4()))
        elif isinstance(request.data, list):  # a JSON patch
            request.data.append(
                {"op": "add", "path": "/metadata/resourceVersion", "value": version}
            )


def point_kubeconfig_at(
    server: kmock.KubernetesEmulator, directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Write a kubeconfig for `server` into `directory` and set KUBECONFIG to it: the
    operator's Kubernetes client (and kopf's) then talk to the mock."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": str(server.url).rstrip("/")}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
        "current-context": "kmock",
    }
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))


class Cluster:
    """Test-side client of the mock API: every change goes over HTTP, so watches see it."""

    def __init__(self, server: kmock.KubernetesEmulator) -> None:
        self.server = server

    def _resource(self, resource: str) -> Any:
        group_version, plural = resource.rsplit("/", 1)
        group, _, version = group_version.rpartition("/")
        return kmock.resource(group, version, plural)

    def objects(self, resource: str) -> list[dict[str, Any]]:
        wanted = self._resource(resource)
        return [
            obj.raw
            for (res, _, _), obj in list(self.server.objects.items())
            if res == wanted and not obj.deleted
        ]

    def get(self, resource: str, name: str) -> dict[str, Any] | None:
        return next((o for o in self.objects(resource) if o["metadata"]["name"] == name), None)

    def requests(self, method: str, resource: str, name: str | None = None) -> int:
        """Requests with `method` (POST, PATCH, DELETE) sent for `resource`, or one object."""
        wanted = self._resource(resource)
        count = 0
        for request in list(self.server):  # KMock iterates over the requests it served
            if request.resource != wanted or str(request.method.value).upper() != method:
                continue
            body_name = (
                (request.data or {}).get("metadata", {}).get("name")
                if isinstance(request.data, dict)
                else None
            )
            if name is None or name in (request.name, body_name):
                count += 1
        return count

    async def _send(self, method: str, url: str, body: Any = None) -> dict[str, Any]:
        response = await self.server.request(method, url, json=body)
        data: dict[str, Any] = await response.json()
        assert response.status < 400, data
        return data

    async def create(self, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        meta.setdefault("namespace", NAMESPACE)
        meta.setdefault("uid", str(uuid.uuid4()))  # the API server would set these
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", "2025-01-01T00:00:00Z")
        return await self._send("POST", resource_path(resource), body)

    async def patch(
        self, resource: str, name: str, patch: dict[str, Any], sub: str | None = None
    ) -> None:
        if "spec" in patch and sub is None:  # a spec change bumps metadata.generation
            current = self.get(resource, name) or {}
            generation = current.get("metadata", {}).get("generation", 1) + 1
            patch = {**patch, "metadata": {**patch.get("metadata", {}), "generation": generation}}
        await self._send("PATCH", resource_path(resource, name, sub), patch)

    async def delete(self, resource: str, name: str) -> None:
        await self._send("DELETE", resource_path(resource, name))

    async def collect_garbage(self) -> int:
        """Kubernetes' garbage collector: delete objects whose owner (by uid) is gone."""
        alive = {o["metadata"].get("uid") for resource in RESOURCES for o in self.objects(resource)}
        collected = 0
        for resource in RESOURCES:
            for obj in self.objects(resource):
                owners = obj["metadata"].get("ownerReferences") or []
                if owners and not any(ref.get("uid") in alive for ref in owners):
                    await self.delete(resource, obj["metadata"]["name"])
                    collected += 1
        return collected

    def status(self, name: str) -> dict[str, Any]:
        return dict((self.get(LLMD, name) or {}).get("status") or {})

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.objects("v1/events")
            if name is None or e["involvedObject"]["name"] == name
        ]


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll until `check()` is truthy (the API is eventually consistent; never assert time)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        await asyncio.sleep(0.02)


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def operator_config(**overrides: Any) -> OperatorConfig:
    values: dict[str, Any] = {
        "namespaces": (NAMESPACE,),
        "peering": None,
        "metrics_port": 0,
        "resync_seconds": 0.5,
        "fallback": FallbackSettings(
            unschedulable_seconds=0.5, primary_retry_seconds=3600, primary_retry_max_seconds=3600
        ),
    }
    values.update(overrides)
    return OperatorConfig(**values)


@contextlib.asynccontextmanager
async def running_operator(
    config: OperatorConfig | None = None, peering: bool = False
) -> AsyncIterator[kopf.Memo]:
    """The real operator (handlers.py) in a thread with its own event loop, as in a pod.

    Its own loop also keeps kopf from waiting on the mock server's tasks when it stops.
    peering=True runs it as __main__ does in the chart (config.peering, a fixed priority);
    the peering object must exist already (__main__.prepare_cluster creates it).
    """
    import llm_operator.handlers  # noqa: F401  (registers the handlers)

    config = config or operator_config()
    stop, ready = threading.Event(), threading.Event()
    memo = kopf.Memo(config=config)
    settings = kopf.OperatorSettings()
    settings.queueing.exit_timeout = 0.1  # no lingering on stop: tests start it many times
    settings.watching.reconnect_backoff = 0.01
    failure: list[BaseException] = []
    peers: dict[str, Any] = (
        {"standalone": False, "peering_name": config.peering, "priority": 7}
        if peering
        else {"standalone": True}
    )

    def run() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    **peers,
                    clusterwide=config.all_namespaces,
                    namespaces=list(config.namespaces),
                    memo=memo,
                    settings=settings,
                    stop_flag=stop,
                    ready_flag=ready,
                )
            )
        except BaseException as exc:  # surfaced in the test below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="operator", daemon=True)
    thread.start()
    await asyncio.to_thread(ready.wait, 30)
    if failure:
        raise failure[0]
    try:
        yield memo
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
    assert not failure, failure


def server_pod(
    deployment: str, name: str, option: str, status: dict[str, Any], **spec: Any
) -> dict[str, Any]:
    """A pod of `deployment`'s llm-server Deployment (option: primary or fallback-N)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/name": "llm-server",
                "app.kubernetes.io/managed-by": "llm-operator",
                "inference.llmops.dev/deployment": deployment,
                OPTION_LABEL: option,
            },
        },
        **({"spec": spec} if spec else {}),
        "status": status,
    }


def pending_pod(
    deployment: str, name: str, option: str, since: str | None = None
) -> dict[str, Any]:
    """A pod as the scheduler leaves it when no node has the GPU (unschedulable `since`)."""
    since = since or datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    unschedulable = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        "lastTransitionTime": since,
    }
    return server_pod(deployment, name, option, {"phase": "Pending", "conditions": [unschedulable]})


def loopback_pod(deployment: str, name: str, port: int, ready: bool = True) -> dict[str, Any]:
    """A pod of `deployment`'s Deployment whose llm-server listens on 127.0.0.1:`port`: what
    the autoscaler's collector scrapes (podIP + the container port named http)."""
    status = {
        "phase": "Running",
        "podIP": "127.0.0.1",
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True" if ready else "False"},
        ],
    }
    container = {"name": "llm-server", "ports": [{"name": "http", "containerPort": port}]}
    return server_pod(deployment, name, "primary", status, containers=[container])


@pytest.fixture
def kmock_options() -> dict[str, Any]:
    """Use ApiServer for the `kmock` fixture of KMock's pytest plugin."""
    return {"cls": ApiServer}


@pytest.fixture
async def cluster(kmock: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    kmock.declare_resources()
    point_kubeconfig_at(kmock, tmp_path, monkeypatch)
    return Cluster(kmock)
