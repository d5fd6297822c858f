"""The chart's gateway RBAC grants exactly what the real gateway asks of a real API server.

The gateway's KubeDirectory, KubeTenants and KubeRoutes (what `llm-gateway --kube` runs)
authenticate as the chart's gateway ServiceAccount, with only the chart's Role or ClusterRole
bound, list and watch LLMDeployments, EndpointSlices, LLMTenants, key Secrets and LLMRoutes,
find the model and stamp the demand annotation (as the gateway does while holding a request at
zero replicas), and add a tenant's spend to its status.spend (as the spend ledger does). The
API server's audit log records each request of that ServiceAccount: none may be forbidden, and
each granted right must have been used.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_rendering import RELEASE, chart, of_component
from control_plane import ControlPlane
from kube_client import Kube, wait_until
from kube_fixtures import admin_client, install_crds, start_control_plane
from llmd_manifest import llmd_manifest

from llm_gateway.kube_api import KubeApi
from llm_gateway.kube_directory import KubeDirectory
from llm_gateway.kube_routes import KubeRoutes
from llm_gateway.kube_tenants import KubeTenants
from llm_gateway.tenants import Tenant
from llm_operator.api.demand import DEMAND_ANNOTATION

NAMESPACED, CLUSTER = "gw-rbac-namespaced", "gw-rbac-cluster"
Triple = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)
SPEND_PERIOD = 1_764_460_800.0  # 2025-11-30T00:00:00Z


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, Path]]:
    workdir = tmp_path_factory.mktemp("gateway-audited")
    log, policy = workdir / "audit.log", workdir / "audit-policy.yaml"
    groups = [f"system:serviceaccounts:{ns}" for ns in (NAMESPACED, CLUSTER)]
    policy.write_text(yaml.safe_dump({
        "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
        "rules": [{"level": "Metadata", "userGroups": groups}, {"level": "None"}],
    }))  # fmt: skip
    flags = (f"--audit-policy-file={policy}", f"--audit-log-path={log}")
    plane = start_control_plane(workdir / "plane", apiserver_args=flags)
    try:
        kube = admin_client(plane)
        install_crds(kube)
        kube.close()
        yield plane, log
    finally:
        plane.stop()


def gateway_objects(values: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    rendered = chart().render(values, name=RELEASE, namespace=namespace)
    objects = [
        doc
        for path, text in sorted(rendered.items())
        if not path.endswith(".txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    return of_component(objects, "gateway")


def as_gateway(plane: ControlPlane, kube: Kube, objects: list[dict[str, Any]], ns: str) -> Path:
    """Apply the chart's gateway RBAC; a kubeconfig with its ServiceAccount's token."""
    kube.ensure_namespace(ns)
    for obj in objects:
        if obj["kind"] in ("ServiceAccount", "Role", "RoleBinding", "ClusterRole",
                           "ClusterRoleBinding"):  # fmt: skip
            kube.apply(obj)
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    name = account["metadata"]["name"]
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{ns}:{name}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}"],
            "resourceAttributes": {"group": "discovery.k8s.io", "resource": "endpointslices",
                                   "verb": "watch", "namespace": ns},
        },
    }  # fmt: skip
    reviews = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    wait_until(
        lambda: kube.request("POST", reviews, review)["status"].get("allowed"),
        120,
        "the chart's gateway RBAC in force",
    )
    path = f"/api/v1/namespaces/{ns}/serviceaccounts/{name}/token"
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    token = kube.request("POST", path, request)["status"]["token"]
    return plane.token_kubeconfig(token, f"{ns}-gateway")


async def run_gateway_directory(
    kubeconfig: Path, namespaces: tuple[str, ...], model: str, tenant: Tenant
) -> None:
    """What the gateway does on a cluster: sync (deployments and tenants), find the model,
    signal demand once, write a tenant's spend."""
    directory = KubeDirectory(KubeApi.from_environment(str(kubeconfig)), namespaces)
    tenants = KubeTenants(KubeApi.from_environment(str(kubeconfig)), namespaces)
    routes = KubeRoutes(KubeApi.from_environment(str(kubeconfig)), namespaces)
    async with directory, tenants, routes:
        assert await directory.wait_synced(60), "the gateway never synced"
        for _ in range(600):
            if tenants.synced():
                break
            await asyncio.sleep(0.1)
        assert tenants.synced(), "the gateway never listed LLMTenants and key Secrets"
        for _ in range(600):
            if routes.synced():
                break
            await asyncio.sleep(0.1)
        assert routes.synced(), "the gateway never listed LLMRoutes"
        for _ in range(600):
            target = directory.get(model)
            if target is not None:
                break
            await asyncio.sleep(0.1)
        assert target is not None, "the LLMDeployment never reached the gateway"
        await directory.signal_demand(target)
        await tenants.record_spend(tenant, SPEND_PERIOD, 0.5)


