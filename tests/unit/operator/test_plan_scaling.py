"""decide() with the autoscaler: replicas, BudgetLimited / ScalingLimited, lastScaling, Events,
cost figures and the CostReport behind the operator's llmops_* series. Pure."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llm_operator.api.resource import LLMDeployment
from llm_operator.autoscale.signals import PodSignals
from llm_operator.catalog import default_catalog
from llm_operator.cost import replica_dollars_per_hour
from llm_operator.plan import Observed, Plan, PodSummary, ReconcileSettings, decide
from llm_operator.plan.fallback import options_digest
from llm_operator.plan.observed import ScalingMemory, Scrape, summarize_child, summarize_pod

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
SETTINGS = ReconcileSettings()
L4 = replica_dollars_per_hour(default_catalog(), "L4", 1, "on-demand")
A10G = replica_dollars_per_hour(default_catalog(), "A10G", 1, "on-demand")
MANIFEST: dict[str, Any] = {
    "apiVersion": "inference.llmops.dev/v1alpha1",
    "kind": "LLMDeployment",
    "metadata": {"name": "chat", "namespace": "ns", "uid": "u-1", "generation": 1},
    "spec": {
        "model": {"uri": "hf://org/model", "parameterCount": "8B"},
        "optimization": {"quantization": "int8"},  # 64 sequences: 8 running per replica
        "accelerator": {"type": "L4", "fallbacks": [{"type": "A10G"}]},
        "replicas": {"min": 1, "max": 4},
        "autoscaling": {"scaleUpStabilizationSeconds": 0, "scaleDownStabilizationSeconds": 60},
    },
}


def manifest(budget: float | None = None, **autoscaling: Any) -> dict[str, Any]:
    out = copy.deepcopy(MANIFEST)
    out["spec"]["autoscaling"].update(autoscaling)
    if budget is not None:
        out["spec"]["autoscaling"]["budget"] = {"maxDollarsPerHour": budget}
    return out


def ready_pods(count: int) -> tuple[PodSummary, ...]:
    return tuple(PodSummary(f"p{i}", "primary", "Running", ready=True) for i in range(count))


class Loop:
    """The operator's loop in miniature: status, children and memory carried between plans."""

    def __init__(self, m: dict[str, Any]) -> None:
        self.manifest = m
        self.plan = decide(m, Observed(), NOW, SETTINGS)
        assert self.plan.status is not None
        self.status: dict[str, Any] = self.plan.status
        self.children = {(c.kind, c.name): c for c in map(summarize_child, self.plan.apply)}
        self.memory = ScalingMemory()
        self.pods: tuple[PodSummary, ...] = ready_pods(1)

    def tick(self, seconds: float, *pods: PodSignals, starting: int = 0) -> Plan:
        """One reconcile `seconds` in; with a scrape of `pods` when any are given."""
        body = {**copy.deepcopy(self.manifest), "status": self.status}
        extra = tuple(PodSummary(f"s{i}", "primary") for i in range(starting))
        observed = Observed(
            self.children,
            self.pods + extra,
            scrape=Scrape(tuple(pods), seconds) if pods else None,
            memory=self.memory,
        )
        plan = decide(body, observed, NOW + timedelta(seconds=seconds), SETTINGS)
        self.children = {
            **self.children,
            **{(c.kind, c.name): c for c in map(summarize_child, plan.apply)},
        }
        self.status = plan.status if plan.status is not None else self.status
        self.memory = plan.memory if plan.memory is not None else self.memory
        self.plan = plan
        return plan


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def load(waiting: int, running: int, name: str = "p0", tokens: float = 0.0) -> PodSignals:
    return PodSignals(name, waiting=waiting, running=running, generation_tokens_total=tokens)


