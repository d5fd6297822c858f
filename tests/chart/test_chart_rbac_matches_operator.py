"""The chart's RBAC is exactly what the real operator needs, on a real API server.

The chart is rendered by the real Helm engine and its ServiceAccount, Role / ClusterRole and
binding are applied to the real control plane; the operator (kopf with handlers.py,
prepare_cluster from __main__.py, peering on, the chart's own catalog file) runs with that
ServiceAccount's token (TokenRequest), so a verb the chart lacks is a real 403. A lifecycle
plays out: create, a GPU fallback found by the real scheduler, Ready on the fallback node, a
spec change, a child deleted by hand, children it no longer renders pruned, KEDA mode on and
off, delete, shutdown. The API server's audit log (only the operator's ServiceAccounts are
logged) records every request; each becomes an RBAC triple (API group, resource[/subresource],
verb), and the chart must grant exactly those. An apply that creates its object needs `create`
as well as `patch` (the API server checks both), so a 201 to a patch counts as both.
Discovery (/api, /apis/...) is open to every authenticated user and not counted.

One right is checked inside admission, not as a request of its own, so no audit event names
it: `update` on `llmdeployments/finalizers`, which the OwnerReferencesPermissionEnforcement
plugin (on in OpenShift) demands for a child's owner reference with blockOwnerDeletion. The
plugin is on here, so without that grant every child apply is a 403 and the test fails.

This module starts its own control plane (the audit log is a kube-apiserver flag), with
stand-in CRDs for the ServiceMonitor and ScaledObject kinds the operator renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_rendering import RELEASE, chart, of_component
from control_plane import ControlPlane
from fake_kubelet import FakeKubelet, register_node
from kube_client import Kube, wait_until
from kube_fixtures import admin_client, install_crds, start_control_plane
from operator_thread import operator_config, running_operator

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "integration" / "operator"))

from operator_harness import (  # noqa: E402
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    Llmd,
    install_stand_in_crds,
    manifest,
)

from llm_operator.__main__ import prepare_cluster  # noqa: E402
from llm_operator.child_kinds import CHILD_KINDS  # noqa: E402
from llm_operator.k8s import KubeApi  # noqa: E402
from llm_operator.render import RenderSettings  # noqa: E402
from llm_operator.render.objects import DEPLOYMENT_LABEL  # noqa: E402

PEERING = "llm-operator"
NAMESPACED, CLUSTER = "rbac-namespaced", "rbac-cluster"
Triple = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)
CHECKED_IN_ADMISSION = {("inference.llmops.dev", "llmdeployments/finalizers", "update")}


def audit_policy(path: Path) -> Path:
    """Log each request of a ServiceAccount of the two operator namespaces, and nothing else."""
    policy = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {
                "level": "Metadata",
                "userGroups": [f"system:serviceaccounts:{ns}" for ns in (NAMESPACED, CLUSTER)],
            },
            {"level": "None"},
        ],
    }
    path.write_text(yaml.safe_dump(policy))
    return path


class Audited:
    def __init__(self, plane: ControlPlane, kube: Kube, log: Path) -> None:
        self.plane, self.kube, self.log = plane, kube, log


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audited]:
    workdir = tmp_path_factory.mktemp("audited")
    log = workdir / "audit.log"
    flags = (
        f"--audit-policy-file={audit_policy(workdir / 'audit-policy.yaml')}",
        f"--audit-log-path={log}",
    )
    plane = start_control_plane(
        workdir / "plane",
        apiserver_args=flags,
        admission_plugins=("OwnerReferencesPermissionEnforcement",),
    )
    try:
        kube = admin_client(plane)
        install_crds(kube)
        install_stand_in_crds(kube)
        a10g = {GPU_PRODUCT_LABEL: "NVIDIA-A10G"}  # no L4 anywhere: the fallback's node
        register_node(kube, "rbac-a10g", labels=a10g, capacity={GPU_RESOURCE: "8"})
        with FakeKubelet(admin_client(plane)):
            yield Audited(plane, kube, log)
        kube.close()
    finally:
        plane.stop()


def render_chart(values: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    """The operator's objects as `helm template --namespace NAMESPACE` renders them."""
    rendered = chart().render(values, name=RELEASE, namespace=namespace)
    objects = [
        doc
        for path, text in sorted(rendered.items())
        if not path.endswith(".txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    return of_component(objects, "operator")


@contextlib.contextmanager
def as_chart_service_account(
    audited: Audited, values: dict[str, Any], namespace: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[list[dict[str, Any]], str]]:
    """Apply the chart's RBAC objects and point $KUBECONFIG at its ServiceAccount's token.
    Yields the rendered objects and the path of the catalog file the Deployment mounts."""
    kube = audited.kube
    objects = render_chart(values, namespace)
    kube.ensure_namespace(namespace)
    for obj in objects:
        if obj["kind"] in ("ServiceAccount", "Role", "RoleBinding", "ClusterRole",
                           "ClusterRoleBinding", "ConfigMap"):  # fmt: skip
            kube.apply(obj)
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    name = account["metadata"]["name"]
    # RBAC reaches the authorizer through an informer: wait until the binding is in force
    # (asked as the admin, so the audit log holds the operator's requests only).
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{namespace}:{name}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            "resourceAttributes": {"group": "inference.llmops.dev", "resource": "llmdeployments",
                                   "verb": "watch", "namespace": namespace},
        },
    }  # fmt: skip
    reviews = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    wait_until(
        lambda: kube.request("POST", reviews, review)["status"].get("allowed"),
        120,
        "the chart's RBAC in force",
    )
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    token = kube.request("POST", path, request)["status"]["token"]
    monkeypatch.setenv("KUBECONFIG", str(audited.plane.token_kubeconfig(token, namespace)))
    (configmap,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-catalog")
    ]
    catalog = audited.plane.workdir / f"{namespace}-catalog.yaml"
    catalog.write_text(configmap["data"]["catalog.yaml"])
    yield objects, str(catalog)