def recorded(log: Path, namespace: str) -> list[tuple[Triple, str | None, int]]:
    out = []
    user = f"system:serviceaccount:{namespace}:"
    for line in log.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if not event["user"]["username"].startswith(user) or "resource" not in ref:
            continue
        code = int((event.get("responseStatus") or {}).get("code", 0))
        resource = "/".join(filter(None, (ref["resource"], ref.get("subresource"))))
        triple = (ref.get("apiGroup", ""), resource, event["verb"])
        out.append((triple, ref.get("namespace"), code))
    return out


def granted(role: dict[str, Any]) -> set[Triple]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize(
    ("values", "namespace", "role_kind"),
    [({"namespaced": True}, NAMESPACED, "Role"), ({}, CLUSTER, "ClusterRole")],
    ids=["namespaced", "cluster"],
)
def test_gateway_rbac_grants_exactly_what_the_gateway_calls(
    audited: tuple[ControlPlane, Path], values: dict[str, Any], namespace: str, role_kind: str
) -> None:
    plane, log = audited
    kube = admin_client(plane)
    try:
        objects = gateway_objects(values, namespace)
        kubeconfig = as_gateway(plane, kube, objects, namespace)
        model = f"{namespace}-model"  # the cluster-wide gateway sees both tests' deployments
        kube.create(llmd_manifest(namespace, "chat", model={
            "uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "parameterCount": "8B",
            "servedName": model,
        }))  # fmt: skip
        kube.create({"apiVersion": "inference.llmops.dev/v1alpha1", "kind": "LLMTenant",
                     "metadata": {"name": "web", "namespace": namespace}})  # fmt: skip
        tenant = Tenant(namespace, "web", frozenset(), None, None, None, "day")
        watched = (namespace,) if role_kind == "Role" else ()
        asyncio.run(run_gateway_directory(kubeconfig, watched, model, tenant))
        stamped = kube.get("inference.llmops.dev/v1alpha1", "LLMDeployment", "chat", namespace)
        assert stamped is not None and DEMAND_ANNOTATION in stamped["metadata"]["annotations"]
        spent = kube.get("inference.llmops.dev/v1alpha1", "LLMTenant", "web", namespace)
        assert spent is not None and spent["status"]["spend"]["dollars"] == 0.5
    finally:
        kube.close()
    calls = recorded(log, namespace)
    forbidden = {t for t, _, code in calls if code == 403}
    assert not forbidden, f"the chart's gateway {role_kind} lacks: {sorted(forbidden)}"
    if role_kind == "Role":
        outside = {(t, where) for t, where, _ in calls if where != namespace}
        assert not outside, f"a Role cannot grant requests outside its namespace: {outside}"
    (role,) = [o for o in objects if o["kind"] == role_kind]
    used, rules = {t for t, _, _ in calls}, granted(role)
    assert used - rules == set(), "the gateway needs rights the chart does not grant"
    assert rules - used == set(), "the chart grants rights the gateway never used"
