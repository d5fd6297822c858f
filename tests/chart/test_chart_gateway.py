"""The gateway in the chart (issue 22 item 6): Deployment, Service, RBAC, PDB, ServiceMonitor.

Rendered by the real Helm engine; test_chart_render.py validates every rendered object (the
gateway's included, it is on by default) against Kubernetes' schemas and lints each mode.
"""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from chart_rendering import (
    CHART,
    OVERLAYS,
    RELEASE_NAMESPACE,
    of_component,
    overlay,
    render,
    render_objects,
)

from llm_gateway.settings import parse_settings
from llm_operator.settings import config_from_args, parser

GATEWAY = "llmops-llm-operator-gateway"
MONITORED = {"metrics": {"serviceMonitor": {"enabled": True}}}
# What the gateway needs: the model -> LLMDeployment map, the ready pods of its Service, and
# the demand annotation it stamps while holding requests at zero replicas; LLMTenants and
# their key Secrets, LLMRoutes (issue 23).
GATEWAY_RULES = [
    {
        "apiGroups": ["inference.llmops.dev"],
        "resources": ["llmdeployments"],
        "verbs": ["list", "watch", "patch"],
    },
    {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": ["list", "watch"],
    },
    {
        "apiGroups": ["inference.llmops.dev"],
        "resources": ["llmtenants"],
        "verbs": ["list", "watch", "get"],
    },
    {"apiGroups": ["inference.llmops.dev"], "resources": ["llmtenants/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]},
    {"apiGroups": ["inference.llmops.dev"], "resources": ["llmroutes"], "verbs": ["list", "watch"]},
]


def gateway_objects(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return of_component(render_objects(values), "gateway")


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (only,) = of_kind(objects, kind)
    return only


def gateway_container(values: dict[str, Any] | None = None) -> dict[str, Any]:
    pod = one(gateway_objects(values), "Deployment")["spec"]["template"]["spec"]
    (only,) = pod["containers"]
    return dict(only)


def test_gateway_is_installed_by_default_and_can_be_left_out() -> None:
    kinds = sorted(o["kind"] for o in gateway_objects())
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    assert all(o["metadata"]["name"] == GATEWAY for o in gateway_objects())
    off = {"gateway": {"enabled": False}, **MONITORED}
    assert gateway_objects(off) == []
    assert not [o for o in render_objects(off) if "gateway" in o["metadata"]["name"]]


def test_the_operator_shows_the_gateway_url_in_each_status() -> None:
    """--gateway-url (status.gatewayEndpoint) names the gateway Service's port, by DNS."""

    def operator_config(values: dict[str, Any]) -> Any:
        operator = of_component(render_objects(values), "operator")
        (container,) = one(operator, "Deployment")["spec"]["template"]["spec"]["containers"]
        return config_from_args(parser().parse_args(container["args"]))

    url = f"http://{GATEWAY}.{RELEASE_NAMESPACE}.svc:8080/v1"
    assert operator_config({}).gateway_url == url
    operator = one(of_component(render_objects(), "operator"), "Deployment")
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    given = [a for a in container["args"] if a.startswith("--gateway-url")]
    assert given == [f"--gateway-url={url}"]
    service = one(gateway_objects(), "Service")
    assert url.startswith(f"http://{service['metadata']['name']}.{RELEASE_NAMESPACE}.svc:")
    moved = {"gateway": {"service": {"port": 80}}}
    assert operator_config(moved).gateway_url == f"http://{GATEWAY}.{RELEASE_NAMESPACE}.svc:80/v1"
    assert operator_config({"gateway": {"enabled": False}}).gateway_url is None


def test_service_selects_the_gateway_pods_and_never_the_operators() -> None:
    objects = render_objects()
    gateway, operator = of_component(objects, "gateway"), of_component(objects, "operator")
    service = one(gateway, "Service")
    pod_labels = one(gateway, "Deployment")["spec"]["template"]["metadata"]["labels"]
    operator_pod = one(operator, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert not service["spec"]["selector"].items() <= operator_pod.items()
    # The operator's selectors (Deployment, metrics Service, PDB) must not adopt gateway pods.
    for selector in (
        one(operator, "Deployment")["spec"]["selector"]["matchLabels"],
        one(operator, "Service")["spec"]["selector"],
        one(operator, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ):
        assert not selector.items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 8080 and port["targetPort"] == "http"
    ports = {p["name"]: p["containerPort"] for p in gateway_container()["ports"]}
    assert ports == {"http": 8080}


def test_two_replicas_spread_with_a_pdb_one_replica_has_none() -> None:
    objects = gateway_objects()
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    (spread,) = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["labelSelector"] == deployment["spec"]["selector"]
    single = gateway_objects({"gateway": {"replicaCount": 1}})
    assert not of_kind(single, "PodDisruptionBudget")


def test_the_gateway_accepts_the_arguments_the_chart_passes() -> None:
    """Parsed by the gateway's own settings parser (it raises on an unknown flag)."""
    settings = parse_settings(gateway_container()["args"], environ={})
    assert settings.kube and settings.static_models is None
    assert settings.namespaces == ()  # every namespace, as the operator's -A
    assert (settings.port, settings.prefix_chars, settings.load_factor) == (8080, 256, 1.25)
    assert (settings.max_held_per_model, settings.hold_timeout_seconds) == (100, 300)
    assert settings.scrape_interval_seconds == 2
    assert settings.upstream_timeout_seconds == 600
    custom = {
        "gateway": {"port": 9090, "holdTimeoutSeconds": 30, "extraArgs": ["--log-level=DEBUG"]},
        "watchNamespaces": ["team-a", "team-b"],
    }
    settings = parse_settings(gateway_container(custom)["args"], environ={})
    assert settings.namespaces == ("team-a", "team-b")
    assert (settings.port, settings.hold_timeout_seconds) == (9090, 30)
    assert settings.log_level == "DEBUG"
    ports = gateway_container(custom)["ports"]
    assert ports == [{"name": "http", "containerPort": 9090, "protocol": "TCP"}]
    namespaced = gateway_container({"namespaced": True})["args"]
    assert parse_settings(namespaced, environ={}).namespaces == (RELEASE_NAMESPACE,)


def test_probes_resources_and_security_context_like_the_operators() -> None:
    main = gateway_container()
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["resources"]["requests"]["cpu"] and main["resources"]["limits"]["memory"]
    operator = of_component(render_objects(), "operator")
    operator_pod = one(operator, "Deployment")["spec"]["template"]["spec"]
    (operator_container,) = operator_pod["containers"]
    pod = one(gateway_objects(), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == operator_pod["securityContext"]
    assert main["securityContext"] == operator_container["securityContext"]
    assert main["securityContext"]["readOnlyRootFilesystem"]
    assert "/tmp" in [m["mountPath"] for m in main["volumeMounts"]]
    assert main["image"] == "ghcr.io/llmops-dev/llm-gateway:0.1.0"
    tagged = gateway_container({"gateway": {"image": {"repository": "r.io/gw", "tag": "v2"}}})
    assert tagged["image"] == "r.io/gw:v2"


@pytest.mark.parametrize("name", OVERLAYS)
def test_cloud_overlays_keep_the_gateway_off_gpu_nodes_like_the_operator(name: str) -> None:
    objects = render_objects(overlay(name))
    operator = one(of_component(objects, "operator"), "Deployment")["spec"]["template"]["spec"]
    gateway = one(of_component(objects, "gateway"), "Deployment")["spec"]["template"]["spec"]
    assert gateway["affinity"] == operator["affinity"] == overlay(name)["affinity"]


def test_cluster_role_grants_exactly_the_gateways_requests() -> None:
    objects = gateway_objects()
    role, binding = one(objects, "ClusterRole"), one(objects, "ClusterRoleBinding")
    account = one(objects, "ServiceAccount")
    assert role["rules"] == GATEWAY_RULES
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"],
         "namespace": RELEASE_NAMESPACE}
    ]  # fmt: skip
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


@pytest.mark.parametrize(
    ("values", "namespaces"),
    [
        ({"namespaced": True}, [RELEASE_NAMESPACE]),
        ({"watchNamespaces": ["team-a", "team-b"]}, ["team-a", "team-b"]),
    ],
)
def test_a_role_in_each_watched_namespace_and_no_cluster_role(
    values: dict[str, Any], namespaces: list[str]
) -> None:
    objects = gateway_objects(values)
    assert not of_kind(objects, "ClusterRole") and not of_kind(objects, "ClusterRoleBinding")
    roles, bindings = of_kind(objects, "Role"), of_kind(objects, "RoleBinding")
    assert [r["metadata"]["namespace"] for r in roles] == namespaces
    assert [b["metadata"]["namespace"] for b in bindings] == namespaces
    assert all(r["rules"] == GATEWAY_RULES for r in roles)
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["name"] == account
    for obj in objects:
        for version in ("1.29", "1.33"):
            kubernetes_validate.validate(obj, version, strict=True)
    helm.lint(CHART, values, strict=True, namespace=RELEASE_NAMESPACE)


def test_an_existing_service_account_and_no_rbac() -> None:
    values = {"gateway": {"serviceAccount": {"create": False, "name": "corp-gw"}}}
    objects = gateway_objects(values)
    assert not of_kind(objects, "ServiceAccount")
    assert one(objects, "ClusterRoleBinding")["subjects"][0]["name"] == "corp-gw"
    assert not of_kind(gateway_objects({"rbac": {"create": False}}), "ClusterRole")


def test_service_monitor_scrapes_the_gateway_port_with_the_chart_switch() -> None:
    assert not of_kind(gateway_objects(), "ServiceMonitor")
    objects = gateway_objects(MONITORED)
    monitor, service = one(objects, "ServiceMonitor"), one(objects, "Service")
    spec = monitor["spec"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [RELEASE_NAMESPACE]}
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    # llm_gateway_* series name the model server's pod in `pod`: it wins over the target's.
    assert endpoint["honorLabels"] is True


def test_notes_give_the_gateway_endpoint() -> None:
    notes = render()["llm-operator/templates/NOTES.txt"]
    assert f"http://{GATEWAY}.{RELEASE_NAMESPACE}.svc:8080/v1" in notes
    off = render({"gateway": {"enabled": False}})["llm-operator/templates/NOTES.txt"]
    assert "gateway" not in off.lower()


BAD_VALUES = [
    ({"gateway": {"replicaCount": 0}}, "/gateway/replicaCount"),
    ({"gateway": {"loadFactor": 0.5}}, "/gateway/loadFactor"),
    ({"gateway": {"holdTimeoutSeconds": 0}}, "/gateway/holdTimeoutSeconds"),
    ({"gateway": {"maxHeldPerModel": 0}}, "/gateway/maxHeldPerModel"),
    ({"gateway": {"port": 0}}, "/gateway/port"),
    ({"gateway": {"extraArgs": ["-v"]}}, "/gateway/extraArgs/0"),
    ({"gateway": {"routing": "rr"}}, "routing"),
]


@pytest.mark.parametrize(("values", "where"), BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_values_schema_rejects_bad_gateway_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=where):
        render(values)
