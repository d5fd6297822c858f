"""Issue 18, item 10: `watchNamespaces` narrows the operator's RBAC to a Role + RoleBinding in
each listed namespace (no ClusterRole), and the operator watches exactly those (-n a -n b)."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from chart_rendering import CHART, RELEASE_NAMESPACE, of_component, render, render_objects

from llm_operator.settings import config_from_args, parser

WATCHED = {"watchNamespaces": ["team-a", "team-b"]}


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def operator_objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    return of_component(render_objects(values), "operator")


def operator_args(values: dict[str, Any]) -> list[str]:
    (deployment,) = of_kind(operator_objects(values), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return list(container["args"])


def test_a_role_and_binding_per_watched_namespace_and_no_cluster_role() -> None:
    objects = operator_objects(WATCHED)
    assert not of_kind(objects, "ClusterRole") and not of_kind(objects, "ClusterRoleBinding")
    # (Besides a Role in the release namespace for the gateway's EndpointSlices: test_chart_routes.)
    roles, bindings = (
        [o for o in of_kind(objects, kind) if not o["metadata"]["name"].endswith("-gateway-scrape")]
        for kind in ("Role", "RoleBinding")
    )
    assert [r["metadata"]["namespace"] for r in roles] == ["team-a", "team-b"]
    assert [b["metadata"]["namespace"] for b in bindings] == ["team-a", "team-b"]
    (account,) = of_kind(objects, "ServiceAccount")
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["metadata"]["name"],
             "namespace": RELEASE_NAMESPACE}
        ]  # fmt: skip
    # The same rules as the one namespaced Role (tests/chart/test_chart_rbac_matches_operator
    # derives those from the real operator's requests), peering included.
    # (Only the release namespace's Role lists EndpointSlices: the gateway's, for LLMRoutes.)
    (namespaced,) = of_kind(operator_objects({"namespaced": True}), "Role")
    same = [r for r in namespaced["rules"] if r["resources"] != ["endpointslices"]]
    assert all(r["rules"] == same for r in roles)
    peering = [r for r in roles[0]["rules"] if r["apiGroups"] == ["kopf.dev"]]
    assert [r["resources"] for r in peering] == [["kopfpeerings"]]


def test_the_operator_watches_exactly_the_listed_namespaces() -> None:
    args = operator_args(WATCHED)
    assert "--all-namespaces" not in args
    config = config_from_args(parser().parse_args(args))
    assert config.namespaces == ("team-a", "team-b") and not config.all_namespaces
    # watchNamespaces wins over namespaced; the release namespace is not added.
    both = config_from_args(parser().parse_args(operator_args({**WATCHED, "namespaced": True})))
    assert both.namespaces == ("team-a", "team-b")


def test_cluster_wide_only_when_the_list_is_empty_and_not_namespaced() -> None:
    objects = render_objects({"watchNamespaces": [], "namespaced": False})
    assert of_kind(objects, "ClusterRole") and not of_kind(objects, "Role")
    assert "--all-namespaces" in operator_args({})


@pytest.mark.parametrize("values", [WATCHED, {**WATCHED, "namespaced": True}])
def test_rendered_objects_validate_and_lint(values: dict[str, Any]) -> None:
    helm.lint(CHART, values, strict=True, namespace=RELEASE_NAMESPACE)
    for obj in render_objects(values):
        if obj["kind"] in {"ServiceMonitor", "PrometheusRule"}:
            continue
        for version in ("1.29", "1.33"):
            kubernetes_validate.validate(obj, version, strict=True)


def test_notes_name_the_watched_namespaces() -> None:
    notes = render(WATCHED)["llm-operator/templates/NOTES.txt"]
    assert "in namespaces team-a, team-b only" in notes


@pytest.mark.parametrize("bad", [["Team"], ["a", "a"], "team-a"])
def test_the_schema_refuses_bad_namespace_lists(bad: Any) -> None:
    with pytest.raises(helm.HelmValuesError, match="watchNamespaces"):
        render({"watchNamespaces": bad})
