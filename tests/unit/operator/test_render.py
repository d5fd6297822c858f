"""Rendered children: golden files, Kubernetes schemas, config-hash roll, podTemplate, owners.

Golden files: tests/unit/operator/golden/<example>.yaml hold `desired_objects` of each example
(ServiceMonitor and NetworkPolicy switched on). After an intended change, regenerate them with
    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/operator/test_render.py
and review the diff like any other code change.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from llm_operator.api.resource import LLMDeployment
from llm_operator.catalog import default_catalog
from llm_operator.cli import main
from llm_operator.render import (
    CONFIG_HASH_ANNOTATION,
    RenderSettings,
    UnresolvedSpecError,
    desired_objects,
    dump_objects,
)
from llm_operator.resolve import resolve

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
GOLDEN = Path(__file__).parent / "golden"
ALL_KINDS = RenderSettings(service_monitor=True, network_policy=True)
CATALOG = default_catalog()
KUBERNETES_VERSION = "1.29"


def load_example(path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(path.read_text())
    return manifest


def base_manifest() -> dict[str, Any]:
    """An 8B-class chat deployment on one L4 (int8), A10G fallback; size not stated."""
    return {
        "apiVersion": "inference.llmops.dev/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": "chat", "namespace": "default"},
        "spec": {
            "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct", "maxContextLength": 8192},
            "optimization": {"quantization": "int8"},
            "accelerator": {"type": "L4", "fallbacks": [{"type": "A10G"}]},
            "replicas": {"min": 1, "max": 4},
            "autoscaling": {"budget": {"maxDollarsPerHour": 5}},
        },
    }


def render(
    manifest: dict[str, Any],
    settings: RenderSettings = ALL_KINDS,
    option: int | None = None,
    replicas: int | None = None,
) -> list[dict[str, Any]]:
    resource = LLMDeployment.model_validate(manifest)
    return desired_objects(resource, resolve(resource.spec, CATALOG, option), settings, replicas)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]
    return spec


def config_hash(objects: list[dict[str, Any]]) -> str:
    template = by_kind(objects)["Deployment"]["spec"]["template"]
    value: str = template["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    return value


def sized(manifest: dict[str, Any]) -> dict[str, Any]:
    manifest["spec"]["model"]["parameterCount"] = "8B"
    return manifest


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_renders_to_its_golden_file(path: Path) -> None:
    rendered = dump_objects(render(load_example(path)))
    golden = GOLDEN / f"{path.stem}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(rendered)
    assert golden.exists(), f"no golden file; run UPDATE_GOLDEN=1 pytest {__file__}"
    assert rendered == golden.read_text(), "rendering changed; see this module's docstring"


def _every_option(path: Path) -> list[tuple[dict[str, Any], int | None]]:
    manifest = load_example(path)
    manifest["metadata"]["uid"] = "0b1c2d3e-0000-4000-8000-000000000001"
    manifest["spec"].setdefault("server", {})["podTemplate"] = {
        "spec": {"priorityClassName": "inference", "nodeSelector": {"pool": "llm"}}
    }
    count = len(manifest["spec"]["accelerator"].get("fallbacks", []))
    return [(manifest, option) for option in [None, *range(count)]]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_rendered_object_matches_the_kubernetes_schema(path: Path) -> None:
    """Strict: unknown fields fail too. ServiceMonitor is a CRD kind (prometheus-operator) that
    kubernetes-validate has no schema for, so it is checked by the shape tests below instead."""
    for manifest, option in _every_option(path):
        for obj in render(manifest, option=option, replicas=3):
            if obj["kind"] == "ServiceMonitor":
                continue
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_service_monitor_shape() -> None:
    monitor = by_kind(render(base_manifest()))["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    # Dashboards select by `deployment`, taken from the Service's label (docs/observability.md).
    relabel = {
        "sourceLabels": ["__meta_kubernetes_service_label_inference_llmops_dev_deployment"],
        "targetLabel": "deployment",
        "action": "replace",
    }
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "15s", "relabelings": [relabel]}
    ]
    service = by_kind(render(base_manifest()))["Service"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )


def test_optional_kinds_are_off_by_default() -> None:
    kinds = [o["kind"] for o in render(base_manifest(), RenderSettings())]
    assert kinds == ["ConfigMap", "Service", "Deployment", "PodDisruptionBudget"]


def test_owner_references_and_common_labels_on_every_child() -> None:
    manifest = base_manifest()
    manifest["metadata"]["uid"] = "uid-1"
    for obj in render(manifest):
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "inference.llmops.dev/v1alpha1",
                "kind": "LLMDeployment",
                "name": "chat",
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert obj["metadata"]["namespace"] == "default"
        assert obj["metadata"]["labels"] == {
            "app.kubernetes.io/name": "llm-server",
            "app.kubernetes.io/instance": "chat",
            "app.kubernetes.io/managed-by": "llm-operator",
            "inference.llmops.dev/deployment": "chat",
        }
    assert all("ownerReferences" not in o["metadata"] for o in render(base_manifest()))


def _changed(edit: Any) -> bool:
    manifest = sized(base_manifest())
    before = config_hash(render(manifest))
    edit(manifest["spec"], manifest)
    return config_hash(render(manifest)) != before


@pytest.mark.parametrize(
    "edit",
    [
        lambda s, m: s["optimization"].update(quantization="int4"),
        lambda s, m: s["optimization"].update(kvCacheDtype="fp8"),
        lambda s, m: s["optimization"].update(batching={"maxConcurrentSequences": 8}),
        lambda s, m: s["model"].update(maxContextLength=2048),
        lambda s, m: s.update(server={"args": ["--log-level", "debug"]}),
        lambda s, m: s["optimization"].update(cache={"prefix": False}),
    ],
    ids=["quantization", "kv-dtype", "batching", "context", "args", "prefix-cache"],
)
def test_config_hash_changes_with_policy(edit: Any) -> None:
    assert _changed(edit)


@pytest.mark.parametrize(
    "edit",
    [
        lambda s, m: s["replicas"].update(min=2, max=6),
        lambda s, m: s["autoscaling"].update(budget={"maxDollarsPerHour": 50}),
        lambda s, m: s["autoscaling"].update(targetQueueDepth=9),
        lambda s, m: m["metadata"].update(labels={"team": "a"}, uid="x", generation=7),
        lambda s, m: s.update(server={"env": [{"name": "A", "value": "b"}]}),
    ],
    ids=["replicas", "budget", "autoscaling", "metadata", "env-rolls-by-itself"],
)
def test_config_hash_stays_when_policy_does_not_change(edit: Any) -> None:
    assert not _changed(edit)


def test_replicas_follow_mode_and_caller() -> None:
    manifest = base_manifest()
    assert by_kind(render(manifest))["Deployment"]["spec"]["replicas"] == 1  # builtin: min
    assert by_kind(render(manifest, replicas=3))["Deployment"]["spec"]["replicas"] == 3
    manifest["spec"]["autoscaling"]["mode"] = "none"
    manifest["spec"]["replicas"] = {"min": 0, "max": 4, "desired": 9}
    assert by_kind(render(manifest))["Deployment"]["spec"]["replicas"] == 4  # clamped
    manifest["spec"]["autoscaling"]["mode"] = "keda"
    manifest["spec"]["replicas"] = {"min": 1, "max": 4}
    assert "replicas" not in by_kind(render(manifest))["Deployment"]["spec"]  # the HPA's


def test_pod_template_patch_applies_last() -> None:
    manifest = base_manifest()
    manifest["spec"]["server"] = {
        "env": [{"name": "HF_HOME", "value": "/user"}],
        "podTemplate": {
            "metadata": {"labels": {"team": "ml", "app.kubernetes.io/name": "hijack"}},
            "spec": {
                "priorityClassName": "inference",
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                "containers": [
                    {
                        "name": "llm-server",
                        "env": [
                            {"name": "HF_HOME", "value": "/patched"},
                            {"name": "X", "value": "1"},
                        ],
                        "resources": {"limits": {"memory": "20Gi"}},
                    },
                    {"name": "sidecar", "image": "busybox"},
                ],
                "volumes": [{"name": "tmp", "$patch": "delete"}],
            },
        },
    }
    objects = render(manifest)
    pod = pod_spec(objects)
    server, sidecar = pod["containers"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["HF_HOME"] == "/patched" and env["X"] == "1" and env["HOME"] == "/tmp"
    assert server["resources"]["limits"] == {"memory": "20Gi", "nvidia.com/gpu": 1}
    assert server["image"].startswith("ghcr.io/llmops-dev/llm-server:")  # untouched keys stay
    assert sidecar == {"name": "sidecar", "image": "busybox"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]  # lists replace
    assert pod["priorityClassName"] == "inference"
    assert "tmp" not in [v["name"] for v in pod["volumes"]]
    labels = by_kind(objects)["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert labels["team"] == "ml"
    assert labels["app.kubernetes.io/name"] == "llm-server"  # the selector is re-asserted


def _node_affinity(capacity: str, accelerator: str = "L4") -> dict[str, Any]:
    manifest = base_manifest()
    manifest["spec"]["accelerator"] = {"type": accelerator, "capacity": capacity}
    affinity: dict[str, Any] = (
        pod_spec(render(manifest)).get("affinity", {}).get("nodeAffinity", {})
    )
    return affinity


def _terms(affinity: dict[str, Any]) -> list[list[tuple[str, str, tuple[str, ...]]]]:
    required = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return [
        [(e["key"], e["operator"], tuple(e["values"])) for e in t["matchExpressions"]]
        for t in required
    ]


GPU = ("nvidia.com/gpu.product", "In", ("NVIDIA-L4",))
GKE_SPOT = ("cloud.google.com/gke-spot", "In", ("true",))


def test_on_demand_requires_the_gpu_and_excludes_spot() -> None:
    terms = _terms(_node_affinity("on-demand"))
    assert len(terms) == 3  # product label, EKS label, GKE label: any one
    assert terms[0][0] == GPU
    assert ("karpenter.sh/capacity-type", "NotIn", ("spot",)) in terms[0]
    assert all(len(t) == 5 for t in terms)  # the GPU + NotIn each cloud's spot label
    pod = pod_spec(render(base_manifest()))
    assert [t["key"] for t in pod["tolerations"]] == ["nvidia.com/gpu"]


def test_spot_requires_a_spot_label_of_some_cloud() -> None:
    terms = _terms(_node_affinity("spot"))
    assert len(terms) == 3 * 4  # (GPU label) x (spot label), ORed
    assert [GPU, GKE_SPOT] in terms
    assert [GPU, ("kubernetes.azure.com/scalesetpriority", "In", ("spot",))] in terms


def test_spot_preferred_prefers_spot_and_tolerates_its_taints() -> None:
    affinity = _node_affinity("spot-preferred")
    assert _terms(affinity)[0] == [GPU]
    preferred = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert len(preferred) == 4 and all(p["weight"] == 100 for p in preferred)
    manifest = base_manifest()
    manifest["spec"]["accelerator"]["capacity"] = "spot-preferred"
    keys = [t["key"] for t in pod_spec(render(manifest))["tolerations"]]
    assert "kubernetes.azure.com/scalesetpriority" in keys


def test_cpu_has_no_gpu_resources_or_tolerations_and_uses_the_cpu_image() -> None:
    objects = render(load_example(next(p for p in EXAMPLES if p.stem == "cpu-tiny")))
    pod = pod_spec(objects)
    container = pod["containers"][0]
    assert container["image"].endswith("-cpu")
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert "tolerations" not in pod
    assert {
        "name": "model",
        "hostPath": {"path": "/models/tiny-random", "type": "Directory"},
    } in pod["volumes"]


def test_security_defaults() -> None:
    pod = pod_spec(render(base_manifest()))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = pod["containers"][0]["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["allowPrivilegeEscalation"] is False


def test_probes_drain_and_rollout() -> None:
    deployment = by_kind(render(base_manifest()))["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1800
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert pod["terminationGracePeriodSeconds"] > 5 + 30  # preStop + the server's drain
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert deployment["spec"]["progressDeadlineSeconds"] > 1800


def test_tensor_parallel_gets_shared_memory() -> None:
    path = next(p for p in EXAMPLES if p.stem == "h100-fp8-70b")
    pod = pod_spec(render(load_example(path)))
    assert {"name": "dshm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 4


@pytest.mark.parametrize(
    ("uri", "model_arg", "volume_source"),
    [
        ("hf://org/llama-8b", "hf://org/llama-8b", None),
        ("s3://models-bucket/llama-8b", "s3://models-bucket/llama-8b", None),
        ("pvc://weights/llama-8b", "/models/llama-8b", {"persistentVolumeClaim"}),
        ("file:///mnt/llama-8b", "/mnt/llama-8b", {"hostPath"}),
        ("oci://registry.example.com/models/llama:8b", "/models", {"image"}),
    ],
)
def test_each_model_uri_reaches_the_server(
    uri: str, model_arg: str, volume_source: set[str] | None
) -> None:
    """Remote URIs go to the server as they are (it fetches them into the model cache);
    pvc://, file:// and oci:// are mounted and the server gets the mounted directory."""
    manifest = sized(base_manifest())
    manifest["spec"]["model"]["uri"] = uri
    objects = render(manifest)
    pod = pod_spec(objects)
    args = pod["containers"][0]["args"]
    assert args[args.index("--model") + 1] == model_arg
    model_volumes = [v for v in pod["volumes"] if v["name"] == "model"]
    if volume_source is None:
        assert model_volumes == []
    else:
        assert set(model_volumes[0]) - {"name"} == volume_source
    deployment = by_kind(objects)["Deployment"]
    # Image volumes entered the schema in 1.31; the other kinds validate at our 1.29 floor.
    version = "1.33" if uri.startswith("oci://") else KUBERNETES_VERSION
    kubernetes_validate.validate(deployment, version, strict=True)