def test_a_queue_scales_up_and_the_budget_binds_with_condition_event_and_status() -> None:
    loop = Loop(manifest(budget=round(L4 * 2.5, 2)))
    assert conditions(loop.status)["BudgetLimited"] == ("False", "WithinBudget")
    plan = loop.tick(10, load(waiting=20, running=8))
    deployment = next(o for o in plan.apply if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert loop.status["desiredReplicas"] == 2
    assert conditions(loop.status)["BudgetLimited"] == ("True", "BudgetExceeded")
    message = next(c["message"] for c in loop.status["conditions"] if c["type"] == "BudgetLimited")
    assert f"pays for 2 replica(s) of 1x L4 (on-demand) at ${L4:.2f}/h each" in message
    assert loop.status["lastScaling"]["from"] == 1 and loop.status["lastScaling"]["to"] == 2
    assert "budget" in loop.status["lastScaling"]["reason"]
    reasons = [(e.type, e.reason) for e in plan.events]
    assert ("Normal", "ScaledUp") in reasons and ("Warning", "BudgetLimited") in reasons
    assert plan.report is not None
    assert (plan.report.direction, plan.report.budget_limited, plan.report.max_limited) == (
        1,
        True,
        False,
    )

    # The same load again: the limit still binds, nothing changed, nothing written.
    again = loop.tick(20, load(waiting=20, running=8))
    assert again.status is None and again.events == () and again.apply == ()
    assert again.report is not None and again.report.direction == 0


def test_max_binds_without_a_budget() -> None:
    loop = Loop(manifest())
    loop.pods = ready_pods(4)
    plan = loop.tick(10, load(waiting=100, running=8))
    assert loop.status["desiredReplicas"] == 4
    assert conditions(loop.status)["ScalingLimited"] == ("True", "MaxReplicas")
    assert conditions(loop.status)["BudgetLimited"] == ("False", "NoBudget")
    assert ("Warning", "ScalingLimited") in [(e.type, e.reason) for e in plan.events]


def test_scale_down_waits_for_its_window_then_one_status_write() -> None:
    loop = Loop(manifest())
    loop.tick(0, load(waiting=16, running=8))
    assert loop.status["desiredReplicas"] == 4
    loop.pods = ready_pods(4)
    idle = [load(0, 0, f"p{i}") for i in range(4)]
    held = loop.tick(30, *idle)  # the 60 s window keeps 4 (4 pods now bill: cost changes)
    assert loop.status["desiredReplicas"] == 4 and held.events == ()
    assert loop.tick(45, *idle).status is None  # nothing changed: no write
    plan = loop.tick(61, *idle)
    assert loop.status["desiredReplicas"] == 2  # down by at most 50 % per decision
    assert [e.reason for e in plan.events if e.reason.startswith("Scaled")] == ["ScaledDown"]


def test_a_restarted_operator_does_not_skip_the_scale_down_window() -> None:
    loop = Loop(manifest())
    loop.tick(0, load(waiting=16, running=8))
    loop.pods = ready_pods(4)
    loop.memory = ScalingMemory()  # restart: the windows are in memory only
    idle = [load(0, 0, f"p{i}") for i in range(4)]
    loop.tick(100, *idle)
    assert loop.status["desiredReplicas"] == 4  # as if 4 had just been recommended
    loop.tick(161, *idle)
    assert loop.status["desiredReplicas"] == 2


def test_pods_starting_absorb_the_queue_and_a_silent_pod_blocks_scale_down() -> None:
    loop = Loop(manifest())
    loop.tick(0, load(waiting=4, running=8))
    assert loop.status["desiredReplicas"] == 2
    plan = loop.tick(10, load(waiting=12, running=8), starting=1)
    assert loop.status["desiredReplicas"] == 2 and plan.report is not None
    assert plan.report.starting == 1
    loop.pods = ready_pods(2)
    silent = loop.tick(200, load(0, 0), PodSignals.failed("p1"))
    assert loop.status["desiredReplicas"] == 2  # unknown load is not idle
    assert silent.report is not None and silent.report.scrape_failures == 1


def test_reconciles_without_a_scrape_keep_the_decision_but_apply_a_lower_budget_at_once() -> None:
    loop = Loop(manifest())
    loop.tick(0, load(waiting=16, running=8))
    assert loop.status["desiredReplicas"] == 4
    assert loop.tick(5).status is None  # a pod event, no scrape: nothing moves
    loop.manifest = manifest(budget=round(L4 * 2.2, 2))
    plan = loop.tick(6)
    assert loop.status["desiredReplicas"] == 2
    assert conditions(loop.status)["BudgetLimited"] == ("True", "BudgetExceeded")
    assert loop.status["lastScaling"]["reason"] == "spec change: clamped to 2"
    assert next(o for o in plan.apply if o["kind"] == "Deployment")["spec"]["replicas"] == 2


def test_cost_bills_existing_pods_and_prices_tokens() -> None:
    loop = Loop(manifest(budget=10))
    loop.pods = (*ready_pods(2), PodSummary("s", "primary"))  # 2 ready, 1 starting
    loop.tick(0, load(0, 1, "p0", tokens=0), load(0, 1, "p1", tokens=0))
    plan = loop.tick(10, load(0, 1, "p0", tokens=3000), load(0, 1, "p1", tokens=2000))
    per_hour = 3 * L4
    expected = per_hour / (500 * 3600) * 1e6  # 500 tokens/s
    assert plan.report is not None
    assert plan.report.dollars_per_hour == pytest.approx(per_hour)
    assert plan.report.dollars_per_million_tokens == pytest.approx(expected)
    assert (plan.report.current, plan.report.ready, plan.report.starting) == (3, 2, 1)
    assert (plan.report.accelerator, plan.report.capacity) == ("L4", "on-demand")
    cost = loop.status["cost"]
    assert cost["dollarsPerHour"] == pytest.approx(per_hour, abs=1e-4)
    assert cost["dollarsPerMillionTokens"] == pytest.approx(expected, rel=0.01)
    assert cost["budgetDollarsPerHour"] == 10
    # 5 % faster: the metric follows, the status keeps its figure (no churn).
    plan = loop.tick(20, load(0, 1, "p0", tokens=5700), load(0, 1, "p1", tokens=4550))
    assert plan.status is None
    assert plan.report is not None and plan.report.dollars_per_million_tokens < expected
    # Idle: the metric disappears, the status keeps the last figure measured.
    plan = loop.tick(30, load(0, 0, "p0", tokens=5700), load(0, 0, "p1", tokens=4550))
    assert plan.report is not None and plan.report.dollars_per_million_tokens is None
    assert loop.status["cost"]["dollarsPerMillionTokens"] == cost["dollarsPerMillionTokens"]


def test_the_budget_prices_the_active_fallback() -> None:
    m = manifest(budget=round(A10G * 2.5, 2))  # pays for 3 L4 replicas but 2 A10G ones
    spec = LLMDeployment.model_validate(m).spec
    m["status"] = {
        "desiredReplicas": 4,
        "fallback": {
            "index": 0,
            "since": "2025-01-01T11:00:00Z",
            "options": options_digest(spec),
            "nextPrimaryProbe": "2025-01-02T00:00:00Z",
        },
    }
    plan = decide(m, Observed(), NOW, SETTINGS)
    assert plan.report is not None and plan.report.accelerator == "A10G"
    assert plan.status is not None and plan.status["desiredReplicas"] == 2
    message = next(c["message"] for c in plan.status["conditions"] if c["type"] == "BudgetLimited")
    assert f"pays for 2 replica(s) of 1x A10G (on-demand) at ${A10G:.2f}/h each" in message


def test_keda_mode_reports_the_hpas_count_and_caps_max_by_budget() -> None:
    m = manifest(budget=round(L4 * 2.5, 2), mode="keda")
    m["spec"]["replicas"] = {"min": 1, "max": 5}
    first = decide(m, Observed(), NOW, SETTINGS)
    scaled = next(o for o in first.apply if o["kind"] == "ScaledObject")
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 2)
    deployment = next(o for o in first.apply if o["kind"] == "Deployment")
    assert "replicas" not in deployment["spec"]
    assert first.status is not None
    assert conditions(first.status)["BudgetLimited"] == ("True", "BudgetExceeded")
    assert "ScalingLimited" not in conditions(first.status)
    hpa_scaled = copy.deepcopy(deployment)
    hpa_scaled["spec"]["replicas"] = 2
    children = {(c.kind, c.name): c for c in map(summarize_child, first.apply)}
    children[("Deployment", "chat")] = summarize_child(hpa_scaled)
    body = {**m, "status": first.status}
    plan = decide(body, Observed(children, scrape=Scrape((load(3, 1),), 0.0)), NOW, SETTINGS)
    assert plan.apply == ()  # the HPA's count stays
    assert plan.status is not None and plan.status["desiredReplicas"] == 2
    assert plan.report is not None and plan.report.budget_limited is None
    assert plan.report.direction == 0


