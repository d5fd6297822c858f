"""The chart and LLMRoutes (issue 23): the operator is told the gateway's Service
(--gateway-service, for each route's status.lastHour) and may list its EndpointSlices in the
release namespace only; it may watch LLMRoutes and write their status in what it watches.
The real operator's use of exactly these rights: test_chart_rbac_matches_operator.py."""

from __future__ import annotations

from typing import Any

from chart_rendering import RELEASE_NAMESPACE, of_component, render_objects

from llm_operator.settings import config_from_args, parser

GATEWAY = "llmops-llm-operator-gateway"
SCRAPE_ROLE = "llmops-llm-operator-gateway-scrape"
ROUTE_RULES = [
    {"apiGroups": ["inference.llmops.dev"], "resources": ["llmroutes"],
     "verbs": ["list", "watch", "patch"]},
    {"apiGroups": ["inference.llmops.dev"], "resources": ["llmroutes/status"], "verbs": ["patch"]},
]  # fmt: skip
SLICES = {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]}


def operator(values: dict[str, Any]) -> list[dict[str, Any]]:
    return of_component(render_objects(values), "operator")


def roles(values: dict[str, Any]) -> dict[tuple[str, str | None, str], list[dict[str, Any]]]:
    return {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o["rules"]
        for o in operator(values)
        if o["kind"] in ("Role", "ClusterRole")
    }


def config(values: dict[str, Any]) -> Any:
    (deployment,) = [o for o in operator(values) if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return config_from_args(parser().parse_args(container["args"]))


def test_the_operator_scrapes_the_gateway_service_of_the_release() -> None:
    assert config({}).gateway_service == (RELEASE_NAMESPACE, GATEWAY)
    service = [o for o in render_objects() if o["kind"] == "Service"
               and o["metadata"]["name"] == GATEWAY]  # fmt: skip
    assert service and service[0]["spec"]["ports"][0]["name"] == "http"  # the port scraped
    assert config({"gateway": {"enabled": False}}).gateway_service is None


def test_routes_rules_everywhere_slices_only_in_the_release_namespace() -> None:
    cluster = roles({})
    (rules,) = cluster.values()
    assert all(rule in rules for rule in [*ROUTE_RULES, SLICES])
    namespaced = roles({"namespaced": True})
    assert list(namespaced) == [("Role", RELEASE_NAMESPACE, "llmops-llm-operator")]
    assert all(rule in next(iter(namespaced.values())) for rule in [*ROUTE_RULES, SLICES])
    # Watching other namespaces: their Roles cannot list slices; one Role where the gateway is.
    watched = roles({"watchNamespaces": ["team-a", "team-b"]})
    for namespace in ("team-a", "team-b"):
        rules = watched[("Role", namespace, "llmops-llm-operator")]
        assert all(rule in rules for rule in ROUTE_RULES) and SLICES not in rules
    assert watched[("Role", RELEASE_NAMESPACE, SCRAPE_ROLE)] == [SLICES]
    bindings = [o for o in operator({"watchNamespaces": ["team-a"]}) if o["kind"] == "RoleBinding"]
    (binding,) = [b for b in bindings if b["metadata"]["name"] == SCRAPE_ROLE]
    assert binding["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert binding["subjects"][0]["namespace"] == RELEASE_NAMESPACE


def test_no_slices_without_the_gateway() -> None:
    for values in ({}, {"namespaced": True}, {"watchNamespaces": ["team-a"]}):
        found = roles({**values, "gateway": {"enabled": False}})
        assert all(SLICES not in rules for rules in found.values())
        assert all(name != SCRAPE_ROLE for _, _, name in found)
        assert all(all(r in rules for r in ROUTE_RULES) for rules in found.values())
