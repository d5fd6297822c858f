"""autoscaling.mode keda: the KEDA ScaledObject, as a golden file and against KEDA's schema.

kubernetes-validate has no schema for CRD kinds, so the ScaledObject is checked against
SCALED_OBJECT_SCHEMA below: the structural part of KEDA's v2 CRD (keda.sh_scaledobjects.yaml:
required fields, int32 counts, trigger metadata as a map of strings) for the fields we render,
closed with additionalProperties so a misspelt field fails.
Regenerate the golden file after an intended change with
    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/operator/test_render_keda.py
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from llm_operator.api.resource import LLMDeployment
from llm_operator.catalog import default_catalog
from llm_operator.cost import estimate
from llm_operator.render import RenderSettings, desired_objects, dump_objects
from llm_operator.resolve import resolve

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden" / "l4-int8-chat-keda.yaml"
CATALOG = default_catalog()

INT32 = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
WINDOW = {
    "type": "object",
    "properties": {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600}
    },
    "additionalProperties": False,
}
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                    },
                },
                "minReplicaCount": INT32,
                "maxReplicaCount": INT32,
                "pollingInterval": INT32,
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "behavior": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {"scaleUp": WINDOW, "scaleDown": WINDOW},
                                }
                            },
                        }
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                                "required": ["serverAddress", "query", "threshold"],
                            },
                        },
                    },
                },
            },
        },
    },
}


def keda_example() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "l4-int8-chat.yaml").read_text())
    manifest["spec"]["autoscaling"]["mode"] = "keda"
    return manifest


def render(manifest: dict[str, Any], option: int | None = None) -> list[dict[str, Any]]:
    resource = LLMDeployment.model_validate(manifest)
    return desired_objects(resource, resolve(resource.spec, CATALOG, option), RenderSettings())


def scaled_object(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "ScaledObject")


def test_keda_example_renders_to_its_golden_file() -> None:
    rendered = dump_objects(render(keda_example()))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(rendered)
    assert GOLDEN.exists(), f"no golden file; run UPDATE_GOLDEN=1 pytest {__file__}"
    assert rendered == GOLDEN.read_text(), "rendering changed; see this module's docstring"


def test_every_option_validates_against_kubernetes_and_kedas_schema() -> None:
    manifest = keda_example()
    for option in (None, 0):
        for obj in render(manifest, option):
            if obj["kind"] == "ScaledObject":
                jsonschema.validate(obj, SCALED_OBJECT_SCHEMA)
            else:
                kubernetes_validate.validate(obj, "1.29", strict=True)


def test_bounds_follow_the_budget_per_option_like_llmops_cost() -> None:
    manifest = keda_example()
    manifest["spec"]["replicas"] = {"min": 1, "max": 50}
    spec = LLMDeployment.model_validate(manifest).spec
    for option, cost in zip((None, 0), estimate(spec, CATALOG), strict=True):
        body = scaled_object(render(manifest, option))["spec"]
        assert body["maxReplicaCount"] == cost.budget_capped_max < 50
        assert body["minReplicaCount"] == 1


def test_windows_targets_and_the_deployment_has_no_replicas() -> None:
    manifest = keda_example()
    manifest["spec"]["autoscaling"].update(
        targetQueueDepth=6, scaleUpStabilizationSeconds=0, scaleDownStabilizationSeconds=7200
    )
    objects = render(manifest)
    body = scaled_object(objects)["spec"]
    behavior = body["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 3600  # the HPA's ceiling
    assert body["triggers"][0]["metadata"]["threshold"] == "6"
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert "replicas" not in deployment["spec"]
    manifest["spec"]["autoscaling"]["mode"] = "builtin"
    assert all(o["kind"] != "ScaledObject" for o in render(manifest))
