"""The chart's RBAC equals what the real operator asks the API server for.

The real operator (kopf with handlers.py, prepare_cluster from __main__.py, peering on, the
chart's own catalog file) runs against KMock while a lifecycle plays out: create, ready, spec
change, a child deleted by hand, a GPU fallback, an Event, a prune (ServiceMonitor turned
off), delete, shutdown. Every request KMock served becomes an RBAC triple (API group,
resource[/subresource], verb); the chart's Role / ClusterRole must grant exactly those.
Discovery (/api, /apis/...) is open to every authenticated user and not counted.

What KMock cannot show (it is no API server): requests the code makes only against real
servers. k8s.py's create-on-404 path runs here *because* KMock does not create on apply; a
real server creates on the apply, which needs `create` too, so `create` is needed either way.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from chart_rendering import render_objects

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration" / "operator"))

from kmock_harness import (  # noqa: E402
    LLMD,
    NAMESPACE,
    VERBS,
    ApiServer,
    Cluster,
    condition,
    eventually,
    manifest,
    operator_config,
    pending_pod,
    point_kubeconfig_at,
    running_operator,
)

from llm_operator.__main__ import prepare_cluster  # noqa: E402
from llm_operator.handlers import CHILDREN  # noqa: E402
from llm_operator.k8s import PLURALS, KubeApi  # noqa: E402
from llm_operator.render import RenderSettings  # noqa: E402
from llm_operator.render.objects import DEPLOYMENT_LABEL  # noqa: E402

PEERING = "llm-operator"
SCALED_OBJECTS = "keda.sh/v1alpha1/scaledobjects"
Triple = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)
# Granted though never called: admission checks it (OwnerReferencesPermissionEnforcement, for
# blockOwnerDeletion); tests/integration/kube/test_rbac_owner_references.py shows it is needed.
ADMISSION_ONLY: set[Triple] = {("inference.llmops.dev", "llmdeployments/finalizers", "update")}


@pytest.fixture
def kmock_options() -> dict[str, Any]:
    return {"cls": ApiServer}


@pytest.fixture
def cluster(kmock: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """KMock serving every kind the operator touches (derived from handlers.CHILDREN)."""
    served: dict[str, tuple[str, set[str], bool]] = {
        LLMD: ("LLMDeployment", {"status"}, True),
        "v1/pods": ("Pod", {"status"}, True),
        "v1/events": ("Event", set(), True),
        "v1/namespaces": ("Namespace", set(), False),
        "kopf.dev/v1/kopfpeerings": ("KopfPeering", set(), True),
        "kopf.dev/v1/clusterkopfpeerings": ("ClusterKopfPeering", set(), False),
    }
    kinds = {(api_version, plural): kind for (api_version, kind), plural in PLURALS.items()}
    for api_version, plural in CHILDREN:
        served[f"{api_version}/{plural}"] = (kinds[api_version, plural], {"status"}, True)
    for resource, (kind, subresources, namespaced) in served.items():
        kmock.resources[resource] = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, verbs=VERBS, subresources=subresources
        )
    point_kubeconfig_at(kmock, tmp_path, monkeypatch)
    return Cluster(kmock)


def recorded(server: ApiServer) -> list[tuple[Triple, str | None]]:
    """(RBAC triple, namespace) of every request the operator sent (kopf's and k8s.py's)."""
    out = []
    for request in list(server):
        if request.resource is None or request.action is None or not request.resource.plural:
            continue  # discovery (/api, /apis/GROUP/VERSION)
        if request.headers.get("User-Agent", "").startswith("kmock/"):
            continue  # the test's own client, playing users and controllers
        method = str(request.method.value).upper()
        action = str(request.action.value).upper()
        verb = {
            "WATCH": "watch",
            "LIST": "list",
            "FETCH": "get",
            "CREATE": "create",
        }.get(action) or {"PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]
        if method == "DELETE" and request.name is None:
            verb = "deletecollection"
        resource = request.resource.plural + (
            f"/{request.subresource}" if request.subresource else ""
        )
        out.append(((request.resource.group or "", resource, verb), request.namespace))
    return out


def granted(rules: list[dict[str, Any]]) -> set[Triple]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def chart_rules(values: dict[str, Any], kind: str) -> set[Triple]:
    roles = [o for o in render_objects(values) if o["kind"] == kind]
    assert len(roles) == 1, f"expected one {kind}"
    return granted(roles[0]["rules"])


def catalog_file(values: dict[str, Any], tmp_path: Path) -> str:
    """The chart's catalog ConfigMap, as the Deployment mounts it."""
    (configmap,) = [
        o
        for o in render_objects(values)
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-catalog")
    ]
    path = tmp_path / "catalog.yaml"
    path.write_text(configmap["data"]["catalog.yaml"])
    return str(path)


@contextlib.asynccontextmanager
async def operator_with_peering(config: Any) -> AsyncIterator[None]:
    """The real operator as __main__.run starts it: prepare_cluster, then peering on."""
    api = KubeApi.from_environment()
    try:
        await prepare_cluster(api, config, timeout=10)
    finally:
        api.close()
    async with running_operator(config, peering=True):
        yield


