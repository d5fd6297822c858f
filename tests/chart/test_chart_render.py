"""The Helm chart under the real Helm engine: lint, template, Kubernetes schemas, values schema.

Every object rendered for the default values, namespaced mode and each cloud overlay is
validated against Kubernetes' OpenAPI schemas (kubernetes-validate, strict). ServiceMonitor
and PrometheusRule are Prometheus Operator CRD kinds kubernetes-validate does not know, and no
copy of their CRD schemas is available offline: they are checked structurally below (their
required fields, and that they agree with the Service and the rules file they wrap).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from chart_rendering import (
    CHART,
    OVERLAYS,
    RELEASE_NAMESPACE,
    ROOT,
    of_component,
    overlay,
    render,
    render_objects,
)

from llm_operator.api.crd import crd, crd_yaml
from llm_operator.catalog import default_catalog
from llm_operator.resolve import node_alternatives
from llm_operator.settings import config_from_args, parser

KUBERNETES_VERSIONS = ("1.29", "1.33")
PROMETHEUS_OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
EVERYTHING_ON = {
    "metrics": {"serviceMonitor": {"enabled": True}},
    "prometheusRule": {"enabled": True},
    "server": {"serviceMonitor": True, "networkPolicy": True},
}
MODES: dict[str, dict[str, Any]] = {
    "default": {},
    "everything-on": EVERYTHING_ON,
    "namespaced": {**EVERYTHING_ON, "namespaced": True},
    "single-replica-no-crds": {
        "replicaCount": 1,
        "leaderElection": {"enabled": False},
        "crds": {"enabled": False},
    },
    **{name: overlay(name) for name in OVERLAYS},
}


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def operator_objects(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The operator's objects (the gateway's are tested in test_chart_gateway.py)."""
    return of_component(render_objects(values), "operator")


def operator_deployment(values: dict[str, Any]) -> dict[str, Any]:
    (deployment,) = of_kind(operator_objects(values), "Deployment")
    return deployment


def container(values: dict[str, Any]) -> dict[str, Any]:
    (only,) = operator_deployment(values)["spec"]["template"]["spec"]["containers"]
    return dict(only)


