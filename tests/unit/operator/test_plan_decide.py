"""decide(): observed state -> Plan, as tables (KubeAI calculatePodPlan style). Pure."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.plan import (
    ChildSummary,
    DeploymentState,
    Observed,
    Plan,
    PodSummary,
    ReconcileSettings,
    decide,
    set_condition,
)
from llm_operator.plan.children import stamp
from llm_operator.plan.fallback import options_digest
from llm_operator.plan.observed import summarize_child, summarize_pod
from llm_operator.plan.status import merge_patch
from llm_operator.render import RenderSettings

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
SETTINGS = ReconcileSettings()
MANIFEST: dict[str, Any] = {
    "apiVersion": "inference.llmops.dev/v1alpha1",
    "kind": "LLMDeployment",
    "metadata": {"name": "chat", "namespace": "ns", "uid": "u-1", "generation": 3},
    "spec": {
        "model": {"uri": "hf://org/model", "parameterCount": "8B"},
        "optimization": {"quantization": "int8"},
        "accelerator": {"type": "L4", "fallbacks": [{"type": "A10G"}]},
        "replicas": {"min": 2, "max": 4},
    },
}


def manifest(**spec: Any) -> dict[str, Any]:
    out = copy.deepcopy(MANIFEST)
    out["spec"].update(spec)
    return out


def existing(plan: Plan, deployment: DeploymentState | None = None) -> Observed:
    """What the cluster holds after `plan` was applied (optionally with a rollout state)."""
    children = []
    for obj in plan.apply:
        summary = summarize_child(obj)
        if obj["kind"] == "Deployment" and deployment is not None:
            summary = ChildSummary(
                summary.api_version, summary.kind, summary.name, summary.applied_hash, deployment
            )
        children.append(summary)
    return Observed.of(children, [])


def after(plan: Plan, m: dict[str, Any] | None = None) -> dict[str, Any]:
    out = copy.deepcopy(m or MANIFEST)
    out["status"] = plan.status
    return out


def conditions(plan_or_status: Any) -> dict[str, tuple[str, str]]:
    status = plan_or_status.status if isinstance(plan_or_status, Plan) else plan_or_status
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def kinds(plan: Plan) -> list[str]:
    return [o["kind"] for o in plan.apply]


def test_first_reconcile_applies_every_child_and_says_progressing() -> None:
    plan = decide(MANIFEST, Observed(), NOW, SETTINGS)
    assert kinds(plan) == ["ConfigMap", "Service", "Deployment", "PodDisruptionBudget"]
    assert plan.status is not None
    assert plan.status["phase"] == "Progressing"
    assert conditions(plan) == {
        "Ready": ("False", "ReplicasNotReady"),
        "Progressing": ("True", "RollingOut"),
        "Degraded": ("False", "AsExpected"),
        "FallbackActive": ("False", "OnPrimary"),
        "BudgetLimited": ("False", "NoBudget"),
        "ScalingLimited": ("False", "WithinRange"),
    }
    assert all(c["observedGeneration"] == 3 for c in plan.status["conditions"])
    assert plan.status["desiredReplicas"] == 2
    assert plan.status["cost"] == {"dollarsPerHour": 0.0}  # no pod exists yet: nothing billed
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "Created")]
    assert plan.error is None


def test_nothing_changed_means_no_writes_at_all() -> None:
    first = decide(MANIFEST, Observed(), NOW, SETTINGS)
    second = decide(after(first), existing(first), NOW + timedelta(seconds=5), SETTINGS)
    assert second.apply == () and second.delete == () and second.events == ()
    assert second.status is None and second.status_patch is None
    assert second.writes == 0


@pytest.mark.parametrize(
    ("edit", "changed"),
    [
        (
            {"model": {"uri": "hf://org/model", "parameterCount": "8B", "maxContextLength": 2048}},
            ["ConfigMap", "Deployment"],
        ),
        ({"replicas": {"min": 3, "max": 4}}, ["Deployment"]),
        ({"accelerator": {"type": "L4", "capacity": "spot"}}, ["ConfigMap", "Deployment"]),
        ({"autoscaling": {"targetQueueDepth": 9}}, []),  # the autoscaler's business
    ],
    ids=["context length", "replica floor", "capacity", "autoscaler target"],
)
def test_spec_edits_touch_only_the_children_they_change(
    edit: dict[str, Any], changed: list[str]
) -> None:
    first = decide(MANIFEST, Observed(), NOW, SETTINGS)
    edited = manifest(**edit)
    second = decide(after(first, edited), existing(first), NOW, SETTINGS)
    assert kinds(second) == changed


def test_kubectl_scale_behind_our_back_is_reverted() -> None:
    first = decide(MANIFEST, Observed(), NOW, SETTINGS)
    observed = existing(first, DeploymentState(spec_replicas=7))
    second = decide(after(first), observed, NOW, SETTINGS)
    assert kinds(second) == ["Deployment"]
    assert second.apply[0]["spec"]["replicas"] == 2


def test_a_kind_switched_off_is_pruned() -> None:
    with_monitor = ReconcileSettings(render=RenderSettings(service_monitor=True))
    first = decide(MANIFEST, Observed(), NOW, with_monitor)
    assert "ServiceMonitor" in kinds(first)
    second = decide(after(first), existing(first), NOW, SETTINGS)
    assert [(r.kind, r.name) for r in second.delete] == [("ServiceMonitor", "chat")]
    assert [e.reason for e in second.events] == ["Pruned"]


ROLLOUT = [
    # (id, deployment state, phase, Ready, Progressing reason)
    ("no pods ready", DeploymentState(2, 2, 0, 2, 1, 1), "Progressing", "False", "RollingOut"),
    ("one of two ready", DeploymentState(2, 2, 1, 2, 1, 1), "Progressing", "False", "RollingOut"),
    ("all ready", DeploymentState(2, 2, 2, 2, 1, 1), "Ready", "True", "RolloutComplete"),
    ("controller behind", DeploymentState(2, 2, 2, 2, 2, 1), "Progressing", "False", "RollingOut"),
    ("old pods ready", DeploymentState(2, 3, 2, 1, 1, 1), "Progressing", "False", "RollingOut"),
    ("no observedGeneration", DeploymentState(2, 2, 2, None), "Ready", "True", "RolloutComplete"),
]


@pytest.mark.parametrize(
    ("deployment", "phase", "ready", "progressing"),
    [r[1:] for r in ROLLOUT],
    ids=[r[0] for r in ROLLOUT],
)
def test_rollout_table(
    deployment: DeploymentState, phase: str, ready: str, progressing: str
) -> None:
    first = decide(MANIFEST, Observed(), NOW, SETTINGS)
    plan = decide(after(first), existing(first, deployment), NOW, SETTINGS)
    assert plan.status is not None
    assert plan.status["phase"] == phase
    assert conditions(plan)["Ready"][0] == ready
    assert conditions(plan)["Progressing"][1] == progressing
    assert plan.apply == ()


def test_ready_holds_through_a_scale_up_but_not_through_a_new_template() -> None:
    """A replica count alone is a scale: while replicas.min pods serve, Ready stays True
    (Progressing says Scaling). A new pod template is a rollout: Ready waits for it."""

    def scaled_to(desired: int, **spec: Any) -> dict[str, Any]:
        return manifest(
            replicas={"min": 2, "max": 6, "desired": desired}, autoscaling={"mode": "none"}, **spec
        )

    def observed_after(plan: Plan, base: Observed, state: DeploymentState) -> Observed:
        """`base` with the Deployment `plan` applied (or kept), in rollout `state`."""
        written = {(o["kind"], o["metadata"]["name"]): summarize_child(o) for o in plan.apply}
        children = []
        for key, child in base.children.items():
            child = written.get(key, child)
            if child.kind == "Deployment":
                child = ChildSummary(
                    child.api_version, child.kind, child.name, child.applied_hash, state
                )
            children.append(child)
        return Observed.of(children, [])

    first = decide(scaled_to(2), Observed(), NOW, SETTINGS)
    running = existing(first, DeploymentState(2, 2, 2, 2))
    ready = decide(after(first, scaled_to(2)), running, NOW, SETTINGS)
    assert conditions(ready)["Ready"] == ("True", "ReplicasReady")

    up = decide(after(ready, scaled_to(5)), running, NOW, SETTINGS)
    assert kinds(up) == ["Deployment"] and up.apply[0]["spec"]["replicas"] == 5
    assert up.status is not None and up.status["phase"] == "Ready"
    assert conditions(up)["Ready"] == ("True", "MinimumReplicasReady")
    assert conditions(up)["Progressing"] == ("True", "Scaling")
    assert "Ready" not in [e.reason for e in up.events]

    starting = observed_after(up, running, DeploymentState(5, 5, 3, 5))
    halfway = decide(after(up, scaled_to(5)), starting, NOW, SETTINGS)
    assert halfway.apply == ()
    now_status = halfway.status or up.status  # None: nothing changed since `up`
    assert conditions(now_status)["Ready"] == ("True", "MinimumReplicasReady")
    assert conditions(now_status)["Progressing"] == ("True", "Scaling")

    done = decide(
        after(up, scaled_to(5)), observed_after(up, running, DeploymentState(5, 5, 5, 5)), NOW,
        SETTINGS,
    )  # fmt: skip
    assert conditions(done)["Ready"] == ("True", "ReplicasReady")
    assert conditions(done)["Progressing"] == ("False", "RolloutComplete")

    # Fewer than replicas.min ready (pods crashed): not serving as declared.
    crashed = observed_after(up, running, DeploymentState(5, 5, 1, 5))
    short = decide(after(done, scaled_to(5)), crashed, NOW, SETTINGS)
    assert conditions(short)["Ready"] == ("False", "ReplicasNotReady")

    # A new template (another context length) is a rollout: Ready waits for it.
    model = {"uri": "hf://org/model", "parameterCount": "8B", "maxContextLength": 2048}
    edited = scaled_to(5, model=model)
    rolled = observed_after(up, running, DeploymentState(5, 5, 5, 5))
    rollout = decide(after(done, edited), rolled, NOW, SETTINGS)
    assert "Deployment" in kinds(rollout)
    assert conditions(rollout)["Ready"] == ("False", "ReplicasNotReady")
    assert conditions(rollout)["Progressing"] == ("True", "RollingOut")


def test_becoming_ready_emits_one_event_and_keeps_other_transition_times() -> None:
    first = decide(MANIFEST, Observed(), NOW, SETTINGS)
    later = NOW + timedelta(minutes=3)
    ready = decide(after(first), existing(first, DeploymentState(2, 2, 2)), later, SETTINGS)
    assert [e.reason for e in ready.events] == ["Ready"]
    assert ready.status is not None
    times = {c["type"]: c["lastTransitionTime"] for c in ready.status["conditions"]}
    assert times["Ready"] == "2025-01-01T12:03:00Z"  # changed status: new time
    assert times["Degraded"] == "2025-01-01T12:00:00Z"  # unchanged: kept
    again = decide(after(ready), existing(first, DeploymentState(2, 2, 2)), later, SETTINGS)
    assert again.events == () and again.status is None


INVALID = [
    (
        "fp8 on a T4 (the CRD would refuse it)",
        {"accelerator": {"type": "T4"}, "optimization": {"quantization": "fp8"}},
        "InvalidSpec",
    ),
    ("unknown field", {"replicaz": 3}, "InvalidSpec"),
    (
        "70B on one L4",
        {
            "model": {"uri": "hf://org/m", "parameterCount": "70B"},
            "optimization": {"quantization": "none"},
        },
        "InsufficientGPUMemory",
    ),
]


@pytest.mark.parametrize(("edit", "reason"), [i[1:] for i in INVALID], ids=[i[0] for i in INVALID])
def test_invalid_spec_is_a_permanent_error_reported_once(edit: dict[str, Any], reason: str) -> None:
    bad = manifest(**edit)
    plan = decide(bad, Observed(), NOW, SETTINGS)
    assert plan.error is not None and plan.error.reason == reason
    assert plan.apply == () and plan.delete == ()
    assert plan.status is not None and plan.status["phase"] == "Failed"
    assert conditions(plan)["Degraded"] == ("True", reason)
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", reason)]
    # The next reconcile of the same spec writes nothing: no retry storm.
    again = decide(after(plan, bad), Observed(), NOW + timedelta(minutes=1), SETTINGS)
    assert again.error is not None
    assert again.status is None and again.events == ()


def test_a_bad_edit_keeps_the_running_children() -> None:
    first = decide(MANIFEST, Observed(), NOW, SETTINGS)
    bad = manifest(accelerator={"type": "T4"}, optimization={"quantization": "fp8"})
    plan = decide(after(first, bad), existing(first), NOW, SETTINGS)
    assert plan.apply == () and plan.delete == ()


def test_unschedulable_primary_switches_the_deployment_to_the_fallback() -> None:
    first = decide(MANIFEST, Observed(), NOW, SETTINGS)
    pods = [PodSummary("p", "primary", unschedulable_since=NOW)]
    observed = Observed(existing(first).children, tuple(pods))
    later = NOW + timedelta(seconds=301)
    plan = decide(after(first), observed, later, SETTINGS)
    assert kinds(plan) == ["ConfigMap", "Deployment"]
    labels = plan.apply[1]["spec"]["template"]["metadata"]["labels"]
    assert labels["inference.llmops.dev/accelerator"] == "A10G"
    assert plan.status is not None
    assert plan.status["accelerator"]["fallbackIndex"] == 0
    assert conditions(plan)["FallbackActive"] == ("True", "PrimaryUnschedulable")
    assert [(e.type, e.reason) for e in plan.events] == [
        ("Normal", "Updated"),
        ("Warning", "FallbackActivated"),
    ]


def test_no_fallbacks_left_is_degraded() -> None:
    single = manifest(accelerator={"type": "L4"})
    first = decide(single, Observed(), NOW, SETTINGS)
    pods = (PodSummary("p", "primary", unschedulable_since=NOW),)
    plan = decide(
        after(first, single),
        Observed(existing(first).children, pods),
        NOW + timedelta(seconds=400),
        SETTINGS,
    )
    assert plan.status is not None and plan.status["phase"] == "Degraded"
    assert conditions(plan)["Degraded"] == ("True", "Unschedulable")
    assert [e.reason for e in plan.events] == ["Unschedulable"]


def test_builtin_autoscaling_keeps_the_last_desired_replicas() -> None:
    first = decide(MANIFEST, Observed(), NOW, SETTINGS)
    scaled = after(first)
    scaled["status"] = {**scaled["status"], "desiredReplicas": 3}
    plan = decide(scaled, existing(first), NOW, SETTINGS)
    assert kinds(plan) == ["Deployment"]
    assert plan.apply[0]["spec"]["replicas"] == 3


# replicas.min 3, a budget that pays for 2 L4 replicas ($0.71/h each) and 1 A10G ($1.01/h).
BUDGET_BELOW_MIN = manifest(
    accelerator={"type": "L4", "fallbacks": [{"type": "A10G"}]},
    replicas={"min": 3, "max": 4},
    autoscaling={"budget": {"maxDollarsPerHour": 1.5}},
)


@pytest.mark.parametrize(
    ("ready_primary", "restored"),
    [(1, False), (2, True)],
    ids=["1 of the 2 the budget pays for: keep probing", "2 of 2: back on the primary"],
)
def test_the_fallback_waits_for_the_replicas_the_budget_pays_for_not_for_min(
    ready_primary: int, restored: bool
) -> None:
    # The Deployment runs the budget's 2 pods, not replicas.min's 3: a probe of the primary
    # that waited for 3 ready pods would never complete (issue 21). One replica target.
    first = decide(BUDGET_BELOW_MIN, Observed(), NOW, SETTINGS)
    assert first.status is not None and first.status["desiredReplicas"] == 2
    deployment = next(o for o in first.apply if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    probing = after(first, BUDGET_BELOW_MIN)
    digest = options_digest(LLMDeploymentSpec.model_validate(BUDGET_BELOW_MIN["spec"]))
    since = (NOW - timedelta(seconds=60)).isoformat().replace("+00:00", "Z")
    probing["status"]["fallback"] = {"since": since, "options": digest, "probeReturnIndex": 0}
    pods = [
        PodSummary(f"p{i}", "primary", phase="Running", ready=True) for i in range(ready_primary)
    ]
    pods.append(PodSummary("f", "fallback-0", phase="Running", ready=True))
    plan = decide(probing, Observed(existing(first).children, tuple(pods)), NOW, SETTINGS)
    assert ("PrimaryRestored" in [e.reason for e in plan.events]) == restored
    assert plan.status is not None and plan.status["desiredReplicas"] == 2
    expected = ("False", "OnPrimary") if restored else ("True", "ProbingPrimary")
    assert conditions(plan)["FallbackActive"] == expected


def test_merge_patch_deletes_what_is_gone_and_recurses() -> None:
    old = {"a": 1, "b": {"x": 1, "y": 2}, "c": [1]}
    new = {"a": 1, "b": {"x": 1}, "c": [2]}
    assert merge_patch(old, new) == {"b": {"y": None}, "c": [2]}


def test_set_condition_keeps_the_time_unless_the_status_changes() -> None:
    one = set_condition((), "Ready", "False", "A", "m", NOW, 1)
    two = set_condition(one, "Ready", "False", "B", "n", NOW + timedelta(hours=1), 2)
    assert two[0].last_transition_time == one[0].last_transition_time
    assert (two[0].reason, two[0].observed_generation) == ("B", 2)
    three = set_condition(two, "Ready", "True", "C", "", NOW + timedelta(hours=2), 2)
    assert three[0].last_transition_time == "2025-01-01T14:00:00Z"


def test_stamp_is_stable_and_changes_with_content() -> None:
    obj = {"kind": "Service", "metadata": {"name": "x"}, "spec": {"a": 1}}
    assert stamp(obj) == stamp(obj)
    assert (
        stamp(obj)["metadata"]["annotations"]
        != stamp({**obj, "spec": {"a": 2}})["metadata"]["annotations"]
    )


def test_pod_summary_reads_the_scheduler_condition() -> None:
    pod = summarize_pod(
        {
            "metadata": {
                "name": "p",
                "labels": {"inference.llmops.dev/accelerator-option": "primary"},
            },
            "status": {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "lastTransitionTime": "2025-01-01T11:00:00Z",
                    },
                ],
            },
        }
    )
    assert pod.option == "primary" and not pod.ready
    assert pod.unschedulable_since == datetime(2025, 1, 1, 11, 0, tzinfo=UTC)