def stale_child(api_version: str, plural: str) -> dict[str, Any]:
    kind = next(k for (v, k), p in PLURALS.items() if (v, p) == (api_version, plural))
    labels = {"app.kubernetes.io/managed-by": "llm-operator", DEPLOYMENT_LABEL: "chat"}
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "chat-stale", "labels": labels},
    }


async def test_namespaced_role_grants_exactly_what_the_operator_calls(
    cluster: Cluster, tmp_path: Path
) -> None:
    values = {"namespaced": True}
    both = RenderSettings(service_monitor=True, network_policy=True)
    config = operator_config(
        peering=PEERING, render=both, catalog_file=catalog_file(values, tmp_path)
    )
    async with operator_with_peering(config):
        await cluster.create(LLMD, manifest())
        for plural in ("servicemonitors", "networkpolicies", "deployments"):
            await eventually(lambda p=plural: cluster.objects(f"{_api(p)}/{p}"))
        # No pod ready and one unschedulable: the GPU fallback.
        long_ago = "2025-01-01T00:00:00Z"
        await cluster.create("v1/pods", pending_pod("chat", "chat-pending", "primary", long_ago))
        await eventually(
            lambda: condition(cluster.get(LLMD, "chat"), "FallbackActive").get("status") == "True"
        )
        ready = {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
        await cluster.patch("apps/v1/deployments", "chat", {"status": ready}, sub="status")
        await eventually(lambda: cluster.status("chat").get("phase") == "Ready")
        spec = manifest()["spec"]
        spec["model"]["maxContextLength"] = 2048
        await cluster.patch(LLMD, "chat", {"spec": spec})
        await eventually(lambda: cluster.status("chat").get("observedGeneration") == 2)
        await cluster.delete("v1/services", "chat")
        await eventually(lambda: cluster.get("v1/services", "chat"))
        # Children it owns but no longer renders (say, renamed by an upgrade) are pruned.
        for api_version, plural in CHILDREN:
            await cluster.create(f"{api_version}/{plural}", stale_child(api_version, plural))
        for api_version, plural in CHILDREN:
            resource = f"{api_version}/{plural}"
            await eventually(lambda r=resource: cluster.get(r, "chat-stale") is None)
        # KEDA mode: a ScaledObject; back to builtin: it is pruned.
        keda = manifest("queue", autoscaling={"mode": "keda"})
        await cluster.create(LLMD, keda)
        await eventually(lambda: cluster.get(SCALED_OBJECTS, "queue"))
        await cluster.patch(LLMD, "queue", {"spec": {"autoscaling": {"mode": "builtin"}}})
        await eventually(lambda: cluster.get(SCALED_OBJECTS, "queue") is None)
    calls = recorded(cluster.server)
    outside = {(t, ns) for t, ns in calls if ns != NAMESPACE}
    assert not outside, f"a Role cannot grant requests outside its namespace: {outside}"
    used = {t for t, _ in calls}
    rules = chart_rules(values, "Role")
    assert used - rules == set(), "the operator needs rights the chart does not grant"
    assert rules - used == ADMISSION_ONLY, "the chart grants rights the operator never used"


def _api(plural: str) -> str:
    return next(v for v, p in CHILDREN if p == plural)


async def test_cluster_role_grants_the_cluster_wide_calls(cluster: Cluster, tmp_path: Path) -> None:
    values: dict[str, Any] = {}
    config = operator_config(
        namespaces=(),
        all_namespaces=True,
        peering=PEERING,
        catalog_file=catalog_file(values, tmp_path),
    )
    async with operator_with_peering(config):
        await cluster.create(LLMD, manifest())
        await eventually(lambda: cluster.get("apps/v1/deployments", "chat"))
        await eventually(lambda: cluster.status("chat").get("phase"))
    used = {t for t, _ in recorded(cluster.server)}
    rules = chart_rules(values, "ClusterRole")
    assert used - rules == set(), "the operator needs rights the ClusterRole does not grant"
    peering = {t for t in rules if t[0] == "kopf.dev"}
    assert peering == {t for t in used if t[0] == "kopf.dev"}
    assert {r for _, r, _ in peering} == {"clusterkopfpeerings"}
    # Apart from the peering kind, the ClusterRole grants what the namespaced Role grants.
    role = chart_rules({"namespaced": True}, "Role")
    assert {t for t in rules if t[0] != "kopf.dev"} == {t for t in role if t[0] != "kopf.dev"}


async def test_start_up_creates_the_peering_once_and_waits_for_the_crds(
    cluster: Cluster, kmock: ApiServer
) -> None:
    config = operator_config(namespaces=(), all_namespaces=True, peering=PEERING)
    api = KubeApi.from_environment()
    try:
        await prepare_cluster(api, config, timeout=5)
        await prepare_cluster(api, config, timeout=5)  # a peer was first: 409 is fine
        peerings = cluster.objects("kopf.dev/v1/clusterkopfpeerings")
        assert [p["metadata"]["name"] for p in peerings] == [PEERING]
        del kmock.resources[LLMD]  # the CRD is not served (yet)
        with pytest.raises(RuntimeError, match="install the CRDs"):
            await prepare_cluster(api, config, timeout=0)
    finally:
        api.close()