def recorded(log: Path, namespace: str) -> list[tuple[Triple, str | None, int]]:
    """(RBAC triple, namespace, HTTP status) of each request of `namespace`'s operator."""
    out = []
    user = f"system:serviceaccount:{namespace}:"
    for line in log.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if not event["user"]["username"].startswith(user) or "resource" not in ref:
            continue  # another operator's, or discovery (no objectRef)
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        code = int((event.get("responseStatus") or {}).get("code", 0))
        group = ref.get("apiGroup", "")
        out.append(((group, resource, event["verb"]), ref.get("namespace"), code))
        if event["verb"] == "patch" and code == 201:  # an apply that created its object
            out.append(((group, resource, "create"), ref.get("namespace"), code))
    return out


def granted(rules: list[dict[str, Any]]) -> set[Triple]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def rules_of(objects: list[dict[str, Any]], kind: str) -> set[Triple]:
    roles = [o for o in objects if o["kind"] == kind]
    assert len(roles) == 1, f"expected one {kind}"
    return granted(roles[0]["rules"])


def prepare(config: Any) -> None:
    """__main__.run's first step, with the operator's own client."""
    api = KubeApi.from_environment()
    try:
        asyncio.run(prepare_cluster(api, config, timeout=10))
    finally:
        api.close()


