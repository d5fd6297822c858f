"""Issue 16, item 4: what happens to hand edits of a child by other field managers, on the
real API server (docs/operator.md, "Hand edits"):

- a field the operator sets (the image) changed by hand (`kubectl set image`) comes back to
  the operator's value the next time it applies that child (here: a spec change);
- a field the operator never sets (`kubectl set env` adding an env var) survives every
  reconcile, re-applies included: server-side apply removes only fields its own manager set.
"""

from __future__ import annotations

from typing import Any

import pytest
from control_plane import ControlPlane
from kube_client import Kube, wait_until
from llmd_manifest import llmd_manifest
from operator_thread import operator_config, running_operator

from llm_operator.plan.observed import APPLIED_HASH_ANNOTATION

API = "inference.llmops.dev/v1alpha1"
STRATEGIC = "application/strategic-merge-patch+json"


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return dict(next(c for c in containers if c["name"] == "llm-server"))


def _managers(deployment: dict[str, Any]) -> set[str]:
    return {m["manager"] for m in deployment["metadata"].get("managedFields") or []}


def test_hand_edits_owned_fields_return_at_the_next_apply_foreign_fields_stay(
    kube: Kube, namespace: str, control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    llmd = llmd_manifest(namespace)
    kube.create(llmd)
    with running_operator(operator_config(namespace)):
        first = wait_until(
            lambda: kube.get("apps/v1", "Deployment", "chat", namespace), 120, "the Deployment"
        )
        ours = _container(first)["image"]
        path = kube.path("apps/v1", "Deployment", namespace, "chat")
        # `kubectl set image` and `kubectl set env`, each with its own field manager.
        image = {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "llm-server", "image": "example.com/hand-edited:1"}]
                    }
                }
            }
        }
        env = {"spec": {"template": {"spec": {"containers": [
            {"name": "llm-server", "env": [{"name": "HAND_EDIT", "value": "1"}]}]}}}}  # fmt: skip
        kube.request("PATCH", path, image, content_type=STRATEGIC,
                     params={"fieldManager": "kubectl-set"})  # fmt: skip
        kube.request("PATCH", path, env, content_type=STRATEGIC,
                     params={"fieldManager": "kubectl-set-env"})  # fmt: skip
        edited = kube.get("apps/v1", "Deployment", "chat", namespace) or {}
        assert {"kubectl-set", "kubectl-set-env", "llm-operator"} <= _managers(edited)
        before = edited["metadata"]["annotations"][APPLIED_HASH_ANNOTATION]

        # A spec change that changes the Deployment: the operator applies it again.
        kube.patch(API, "LLMDeployment", "chat", {"spec": {"model": {"maxContextLength": 2048}}},
                   namespace)  # fmt: skip

        def reapplied() -> dict[str, Any] | None:
            current = kube.get("apps/v1", "Deployment", "chat", namespace) or {}
            annotations = current.get("metadata", {}).get("annotations") or {}
            return current if annotations.get(APPLIED_HASH_ANNOTATION) != before else None

        after = wait_until(reapplied, 120, "the Deployment re-applied")
        container = _container(after)
        assert container["image"] == ours  # an owned field: the operator's value again
        env_names = [e["name"] for e in container.get("env") or []]
        assert "HAND_EDIT" in env_names  # a foreign field: never removed by the operator
