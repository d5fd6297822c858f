"""Issue 16, item 2, on the real API server with a real kube-scheduler: GPU fallbacks happen
only when the scheduler says the accelerator is short; examples/h100-fp8-70b.yaml without its
PVC (`model-store`) on a cluster with room on an H100 node is Degraded=True
`SchedulingFailed` with the scheduler's message, and stays on the H100 (it walked H100 ->
H200 -> A100, $44/h -> $81/h, before)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from control_plane import ControlPlane
from kube_client import Kube, wait_until
from llmd_manifest import llmd_manifest
from operator_thread import operator_config, running_operator

ROOT = Path(__file__).resolve().parents[3]
API = "inference.llmops.dev/v1alpha1"
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
GPU_TAINT = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]


def _condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def _example(name: str, namespace: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name).read_text())
    manifest["metadata"]["namespace"] = namespace
    return manifest


def test_a_missing_pvc_is_degraded_with_the_schedulers_message_not_a_fallback(
    kube: Kube,
    kubelet: Any,
    namespace: str,
    nodes: Any,
    control_plane: ControlPlane,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nodes("h100-a", labels=H100, capacity={"nvidia.com/gpu": "8"}, taints=GPU_TAINT)
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    llmd = _example("h100-fp8-70b.yaml", namespace)
    name = llmd["metadata"]["name"]
    kube.create(llmd)
    with running_operator(operator_config(namespace)):

        def degraded() -> dict[str, Any]:
            found = _condition(kube.get(API, "LLMDeployment", name, namespace), "Degraded")
            return found if found.get("status") == "True" else {}

        condition = wait_until(degraded, 120, "Degraded=True")
        assert condition["reason"] == "SchedulingFailed", condition
        assert 'persistentvolumeclaim "model-store" not found' in condition["message"]
        obj = kube.get(API, "LLMDeployment", name, namespace) or {}
        assert obj["status"]["accelerator"]["type"] == "H100-80GB"
        assert _condition(obj, "FallbackActive")["status"] == "False"
        reasons = {e["reason"] for e in kube.events(namespace, name)}
        assert "SchedulingFailed" in reasons and "FallbackActivated" not in reasons


def test_no_node_with_the_gpu_still_falls_back(
    kube: Kube,
    kubelet: Any,
    namespace: str,
    nodes: Any,
    control_plane: ControlPlane,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nodes("h100-b", labels=H100, capacity={"nvidia.com/gpu": "8"}, taints=GPU_TAINT)
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    kube.create(
        llmd_manifest(
            namespace,
            optimization={"quantization": "int8"},
            accelerator={"type": "L4", "fallbacks": [{"type": "H100-80GB"}]},
        )
    )
    with running_operator(operator_config(namespace)):
        wait_until(
            lambda: _condition(kube.get(API, "LLMDeployment", "chat", namespace),
                               "FallbackActive").get("status") == "True",
            120, "FallbackActive=True",
        )  # fmt: skip
        obj = kube.get(API, "LLMDeployment", "chat", namespace) or {}
        assert obj["status"]["accelerator"]["type"] == "H100-80GB"
        assert _condition(obj, "Degraded")["status"] == "False"