def flag(args: list[str], name: str) -> str | None:
    return next((a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")), None)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_chart_lints_without_warnings(mode: str) -> None:
    report = helm.lint(CHART, MODES[mode], strict=True, namespace=RELEASE_NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_rendered_object_validates(mode: str) -> None:
    objects = render_objects(MODES[mode])
    assert objects
    for obj in objects:
        if obj["kind"] in PROMETHEUS_OPERATOR_KINDS:
            continue  # structural checks below
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
        namespaced = obj["kind"] not in {
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
        }
        assert ("namespace" in obj["metadata"]) == namespaced, obj["metadata"]


def test_crd_copies_in_the_chart_are_not_stale() -> None:
    files = CHART / "files" / "crds"
    assert (files / "inference.llmops.dev_llmdeployments.yaml").read_text() == crd_yaml(), (
        "the chart's CRD is stale: run `make crds`"
    )
    peerings = (ROOT / "crds" / "kopf.dev_peerings.yaml").read_text()
    assert (files / "kopf.dev_peerings.yaml").read_text() == peerings, "run `make crds`"


def test_rendered_crds_are_the_generated_ones_kept_on_uninstall() -> None:
    crds = {c["metadata"]["name"]: c for c in of_kind(render_objects(), "CustomResourceDefinition")}
    assert set(crds) == {
        "llmdeployments.inference.llmops.dev",
        "llmtenants.inference.llmops.dev",  # its staleness: tests/unit/operator/test_tenant_api.py
        "llmroutes.inference.llmops.dev",  # its staleness: tests/unit/operator/test_route_api.py
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }
    assert crds["llmdeployments.inference.llmops.dev"]["spec"] == crd()["spec"]
    for c in crds.values():
        assert c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    dropped = of_kind(render_objects({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert dropped and all(
        "helm.sh/resource-policy" not in c["metadata"]["annotations"] for c in dropped
    )
    assert of_kind(render_objects({"crds": {"enabled": False}}), "CustomResourceDefinition") == []


def test_cluster_mode_watches_everything_with_a_cluster_role() -> None:
    objects = operator_objects()
    args = container({})["args"]
    assert "--all-namespaces" in args and flag(args, "--namespace") is None
    assert of_kind(objects, "ClusterRole") and of_kind(objects, "ClusterRoleBinding")
    assert not of_kind(objects, "Role")
    (binding,) = of_kind(objects, "ClusterRoleBinding")
    (account,) = of_kind(objects, "ServiceAccount")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": RELEASE_NAMESPACE,
        }
    ]


def test_namespaced_mode_watches_only_the_release_namespace_with_a_role() -> None:
    objects = operator_objects({"namespaced": True})
    args = container({"namespaced": True})["args"]
    assert flag(args, "--namespace") == RELEASE_NAMESPACE and "--all-namespaces" not in args
    assert not of_kind(objects, "ClusterRole") and not of_kind(objects, "ClusterRoleBinding")
    (role,) = of_kind(objects, "Role")
    (binding,) = of_kind(objects, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    peering = [r for r in role["rules"] if r["apiGroups"] == ["kopf.dev"]]
    assert [r["resources"] for r in peering] == [["kopfpeerings"]]


def test_two_replicas_elect_a_leader_one_may_run_standalone() -> None:
    deployment = operator_deployment({})
    assert deployment["spec"]["replicas"] == 2
    assert flag(container({})["args"], "--peering") == "llm-operator"
    pdb = of_kind(operator_objects(), "PodDisruptionBudget")
    assert [p["spec"]["minAvailable"] for p in pdb] == [1]
    single = {"replicaCount": 1, "leaderElection": {"enabled": False}}
    assert "--standalone" in container(single)["args"]
    assert not of_kind(operator_objects(single), "PodDisruptionBudget")
    # More than one replica always elects, whatever leaderElection.enabled says.
    forced = {"replicaCount": 3, "leaderElection": {"enabled": False}}
    assert flag(container(forced)["args"], "--peering") == "llm-operator"


@pytest.mark.parametrize("mode", sorted(MODES))
def test_operator_accepts_the_arguments_the_chart_passes(mode: str) -> None:
    values = {**MODES[mode], "operator": {"extraArgs": ["--verbose"]}}
    args = parser().parse_args(container(values)["args"])  # exits on an unknown flag
    config = config_from_args(args)
    assert config.catalog_file == "/etc/llm-operator/catalog.yaml"
    assert config.liveness and config.metrics_port == 8080
    assert config.all_namespaces != bool(MODES[mode].get("namespaced"))
    assert config.render.service_monitor == bool(
        MODES[mode].get("server", {}).get("serviceMonitor")
    )
    assert config.scrape_timeout_seconds == 2
    assert config.render.keda_prometheus_address.startswith("http://")
    # status.gatewayEndpoint: the chart's gateway Service (issue 22), none without a gateway
    gateway = f"http://llmops-llm-operator-gateway.{RELEASE_NAMESPACE}.svc:8080/v1"
    assert config.gateway_url == gateway
    off = {**values, "gateway": {"enabled": False}}
    assert config_from_args(parser().parse_args(container(off)["args"])).gateway_url is None


def test_network_policies_admit_the_operator_that_scrapes_the_pods() -> None:
    values = {"server": {"networkPolicy": True, "networkPolicyNamespaces": ["monitoring"]}}
    config = config_from_args(parser().parse_args(container(values)["args"]))
    assert config.render.network_policy
    assert config.render.network_policy_namespaces == (RELEASE_NAMESPACE, "monitoring")


def test_pod_is_restricted_and_probed_where_the_operator_listens() -> None:
    deployment = operator_deployment({})
    pod = deployment["spec"]["template"]["spec"]
    main = container({})
    security = main["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] > 0
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    liveness = flag(main["args"], "--liveness")
    assert liveness == f"http://0.0.0.0:{ports['health']}/healthz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert main[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert int(flag(main["args"], "--metrics-port") or 0) == ports["metrics"]
    assert main["resources"]["requests"] and main["resources"]["limits"]["memory"]
    env = {e["name"]: e.get("valueFrom") for e in main["env"]}
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}  # kopf's peer id
    # A read-only root needs a writable /tmp.
    assert "/tmp" in [m["mountPath"] for m in main["volumeMounts"]]


def test_catalog_configmap_is_what_the_operator_loads_and_rolls_the_pods() -> None:
    def catalog_text(values: dict[str, Any]) -> str:
        objects = render_objects(values)
        (cm,) = [
            c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"].endswith("-catalog")
        ]
        return str(cm["data"]["catalog.yaml"])

    main = container({})
    mount = next(m for m in main["volumeMounts"] if m["name"] == "catalog")
    assert flag(main["args"], "--catalog-file") == f"{mount['mountPath']}/catalog.yaml"
    cheaper = {"catalog": {"accelerators": [{"name": "L4", "prices": {"onDemand": 0.5}}]}}
    l4 = default_catalog().with_overrides(catalog_text(cheaper)).get("L4")
    assert l4 is not None and l4.prices.on_demand == 0.5
    assert default_catalog().with_overrides(catalog_text({})) == default_catalog()

    def checksum(values: dict[str, Any]) -> str:
        annotations = operator_deployment(values)["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/catalog"])

    assert checksum(cheaper) != checksum({})
    assert checksum({"replicaCount": 3}) == checksum({})


@pytest.mark.parametrize(
    ("name", "cloud"), [("values-gke.yaml", "gke"), ("values-eks.yaml", "eks")]
)
def test_overlay_labels_agree_with_the_catalog(name: str, cloud: str) -> None:
    values = overlay(name)
    (cm,) = [
        c
        for c in of_kind(render_objects(values), "ConfigMap")
        if c["metadata"]["name"].endswith("-catalog")
    ]
    catalog = default_catalog().with_overrides(cm["data"]["catalog.yaml"])
    # Each label the overlay adds really selects its GPU's nodes (not dropped as shared).
    for entry in values["catalog"]["accelerators"]:
        accelerator = catalog.get(entry["name"])
        assert accelerator is not None, f"{entry['name']} is not in the catalog"
        matches = {(m.key, v) for m in node_alternatives(accelerator, catalog) for v in m.values}
        for label in entry["cloudLabels"].values():
            assert (label["key"], label["value"]) in matches, (entry["name"], label)
    # The operator's own pods avoid every node the catalog recognises as this cloud's GPU.
    terms = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    avoided = {
        e["key"]
        for t in terms["nodeSelectorTerms"]
        for e in t["matchExpressions"]
        if e["operator"] == "DoesNotExist"
    }
    gpu_keys = {
        label.key
        for a in catalog.accelerators
        for c, label in a.cloud_labels.items()
        if c.startswith(cloud)
    }
    assert gpu_keys and gpu_keys <= avoided
    pod = operator_deployment(values)["spec"]["template"]["spec"]
    assert pod["affinity"] == values["affinity"]


def test_operator_metrics_service_and_service_monitor() -> None:
    objects = operator_objects(EVERYTHING_ON)
    (service,) = of_kind(objects, "Service")
    (monitor,) = of_kind(objects, "ServiceMonitor")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    selector = operator_deployment(EVERYTHING_ON)["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    # ServiceMonitor (monitoring.coreos.com/v1), structurally.
    spec = monitor["spec"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [RELEASE_NAMESPACE]}
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["honorLabels"] is True  # the operator's series carry namespace/deployment
    assert endpoint["path"] == "/metrics"
    assert not of_kind(render_objects(), "ServiceMonitor")


def test_prometheus_rule_wraps_the_rules_file() -> None:
    (rule,) = of_kind(render_objects(EVERYTHING_ON), "PrometheusRule")
    rules_file = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == rules_file  # the whole promtool-checked file, nothing else
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for r in group["rules"]:
            assert isinstance(r["expr"], str | int) and ("record" in r) != ("alert" in r)
    labelled = render_objects(
        {**EVERYTHING_ON, "prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}
    )
    assert of_kind(labelled, "PrometheusRule")[0]["metadata"]["labels"]["release"] == "kps"


def test_dashboards_are_configmaps_for_the_grafana_sidecar() -> None:
    files = sorted((CHART / "files" / "dashboards").glob("*.json"))
    maps = [
        c for c in of_kind(render_objects(), "ConfigMap") if "-dashboard-" in c["metadata"]["name"]
    ]
    assert len(maps) == len(files) > 0
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, text),) = cm["data"].items()
        assert json.loads(text) == json.loads((CHART / "files" / "dashboards" / key).read_text())
    # Helm merges maps: a null drops the default label.
    custom = {
        "dashboards": {
            "labels": {"grafana_dashboard": None, "team": "ml"},
            "namespace": "monitoring",
        }
    }
    for cm in of_kind(render_objects(custom), "ConfigMap"):
        if "-dashboard-" in cm["metadata"]["name"]:
            assert cm["metadata"]["labels"]["team"] == "ml"
            assert "grafana_dashboard" not in cm["metadata"]["labels"]
            assert cm["metadata"]["namespace"] == "monitoring"
    off = render_objects({"dashboards": {"enabled": False}})
    assert not [c for c in of_kind(off, "ConfigMap") if "-dashboard-" in c["metadata"]["name"]]


def test_notes_say_what_was_installed() -> None:
    notes = render({"namespaced": True})["llm-operator/templates/NOTES.txt"]
    assert f"in namespace {RELEASE_NAMESPACE} only" in notes
    assert "kubectl get llmd" in notes


BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"replicaCount": 0}, "/replicaCount"),
    ({"crds": {"enabled": "yes"}}, "/crds/enabled"),
    ({"namespaced": "true"}, "/namespaced"),
    ({"replicas": 2}, "replicas"),  # a typo of replicaCount must not pass silently
    ({"image": {"repository": "Bad Repo"}}, "/image/repository"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"catalog": {"accelerators": [{"prices": {"onDemand": 1}}]}}, "/catalog/accelerators/0"),
    ({"catalog": {"accelerators": [{"name": "L4", "prices": {"onDemand": -1}}]}}, "onDemand"),
    ({"catalog": {"accelerators": [{"name": "L4", "memoryGB": 24}]}}, "memoryGB"),
    ({"metrics": {"port": 70000}}, "/metrics/port"),
    ({"metrics": {"serviceMonitor": {"interval": "30"}}}, "/metrics/serviceMonitor/interval"),
    ({"leaderElection": {"peeringName": "Not_DNS"}}, "/leaderElection/peeringName"),
    ({"operator": {"resyncSeconds": 0}}, "/operator/resyncSeconds"),
    ({"operator": {"extraArgs": ["-A"]}}, "/operator/extraArgs/0"),
    ({"dashboards": {"labels": {"grafana_dashboard": 1}}}, "/dashboards/labels/grafana_dashboard"),
]


@pytest.mark.parametrize(("values", "where"), BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_values_schema_rejects_bad_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=where):
        render(values)


def test_values_files_pass_the_schema() -> None:
    for values in MODES.values():
        render(values)  # raises on a schema violation
    schema = json.loads((CHART / "values.schema.json").read_text())
    documented = set(yaml.safe_load((CHART / "values.yaml").read_text()))
    assert documented <= set(schema["properties"]), "values.yaml keys missing from the schema"


def test_chart_files_are_in_the_chart_package(tmp_path: Path) -> None:
    archive = helm.Chart.load(CHART).save(tmp_path)
    loaded = helm.Chart.load_archive(Path(archive).read_bytes())
    names = {f["name"] for f in loaded.files}
    assert {
        "files/crds/inference.llmops.dev_llmdeployments.yaml",
        "files/prometheus-rules.yaml",
    } <= names
    assert loaded.render({}, name="llmops", namespace=RELEASE_NAMESPACE).keys() == render().keys()