def test_none_mode_clamps_desired_to_the_budget() -> None:
    m = manifest(budget=round(L4 * 2.5, 2), mode="none")
    m["spec"]["replicas"] = {"min": 1, "max": 4, "desired": 3}
    plan = decide(m, Observed(), NOW, SETTINGS)
    deployment = next(o for o in plan.apply if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert plan.status is not None
    assert conditions(plan.status)["BudgetLimited"] == ("True", "BudgetExceeded")
    assert conditions(plan.status)["ScalingLimited"] == ("False", "WithinRange")


def test_summarize_pod_reads_the_scrape_address() -> None:
    pod = summarize_pod(
        {
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {"name": "sidecar", "ports": [{"name": "http", "containerPort": 9000}]},
                    {"name": "llm-server", "ports": [{"name": "http", "containerPort": 8000}]},
                ]
            },
            "status": {"podIP": "10.0.0.7", "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )
    assert (pod.ip, pod.port, pod.ready, pod.starting) == ("10.0.0.7", 8000, True, False)
    bare = summarize_pod({"metadata": {"name": "q"}})
    assert (bare.ip, bare.port, bare.starting) == (None, None, True)


def test_leaving_keda_mode_deletes_the_scaled_object() -> None:
    m = manifest(mode="keda")
    first = decide(m, Observed(), NOW, SETTINGS)
    children = {(c.kind, c.name): c for c in map(summarize_child, first.apply)}
    plan = decide({**manifest(), "status": first.status}, Observed(children), NOW, SETTINGS)
    assert [(c.kind, c.name) for c in plan.delete] == [("ScaledObject", "chat")]
    deployment = next(o for o in plan.apply if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 1  # the operator owns the count again