def test_unresolved_spec_renders_nothing() -> None:
    manifest = base_manifest()
    manifest["spec"]["model"]["parameterCount"] = "70B"
    with pytest.raises(UnresolvedSpecError, match="int8 needs"):
        render(manifest)


def test_render_is_pure() -> None:
    manifest = sized(base_manifest())
    frozen = copy.deepcopy(manifest)
    assert render(manifest) == render(manifest)
    assert manifest == frozen


def test_cli_render_prints_exactly_the_desired_objects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = next(p for p in EXAMPLES if p.stem == "l4-int8-chat")
    assert main(["render", "-f", str(path), "--replicas", "3"]) == 0
    out = capsys.readouterr()
    assert out.out == dump_objects(render(load_example(path), RenderSettings(), replicas=3))
    assert "note: the KV cache holds 11 full-length" in out.err
    docs = list(yaml.safe_load_all(out.out))
    assert by_kind(docs)["Deployment"]["spec"]["replicas"] == 3


def test_cli_render_refuses_what_does_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = base_manifest()
    manifest["spec"]["model"]["parameterCount"] = "70B"
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(manifest))
    assert main(["render", "-f", str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "int8 needs" in out.err
    assert main(["render", "-f", str(path), "--fallback", "0"]) == 2  # A10G: no room either