def stale_child(kind: Any, namespace: str) -> dict[str, Any]:
    """An object the operator owns by its labels but no longer renders (say, renamed by an
    upgrade); the smallest body the API server accepts for the kind."""
    labels = {"app.kubernetes.io/managed-by": "llm-operator", DEPLOYMENT_LABEL: "chat"}
    selector = {"matchLabels": {"stale": "yes"}}
    specs: dict[str, Any] = {
        "Service": {"ports": [{"port": 80}], "selector": {"stale": "yes"}},
        "Deployment": {
            "replicas": 0,
            "selector": selector,
            "template": {
                "metadata": {"labels": {"stale": "yes"}},
                "spec": {"containers": [{"name": "c", "image": "stale"}]},
            },
        },
        "PodDisruptionBudget": {"maxUnavailable": 1, "selector": selector},
        "NetworkPolicy": {"podSelector": selector},
        "InferencePool": {
            "selector": selector,
            "targetPorts": [{"number": 8000}],
            "endpointPickerRef": {"name": "stale", "port": {"number": 9002}},
        },
    }
    body: dict[str, Any] = {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {"name": "chat-stale", "namespace": namespace, "labels": labels},
    }
    if kind.kind in specs:
        body["spec"] = specs[kind.kind]
    return body


def test_namespaced_role_grants_exactly_what_the_operator_calls(
    audited: Audited, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube, ns = audited.kube, NAMESPACED
    values = {"namespaced": True}
    with as_chart_service_account(audited, values, ns, monkeypatch) as (objects, catalog):
        both = RenderSettings(service_monitor=True, network_policy=True)
        # --gateway-service as the chart sets it: the operator lists the gateway's slices.
        gateway = {"gateway_service": (ns, "llm-gateway"), "gateway_scrape_seconds": 0.5}
        config = operator_config(ns, peering=PEERING, render=both, catalog_file=catalog, **gateway)
        prepare(config)
        llmd = Llmd(kube, ns)
        with running_operator(config, peering=True):
            llmd.create(manifest(ns))
            for kind in ("ServiceMonitor", "NetworkPolicy", "Deployment"):
                api_version = next(k.api_version for k in CHILD_KINDS if k.kind == kind)
                wait_until(lambda v=api_version, k=kind: llmd.child(v, k), 30, kind)
            # The scheduler finds no L4: the GPU fallback, then Ready on the A10G node.
            wait_until(lambda: llmd.condition("FallbackActive").get("status") == "True", 60,
                       "FallbackActive")  # fmt: skip
            wait_until(lambda: llmd.status().get("phase") == "Ready", 120, "Ready")
            spec = manifest(ns)["spec"]
            spec["model"]["maxContextLength"] = 2048
            llmd.patch_spec(spec)
            wait_until(lambda: llmd.status().get("observedGeneration") == 2, 60, "generation 2")
            service = llmd.child("v1", "Service") or {}
            kube.delete("v1", "Service", "chat", ns)
            wait_until(
                lambda: (
                    (llmd.child("v1", "Service") or service)["metadata"]["uid"]
                    != service["metadata"]["uid"]
                ),
                60,
                "the Service re-created",
            )
            for kind in CHILD_KINDS:
                kube.create(stale_child(kind, ns))
            for kind in CHILD_KINDS:
                wait_until(
                    lambda k=kind: kube.get(k.api_version, k.kind, "chat-stale", ns) is None,
                    60,
                    f"the stale {kind.kind} pruned",
                )
            # KEDA mode and an InferencePool; back to builtin without the pool: both pruned.
            queue = Llmd(kube, ns, "queue")
            picker = {"endpointPicker": "queue-epp"}
            queue.create(manifest(ns, "queue", autoscaling={"mode": "keda"}, inferencePool=picker))
            wait_until(lambda: queue.child("keda.sh/v1alpha1", "ScaledObject"), 60, "SO")
            pool = ("inference.networking.k8s.io/v1", "InferencePool")
            wait_until(lambda: queue.child(*pool), 60, "the InferencePool")
            queue.patch_spec({"autoscaling": {"mode": "builtin"}, "inferencePool": None})
            wait_until(lambda: not queue.child("keda.sh/v1alpha1", "ScaledObject"), 60, "pruned")
            wait_until(lambda: not queue.child(*pool), 60, "the InferencePool pruned")
            # An LLMRoute: watched, its daemon's finalizer patched on, its status written.
            routes = ("inference.llmops.dev/v1alpha1", "LLMRoute", "assistant", ns)
            spec = {"model": "assistant", "targets": [{"deployment": "chat"}]}
            meta = {"name": "assistant", "namespace": ns}
            kube.create(
                {"apiVersion": routes[0], "kind": routes[1], "metadata": meta, "spec": spec}
            )
            wait_until(lambda: (kube.get(*routes) or {}).get("status"), 60, "route status")
            kube.delete(*routes)
            wait_until(lambda: kube.get(*routes) is None, 60, "route finalizer released")
            for gone in (llmd, queue):
                gone.delete()
                wait_until(lambda g=gone: g.get() is None, 60, "finalizer released")
    calls = recorded(audited.log, ns)
    forbidden = {t for t, _, code in calls if code == 403}
    assert not forbidden, f"the chart's Role lacks: {sorted(forbidden)}"
    outside = {(t, where) for t, where, _ in calls if where != ns}
    assert not outside, f"a Role cannot grant requests outside its namespace: {outside}"
    used = {t for t, _, _ in calls} | CHECKED_IN_ADMISSION
    rules = rules_of(objects, "Role")
    assert used - rules == set(), "the operator needs rights the chart does not grant"
    assert rules - used == set(), "the chart grants rights the operator never used"


def test_cluster_role_grants_the_cluster_wide_calls(
    audited: Audited, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube, work = audited.kube, "rbac-cluster-work"
    with as_chart_service_account(audited, {}, CLUSTER, monkeypatch) as (objects, catalog):
        config = operator_config(
            work, namespaces=(), all_namespaces=True, peering=PEERING, catalog_file=catalog
        )
        prepare(config)
        kube.ensure_namespace(work)
        llmd = Llmd(kube, work)
        with running_operator(config, peering=True):
            llmd.create(manifest(work))
            wait_until(lambda: llmd.deployment(), 60, "the Deployment")
            wait_until(lambda: llmd.status().get("phase") == "Ready", 120, "Ready")
            llmd.delete()
            wait_until(lambda: llmd.get() is None, 60, "finalizer released")
    calls = recorded(audited.log, CLUSTER)
    forbidden = {t for t, _, code in calls if code == 403}
    assert not forbidden, f"the chart's ClusterRole lacks: {sorted(forbidden)}"
    used = {t for t, _, _ in calls}
    rules = rules_of(objects, "ClusterRole")
    assert used - rules == set(), "the operator needs rights the ClusterRole does not grant"
    peering = {t for t in rules if t[0] == "kopf.dev"}
    assert peering == {t for t in used if t[0] == "kopf.dev"}
    assert {r for _, r, _ in peering} == {"clusterkopfpeerings"}
    # Apart from the peering kind, the ClusterRole grants what the namespaced Role grants.
    role = rules_of(render_chart({"namespaced": True}, NAMESPACED), "Role")
    assert {t for t in rules if t[0] != "kopf.dev"} == {t for t in role if t[0] != "kopf.dev"}


def test_start_up_creates_the_peering_once_and_waits_for_the_crds(
    audited: Audited, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Last in this module: it removes the LLMDeployment CRD from this module's server."""
    kube = audited.kube
    monkeypatch.setenv("KUBECONFIG", str(audited.plane.kubeconfig))
    config = operator_config("default", namespaces=(), all_namespaces=True, peering="once")
    prepare(config)
    prepare(config)  # a peer was first: 409 is fine
    peerings = kube.list("kopf.dev/v1", "ClusterKopfPeering")
    assert [p["metadata"]["name"] for p in peerings if p["metadata"]["name"] == "once"] == ["once"]
    kube.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition",
                "llmdeployments.inference.llmops.dev")  # fmt: skip
    wait_until(
        lambda: kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition",
                         "llmdeployments.inference.llmops.dev") is None,
        60,
        "the CRD gone",
    )  # fmt: skip
    api = KubeApi.from_environment()
    try:
        with pytest.raises(RuntimeError, match="install the CRDs"):
            asyncio.run(prepare_cluster(api, config, timeout=0))
    finally:
        api.close()
