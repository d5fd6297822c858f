"""spec.inferencePool on the real API server, against the REAL InferencePool CRD (Gateway API
Inference Extension v1.6.0, vendored in tests/support/crds/): the operator renders the pool,
the API server admits it (schema and CEL rules), it selects the Deployment's pods on the
server's port, and dropping the opt-in prunes it."""

from __future__ import annotations

from typing import Any

import pytest
from control_plane import ControlPlane
from kube_client import Kube, wait_until
from llmd_manifest import llmd_manifest
from operator_thread import operator_config, running_operator
from vendored_crds import inference_pool_crd

from llm_operator.api.resource import LLMDeployment
from llm_operator.catalog import default_catalog
from llm_operator.render import desired_objects
from llm_operator.resolve import SERVER_PORT, resolve

POOL = ("inference.networking.k8s.io/v1", "InferencePool")
LLMD = ("inference.llmops.dev/v1alpha1", "LLMDeployment")


@pytest.fixture
def pool_crd(kube: Kube) -> None:
    crd = inference_pool_crd()
    kube.apply(crd)
    kube.wait_established(crd["metadata"]["name"])


@pytest.mark.parametrize(
    "option",
    [
        {"endpointPicker": "chat-epp"},
        {"endpointPicker": "e", "endpointPickerPort": 65535, "failureMode": "FailOpen"},
    ],
)
def test_the_rendered_pool_is_admitted_by_the_real_crd(
    kube: Kube, namespace: str, pool_crd: None, option: dict[str, Any]
) -> None:
    manifest = llmd_manifest(namespace, inferencePool=option)
    resource = LLMDeployment.model_validate(manifest)
    objects = desired_objects(resource, resolve(resource.spec, default_catalog()))
    (pool,) = [o for o in objects if o["kind"] == "InferencePool"]
    admitted = kube.apply(pool, dry_run=True)  # strict: an unknown field is an error
    assert admitted["spec"]["endpointPickerRef"]["name"] == option["endpointPicker"]


def test_the_operator_applies_the_pool_and_prunes_it_when_the_opt_in_goes(
    kube: Kube,
    namespace: str,
    pool_crd: None,
    control_plane: ControlPlane,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    manifest = llmd_manifest(namespace, inferencePool={"endpointPicker": "chat-epp"})
    with running_operator(operator_config(namespace)):
        uid = kube.create(manifest)["metadata"]["uid"]
        pool = wait_until(lambda: kube.get(*POOL, "chat", namespace), 60, "the InferencePool")
        assert pool["metadata"]["ownerReferences"][0]["uid"] == uid
        deployment = wait_until(lambda: kube.get("apps/v1", "Deployment", "chat", namespace), 60,
                                "the Deployment")  # fmt: skip
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert pool["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert pool["spec"]["targetPorts"] == [{"number": SERVER_PORT}]
        picker = pool["spec"]["endpointPickerRef"]
        assert (picker["name"], picker["port"], picker["failureMode"]) == (
            "chat-epp", {"number": 9002}, "FailClose",
        )  # fmt: skip

        kube.patch(*LLMD, "chat", {"spec": {"inferencePool": None}}, namespace)
        wait_until(lambda: kube.get(*POOL, "chat", namespace) is None, 60, "the pool pruned")
        assert kube.get("apps/v1", "Deployment", "chat", namespace) is not None
