"""Issue 18, item 9, on the real API server: a hostile `server.podTemplate` (privileged,
hostPID, a hostPath `/`) ends as Failed / Degraded=True `PolicyViolation` with one Warning
Event naming the field, and no child object is created (no Deployment, no ConfigMap)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from control_plane import ControlPlane
from kube_client import Kube, wait_until
from llmd_manifest import llmd_manifest
from operator_thread import operator_config, running_operator

API = "inference.llmops.dev/v1alpha1"
HOSTILE_TEMPLATE: dict[str, Any] = {
    "spec": {
        "hostPID": True,
        "containers": [{"name": "llm-server", "securityContext": {"privileged": True}}],
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
    }
}


def _condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def test_a_hostile_pod_template_ends_as_a_condition_and_an_event(
    kube: Kube, namespace: str, control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    kube.create(llmd_manifest(namespace, server={"podTemplate": HOSTILE_TEMPLATE}))
    with running_operator(operator_config(namespace, resync_seconds=0.2)) as memo:

        def failed() -> dict[str, Any] | None:
            obj = kube.get(API, "LLMDeployment", "chat", namespace)
            return obj if (obj or {}).get("status", {}).get("phase") == "Failed" else None

        obj = wait_until(failed, 120, "phase Failed")
        degraded = _condition(obj, "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "PolicyViolation"
        for field in (
            "spec.template.spec.hostPID",
            "spec.template.spec.containers[llm-server].securityContext.privileged",
            "spec.template.spec.volumes[root].hostPath.path",
        ):
            assert field in degraded["message"]
        events = wait_until(
            lambda: [e for e in kube.events(namespace, "chat") if e["reason"] == "PolicyViolation"],
            120,
            "a PolicyViolation Event",
        )
        assert events[0]["type"] == "Warning"
        assert "spec.template.spec.hostPID" in events[0]["message"]
        time.sleep(2.0)  # ten resync intervals: no retry, no second Event, nothing applied
        assert memo.runtime.api.requests["apply"] == 0
        same = [e for e in kube.events(namespace, "chat") if e["reason"] == "PolicyViolation"]
        assert len(same) == len(events) == 1
    assert kube.list("apps/v1", "Deployment", namespace) == []
    assert kube.get("v1", "ConfigMap", "chat-config", namespace) is None
