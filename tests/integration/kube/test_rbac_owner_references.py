"""Issue 16, item 6: the chart's RBAC on a control plane that enforces owner references as
OpenShift does (the OwnerReferencesPermissionEnforcement admission plugin), with the operator
authenticated as the chart's ServiceAccount (a TokenRequest token), so a missing verb is a 403.

- With the chart's rules, every child is applied (blockOwnerDeletion needs `update` on
  `llmdeployments/finalizers`).
- Without that rule, the 403 shows as Degraded=True `Forbidden` plus a Warning Event, and
  granting the rule lets the next reconcile apply the children and clear it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from control_plane import ControlPlane
from kube_client import Kube, KubeError, wait_until
from kube_fixtures import admin_client, install_crds, start_control_plane
from llmd_manifest import llmd_manifest
from operator_thread import operator_config, running_operator

from llm_operator.api.status import SCHEDULING_FAILED, UNSCHEDULABLE

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "chart"))
from chart_rendering import RELEASE_NAMESPACE, of_component, render_objects

API = "inference.llmops.dev/v1alpha1"
FINALIZERS_RULE = {
    "apiGroups": ["inference.llmops.dev"],
    "resources": ["llmdeployments/finalizers"],
    "verbs": ["update"],
}


@pytest.fixture(scope="module")
def openshift_like(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, Kube]]:
    plane = start_control_plane(
        tmp_path_factory.mktemp("owner-references"),
        admission_plugins=("OwnerReferencesPermissionEnforcement",),
    )
    admin = admin_client(plane)
    try:
        install_crds(admin)
        admin.ensure_namespace(RELEASE_NAMESPACE)
        yield plane, admin
    finally:
        admin.close()
        plane.stop()


def _install_chart_rbac(
    plane: ControlPlane, admin: Kube, suffix: str, drop_finalizers: bool
) -> tuple[str, str]:
    """The chart's ServiceAccount, ClusterRole and binding (renamed per test); the role's
    name and a token for the ServiceAccount."""
    objects = {o["kind"]: o for o in of_component(render_objects({}), "operator")}
    account, role, binding = (
        objects["ServiceAccount"], objects["ClusterRole"], objects["ClusterRoleBinding"]
    )  # fmt: skip
    for obj in (account, role, binding):
        obj["metadata"]["name"] += f"-{suffix}"
    if drop_finalizers:
        role["rules"] = [r for r in role["rules"] if r != FINALIZERS_RULE]
    assert FINALIZERS_RULE in objects["ClusterRole"]["rules"] or drop_finalizers
    binding["roleRef"]["name"] = role["metadata"]["name"]
    binding["subjects"][0]["name"] = account["metadata"]["name"]
    for obj in (account, role, binding):
        admin.apply(obj)
    meta = account["metadata"]
    path = admin.path("v1", "ServiceAccount", meta["namespace"], meta["name"], "token")
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"expirationSeconds": 3600}}  # fmt: skip
    token = admin.request("POST", path, request)["status"]["token"]
    # RBAC reaches the authorizer through an informer: wait until the binding is in force, so
    # the operator's first watches are not refused.
    operator = Kube(plane.url, str(plane.ca_file), token=token)
    try:
        wait_until(lambda: _can_list(operator), 120, "the chart's RBAC in force")
    finally:
        operator.close()
    return role["metadata"]["name"], token


def _can_list(client: Kube) -> bool:
    try:
        client.list(API, "LLMDeployment")
    except KubeError:
        return False
    return True


def _llmd(namespace: str) -> dict[str, Any]:
    return llmd_manifest(namespace)


def _condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def test_the_charts_rbac_applies_children_under_owner_reference_enforcement(
    openshift_like: tuple[ControlPlane, Kube], monkeypatch: pytest.MonkeyPatch
) -> None:
    plane, admin = openshift_like
    namespace = "chart-rbac"
    admin.ensure_namespace(namespace)
    _, token = _install_chart_rbac(plane, admin, "full", drop_finalizers=False)
    monkeypatch.setenv("KUBECONFIG", str(plane.token_kubeconfig(token, "operator-full")))
    admin.create(_llmd(namespace))
    with running_operator(operator_config(namespace)):
        deployment = wait_until(
            lambda: admin.get("apps/v1", "Deployment", "chat", namespace), 120, "the Deployment"
        )
        (owner,) = deployment["metadata"]["ownerReferences"]
        assert owner["kind"] == "LLMDeployment" and owner["blockOwnerDeletion"] is True
        assert admin.get("v1", "Service", "chat", namespace)
        assert admin.get("v1", "ConfigMap", "chat-config", namespace)
        obj = wait_until(
            lambda: (admin.get(API, "LLMDeployment", "chat", namespace) or {}).get("status"),
            120, "a status",
        )  # fmt: skip
        assert obj.get("phase") != "Failed", obj


def test_a_403_is_a_condition_and_an_event_and_clears_once_granted(
    openshift_like: tuple[ControlPlane, Kube], monkeypatch: pytest.MonkeyPatch
) -> None:
    plane, admin = openshift_like
    namespace = "old-rbac"
    admin.ensure_namespace(namespace)
    role, token = _install_chart_rbac(plane, admin, "old", drop_finalizers=True)
    monkeypatch.setenv("KUBECONFIG", str(plane.token_kubeconfig(token, "operator-old")))
    admin.create(_llmd(namespace))
    with running_operator(operator_config(namespace, resync_seconds=0.5)):

        def forbidden() -> dict[str, Any]:
            obj = admin.get(API, "LLMDeployment", "chat", namespace)
            degraded = _condition(obj, "Degraded")
            return degraded if degraded.get("reason") == "Forbidden" else {}

        degraded = wait_until(forbidden, 120, "Degraded=True Forbidden")
        assert degraded["status"] == "True"
        assert "finalizers" in degraded["message"], degraded["message"]
        events = wait_until(
            lambda: [e for e in admin.events(namespace, "chat") if e["reason"] == "Forbidden"],
            120, "a Forbidden Event",
        )  # fmt: skip
        assert events[0]["type"] == "Warning"
        assert admin.get("apps/v1", "Deployment", "chat", namespace) is None

        current = admin.get("rbac.authorization.k8s.io/v1", "ClusterRole", role) or {}
        granted = {**current, "rules": [*current["rules"], FINALIZERS_RULE]}
        granted["metadata"] = {"name": role}
        admin.apply(granted)

        wait_until(
            lambda: admin.get("apps/v1", "Deployment", "chat", namespace), 120, "the Deployment"
        )
        # Cleared of Forbidden: False, or (this plane has no Nodes) True for the pods being
        # unschedulable, whichever the scheduler's verdict and the next reconcile make it.
        cleared = wait_until(
            lambda: (c := _condition(admin.get(API, "LLMDeployment", "chat", namespace),
                                     "Degraded")) and c.get("reason") != "Forbidden" and c,
            120, "Degraded=Forbidden cleared",
        )  # fmt: skip
        allowed = {("False", "AsExpected"), ("True", UNSCHEDULABLE), ("True", SCHEDULING_FAILED)}
        assert (cleared["status"], cleared["reason"]) in allowed, cleared
