"""spec.inferencePool renders a Gateway API Inference Extension InferencePool over the pods."""

from __future__ import annotations

from typing import Any

import pytest

from llm_operator.api.resource import LLMDeployment
from llm_operator.catalog import default_catalog
from llm_operator.render import RenderSettings, desired_objects, selector_labels
from llm_operator.resolve import SERVER_PORT, resolve
from llm_operator.validation import validate_manifest


def rendered(manifest: dict[str, Any], settings: RenderSettings | None = None) -> list[Any]:
    resource = LLMDeployment.model_validate(manifest)
    return desired_objects(resource, resolve(resource.spec, default_catalog()), settings)


def pools(objects: list[Any]) -> list[Any]:
    return [o for o in objects if o["kind"] == "InferencePool"]


def test_an_opt_in_renders_a_pool_over_the_pods_with_the_endpoint_picker(
    manifest: dict[str, Any],
) -> None:
    manifest["metadata"]["uid"] = "u-1"
    manifest["spec"]["inferencePool"] = {"endpointPicker": "chat-epp"}
    objects = rendered(manifest)
    (pool,) = pools(objects)
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    assert pool["metadata"]["name"] == "chat"
    assert pool["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert pool["spec"]["selector"] == {"matchLabels": selector_labels("chat")}
    # the selector picks exactly the Deployment's pods, on the server's port
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector_labels("chat").items() <= pod_labels.items()
    assert pool["spec"]["targetPorts"] == [{"number": SERVER_PORT}]
    ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert SERVER_PORT in [p["containerPort"] for p in ports]
    assert pool["spec"]["endpointPickerRef"] == {
        "kind": "Service",
        "name": "chat-epp",
        "port": {"number": 9002},
        "failureMode": "FailClose",
    }


def test_port_and_failure_mode_are_the_users(manifest: dict[str, Any]) -> None:
    manifest["spec"]["inferencePool"] = {
        "endpointPicker": "epp",
        "endpointPickerPort": 9102,
        "failureMode": "FailOpen",
    }
    (pool,) = pools(rendered(manifest))
    assert pool["spec"]["endpointPickerRef"]["port"] == {"number": 9102}
    assert pool["spec"]["endpointPickerRef"]["failureMode"] == "FailOpen"


def test_no_pool_without_the_opt_in_or_without_the_crd(manifest: dict[str, Any]) -> None:
    assert pools(rendered(manifest)) == []
    manifest["spec"]["inferencePool"] = {"endpointPicker": "chat-epp"}
    assert pools(rendered(manifest, RenderSettings(inference_pool=False))) == []


@pytest.mark.parametrize(
    "option",
    [
        {},
        {"endpointPicker": "Chat_EPP"},
        {"endpointPicker": "epp", "endpointPickerPort": 0},
        {"endpointPicker": "epp", "failureMode": "Retry"},
    ],
)
def test_a_bad_option_is_refused_naming_the_field(
    manifest: dict[str, Any], option: dict[str, Any]
) -> None:
    manifest["spec"]["inferencePool"] = option
    resource, problems = validate_manifest(manifest)
    assert resource is None
    assert any("spec.inferencePool" in str(p) for p in problems), problems
