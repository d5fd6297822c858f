"""Issue 16, item 5: names on the real API server. A dotted name (`llama-3.1-8b`, what people
call models) is served: its children get dot-free, stable names (render.names.child_name). A
name the operator cannot serve (over 63 characters: the pods carry it in a label) is refused
by the CRD at `kubectl apply`, with the message `llmops validate` prints."""

from __future__ import annotations

from typing import Any

import pytest
from control_plane import ControlPlane
from kube_client import Kube, KubeError, wait_until
from llmd_manifest import llmd_manifest
from operator_thread import operator_config, running_operator

from llm_operator.api.admission import admission_errors
from llm_operator.api.resource import NAME_FITS_LABEL
from llm_operator.render.names import child_name
from llm_operator.validation import validate_manifest

API = "inference.llmops.dev/v1alpha1"


def _llmd(name: str, namespace: str) -> dict[str, Any]:
    return llmd_manifest(namespace, name)


@pytest.mark.parametrize(
    "name",
    ["llama-3.1-8b", "qwen2.5-72b.instruct." + "x" * 41],
    ids=["dotted", "dotted-63-chars"],
)
def test_a_dotted_name_is_served_with_valid_child_names(
    kube: Kube,
    namespace: str,
    control_plane: ControlPlane,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    assert len(name) <= 63
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    kube.create(_llmd(name, namespace))
    child = child_name(name)
    assert "." not in child and len(child) <= 63
    with running_operator(operator_config(namespace)):
        for api_version, kind, object_name in (
            ("apps/v1", "Deployment", child),
            ("v1", "Service", child),
            ("v1", "ConfigMap", f"{child}-config"),
            ("policy/v1", "PodDisruptionBudget", child),
        ):
            wait_until(
                lambda a=api_version, k=kind, n=object_name: kube.get(a, k, n, namespace),
                120, f"{kind} {object_name}",
            )  # fmt: skip

        def status() -> dict[str, Any]:
            obj = kube.get(API, "LLMDeployment", name, namespace) or {}
            return dict(obj.get("status") or {})

        current = wait_until(lambda: status().get("endpoint") and status(), 120, "a status")
        assert current["phase"] != "Failed", current
        assert current["endpoint"].startswith(f"http://{child}.{namespace}.svc")
        deployment = kube.get("apps/v1", "Deployment", child, namespace) or {}
        assert deployment["metadata"]["ownerReferences"][0]["name"] == name
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        (config,) = [v for v in volumes if v["name"] == "config"]
        assert config["configMap"]["name"] == f"{child}-config"


def test_a_name_over_63_characters_is_refused_at_apply_with_validates_message(
    kube: Kube, namespace: str
) -> None:
    manifest = _llmd("a" * 64, namespace)
    with pytest.raises(KubeError) as refused:
        kube.create(manifest)
    assert refused.value.status == 422
    assert NAME_FITS_LABEL.message in refused.value.message
    _, problems = validate_manifest(manifest)
    assert [(p.path, p.message) for p in problems] == [("metadata.name", NAME_FITS_LABEL.message)]
    (local,) = admission_errors(manifest)
    assert local.startswith("metadata.name: ") and NAME_FITS_LABEL.message in local


def test_a_name_the_api_server_refuses_validate_refuses_too(kube: Kube, namespace: str) -> None:
    manifest = _llmd("Llama_3", namespace)
    with pytest.raises(KubeError) as refused:
        kube.create(manifest, dry_run=True)
    assert refused.value.status == 422
    _, problems = validate_manifest(manifest)
    assert [p.path for p in problems] == ["metadata.name"]


def test_child_names_are_stable_and_keep_dotted_and_dashed_apart() -> None:
    assert child_name("chat") == "chat"
    assert child_name("llama-3.1-8b") == child_name("llama-3.1-8b")
    assert child_name("llama-3.1-8b") != child_name("llama-3-1-8b") == "llama-3-1-8b"
