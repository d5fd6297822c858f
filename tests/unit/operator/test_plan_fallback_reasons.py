"""Only a shortage of the accelerator moves pods to a fallback (issue 16, item 2): the
scheduler's message decides. Messages are what kube-scheduler v1.36 writes (the real-server
test in tests/integration/kube/test_gpu_fallback_reasons.py reads them from it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.plan import FallbackSettings, Observed, PodSummary, step_fallback
from llm_operator.plan.fallback import waits_for_accelerator
from llm_operator.plan.observed import summarize_pod

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
SETTINGS = FallbackSettings(unschedulable_seconds=300)
SPEC = LLMDeploymentSpec.model_validate(
    {
        "model": {"uri": "hf://org/model", "parameterCount": "8B"},
        "optimization": {"quantization": "int8"},
        "accelerator": {"type": "L4", "fallbacks": [{"type": "A10G"}]},
    }
)
TAIL = (
    " no new claims to deallocate, preemption: 0/2 nodes are available: 2 Preemption is not "
    "helpful for scheduling."
)
PVC = '0/2 nodes are available: persistentvolumeclaim "model-store" not found. not found'


@pytest.mark.parametrize(
    ("message", "accelerator"),
    [
        ("0/2 nodes are available: 2 Insufficient nvidia.com/gpu." + TAIL, True),
        ("0/3 nodes are available: 3 Insufficient amd.com/gpu.", True),
        ("0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector." + TAIL,
         True),
        ("0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
         "1 node(s) had untolerated taint(s)." + TAIL, True),
        ("0/1 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: present}.",
         True),
        ("0/3 nodes are available: 1 Insufficient cpu, 2 Insufficient nvidia.com/gpu.", True),
        (PVC, False),
        ("0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims.", False),
        ("0/2 nodes are available: 2 Insufficient cpu." + TAIL, False),
        ("0/4 nodes are available: 1 Insufficient memory, 3 node(s) didn't match Pod's node "
         "affinity/selector.", False),
        ("0/2 nodes are available: 2 node(s) had volume node affinity conflict.", False),
        (None, True),  # no message: as before (leave after the timeout)
    ],
    ids=[
        "insufficient-gpu", "insufficient-amd-gpu", "no-node-with-the-gpu-label",
        "label-or-taint", "gpu-taint", "gpu-among-others", "missing-pvc", "unbound-pvc",
        "cpu-only", "gpu-node-lacks-memory", "volume-zone", "no-message",
    ],
)  # fmt: skip
def test_which_scheduling_failures_are_about_the_accelerator(
    message: str | None, accelerator: bool
) -> None:
    assert waits_for_accelerator(message) is accelerator


def _stuck(seconds: float, message: str) -> PodSummary:
    return PodSummary(
        name="p",
        option="primary",
        unschedulable_since=NOW - timedelta(seconds=seconds),
        unschedulable_message=message,
    )


def test_a_missing_pvc_blocks_with_the_schedulers_message_and_never_falls_back() -> None:
    step = step_fallback(SPEC, None, [_stuck(900, PVC)], 1, NOW, SETTINGS)
    assert step.transition is None and step.index is None and not step.exhausted
    assert step.blocked == PVC


def test_blocked_only_after_the_timeout_and_requeued_for_it() -> None:
    step = step_fallback(SPEC, None, [_stuck(100, PVC)], 1, NOW, SETTINGS)
    assert step.blocked is None and step.requeue_after == 200


def test_a_gpu_shortage_still_falls_back() -> None:
    message = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    step = step_fallback(SPEC, None, [_stuck(301, message)], 1, NOW, SETTINGS)
    assert step.transition is not None and step.transition.kind == "FallbackActivated"
    assert step.index == 0 and step.blocked is None


def test_the_pod_summary_keeps_the_schedulers_message() -> None:
    pod = {
        "metadata": {"name": "p", "labels": {}},
        "status": {"conditions": [{"type": "PodScheduled", "status": "False",
                   "reason": "Unschedulable", "message": PVC,
                   "lastTransitionTime": "2025-01-01T11:45:00Z"}]},
    }  # fmt: skip
    summary = summarize_pod(pod)
    assert summary.unschedulable_message == PVC
    assert Observed(pods=(summary,)).pods[0].unschedulable_since is not None
