"""Scale from zero (issue 22): the gateway's demand stamp, the replica floor it gives, no
scale-down while a pod loads, and the return to zero. Pure."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llm_operator.api.demand import (
    DEMAND_ANNOTATION,
    DEMAND_REFRESH_SECONDS,
    demand_stamp,
    parse_demand_stamp,
)
from llm_operator.api.resource import LLMDeployment
from llm_operator.autoscale.policy import PolicyConfig, PolicyState, decide
from llm_operator.autoscale.signals import DeploymentSignals, PodSignals
from llm_operator.plan import Observed, Plan, PodSummary, ReconcileSettings
from llm_operator.plan import decide as plan_decide
from llm_operator.plan.observed import ScalingMemory, Scrape, summarize_child
from llm_operator.render import RenderSettings
from llm_operator.replicas import MIN_DEMAND_SECONDS, demand_floor, replica_target

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SETTINGS = ReconcileSettings()
MANIFEST: dict[str, Any] = {
    "apiVersion": "inference.llmops.dev/v1alpha1",
    "kind": "LLMDeployment",
    "metadata": {"name": "chat", "namespace": "ns", "uid": "u-1", "generation": 1},
    "spec": {
        "model": {"uri": "hf://org/model", "parameterCount": "8B", "servedName": "chat-8b"},
        "optimization": {"quantization": "int8"},
        "accelerator": {"type": "L4"},
        "replicas": {"min": 0, "max": 2},
        "autoscaling": {"scaleUpStabilizationSeconds": 30, "scaleDownStabilizationSeconds": 60},
    },
}


def spec(**autoscaling: Any) -> Any:
    body = copy.deepcopy(MANIFEST)
    body["spec"]["autoscaling"].update(autoscaling)
    return LLMDeployment.model_validate(body).spec


# --- the stamp -------------------------------------------------------------------------------


def test_demand_stamp_round_trips_at_second_precision_in_utc() -> None:
    moment = datetime(2026, 3, 4, 13, 5, 6, 789000, tzinfo=UTC)
    assert demand_stamp(moment) == "2026-03-04T13:05:06Z"
    assert parse_demand_stamp(demand_stamp(moment)) == moment.replace(microsecond=0)
    # another zone is written as UTC
    east = moment.astimezone(tz=__import__("datetime").timezone(timedelta(hours=2)))
    assert demand_stamp(east) == "2026-03-04T13:05:06Z"


@pytest.mark.parametrize(
    "value", [None, "", "yesterday", "2026-03-04 13:05:06", "2026-13-01T00:00:00Z"]
)
def test_an_absent_or_unreadable_stamp_is_no_demand(value: str | None) -> None:
    assert parse_demand_stamp(value) is None


# --- the floor -------------------------------------------------------------------------------


def test_a_stamp_newer_than_the_scale_down_window_asks_for_one_replica() -> None:
    s = spec()
    assert demand_floor(s, None, NOW) == 0
    assert demand_floor(s, NOW, NOW) == 1
    assert demand_floor(s, NOW - timedelta(seconds=59), NOW) == 1
    assert demand_floor(s, NOW - timedelta(seconds=60), NOW) == 0
    # clock skew between the gateway and the operator: a little ahead still counts ...
    assert demand_floor(s, NOW + timedelta(seconds=30), NOW) == 1
    # ... a hand-edited stamp in the far future does not pin a replica until then
    assert demand_floor(s, NOW + timedelta(days=365), NOW) == 0


def test_a_short_window_still_covers_the_gateways_refresh_interval() -> None:
    s = spec(scaleDownStabilizationSeconds=0)
    assert MIN_DEMAND_SECONDS > DEMAND_REFRESH_SECONDS
    assert demand_floor(s, NOW - timedelta(seconds=DEMAND_REFRESH_SECONDS), NOW) == 1
    assert demand_floor(s, NOW - timedelta(seconds=MIN_DEMAND_SECONDS), NOW) == 0


@pytest.mark.parametrize("mode", ["none", "keda"])
def test_only_the_builtin_autoscaler_scales_on_demand(mode: str) -> None:
    body = copy.deepcopy(MANIFEST)
    body["spec"]["replicas"]["min"] = 1  # keda needs min >= 1
    body["spec"]["autoscaling"]["mode"] = mode
    assert demand_floor(LLMDeployment.model_validate(body).spec, NOW, NOW) == 0


def test_the_floor_raises_the_target_at_once_and_the_budget_still_wins() -> None:
    s = spec()
    assert replica_target(s, 1.0, last_decision=0) == 0
    assert replica_target(s, 1.0, last_decision=0, floor=1) == 1
    assert replica_target(s, 1.0, last_decision=2, floor=1) == 2  # a floor, not a target
    assert replica_target(spec(budget={"maxDollarsPerHour": 0.5}), 1.0, 0, floor=1) == 0


# --- the policy: loading pods, the floor's reason ------------------------------------------


def _policy(current: int, ready: int, **signals: Any) -> Any:
    config = PolicyConfig(
        min_replicas=0, max_replicas=4, scale_up_stabilization_s=0, scale_down_stabilization_s=0
    )
    pods = tuple(PodSignals(f"p{i}") for i in range(ready))
    return decide(
        DeploymentSignals(current_replicas=current, ready=pods, **signals), config, PolicyState(), 0
    )


def test_no_scale_down_while_a_pod_loads_its_weights() -> None:
    decision = _policy(current=2, ready=1, starting=1, loading=1)
    assert decision.desired == 2
    assert decision.limit == "starting"
    assert "1 pod(s) loading: no scale-down until they are ready" in decision.reason


def test_a_pod_the_scheduler_refused_does_not_hold_scale_down() -> None:
    decision = _policy(current=2, ready=1, starting=1, loading=0)
    assert decision.desired == 1  # idle: one step down (50 %), the unplaced pod goes first


def test_a_floor_from_held_requests_says_so() -> None:
    config = PolicyConfig.from_spec(spec(scaleDownStabilizationSeconds=0), 1.0, floor=1)
    assert config.min_replicas == 1 and config.demand_held
    signals = DeploymentSignals(current_replicas=1, ready=(PodSignals("p0"),))
    decision = decide(signals, config, PolicyState(), 0)
    assert decision.desired == 1 and decision.limit == "min"
    assert "the gateway held requests recently" in decision.reason
    assert not PolicyConfig.from_spec(spec(), 1.0).demand_held


def test_pod_loading_means_scheduled_and_not_ready() -> None:
    assert PodSummary("p", "primary").loading
    assert not PodSummary("p", "primary", ready=True).loading
    assert not PodSummary("p", "primary", deleting=True).loading
    assert not PodSummary("p", "primary", unschedulable_since=NOW).loading


# --- the whole cycle through decide() -------------------------------------------------------


class Cycle:
    """The operator's loop in miniature for one min-0 LLMDeployment."""

    def __init__(self) -> None:
        self.manifest = copy.deepcopy(MANIFEST)
        self.status: dict[str, Any] = {}
        self.children: dict[tuple[str, str], Any] = {}
        self.memory = ScalingMemory()
        self.pods: tuple[PodSummary, ...] = ()
        self.plan = self.tick(0)

    def stamp(self, seconds: float) -> None:
        annotations = self.manifest["metadata"].setdefault("annotations", {})
        annotations[DEMAND_ANNOTATION] = demand_stamp(NOW + timedelta(seconds=seconds))

    def tick(self, seconds: float) -> Plan:
        ready = tuple(PodSignals(p.name) for p in self.pods if p.ready)
        observed = Observed(
            self.children,
            self.pods,
            scrape=Scrape(ready, seconds) if ready else None,
            memory=self.memory,
        )
        body = {**copy.deepcopy(self.manifest), "status": self.status}
        plan = plan_decide(body, observed, NOW + timedelta(seconds=seconds), SETTINGS)
        assert plan.error is None, plan.error
        for child in map(summarize_child, plan.apply):
            self.children[(child.kind, child.name)] = child
        self.status = plan.status if plan.status is not None else self.status
        self.memory = plan.memory if plan.memory is not None else self.memory
        self.plan = plan
        return plan

    @property
    def replicas(self) -> int:
        return int(self.status["desiredReplicas"])

    def applied_replicas(self) -> int | None:
        deployment = [o for o in self.plan.apply if o["kind"] == "Deployment"]
        return deployment[0]["spec"]["replicas"] if deployment else None


def test_zero_until_a_stamp_then_one_at_once_then_back_to_zero_after_the_window() -> None:
    cycle = Cycle()
    assert cycle.applied_replicas() == 0
    ready = {c["type"]: c for c in cycle.status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "ScaledToZero")
    for t in (10, 100, 1000):  # idle, no stamp: stays at zero
        cycle.tick(t)
        assert cycle.replicas == 0

    cycle.stamp(1000)  # the gateway holds a request
    plan = cycle.tick(1001)
    assert cycle.applied_replicas() == 1  # no 30 s scale-up window from zero
    assert cycle.status["lastScaling"]["from"] == 0 and cycle.status["lastScaling"]["to"] == 1
    assert "the gateway holds requests" in cycle.status["lastScaling"]["reason"]
    assert [e.reason for e in plan.events if e.reason.startswith("Scaled")] == ["ScaledUp"]

    # The pod loads for longer than the window; the gateway gave up on its request and stopped
    # stamping. The loading pod is not removed.
    cycle.pods = (PodSummary("p0", "primary", "Running"),)
    for t in (1030, 1100, 1300):
        cycle.tick(t)
        assert cycle.replicas == 1

    cycle.pods = (PodSummary("p0", "primary", "Running", ready=True),)
    cycle.tick(1310)  # first scrape: the count just reached is a recommendation of its own
    cycle.tick(1340)
    assert cycle.replicas == 1  # idle, but inside the scale-down window
    cycle.tick(1371)
    assert cycle.replicas == 0
    assert cycle.status["lastScaling"]["reason"].startswith("scale down 1->0")


def test_a_fresh_stamp_keeps_an_idle_ready_replica() -> None:
    cycle = Cycle()
    cycle.stamp(0)
    cycle.tick(1)
    cycle.pods = (PodSummary("p0", "primary", "Running", ready=True),)
    for t in (10, 40, 70, 100):  # the gateway keeps stamping: requests keep arriving at zero
        cycle.stamp(t - 1)
        cycle.tick(t)
        assert cycle.replicas == 1
    cycle.tick(100 + 61)  # stamp 99 expired and the window saw no load
    assert cycle.replicas == 0


def test_status_names_the_model_to_send_and_the_gateway_url_when_set() -> None:
    plan = plan_decide(MANIFEST, Observed(), NOW, SETTINGS)
    assert plan.status is not None
    assert plan.status["servedModel"] == "chat-8b"
    assert "gatewayEndpoint" not in plan.status
    gateway = ReconcileSettings(gateway_url="http://llmops-gateway.llmops.svc:8080/v1")
    status = plan_decide(MANIFEST, Observed(), NOW, gateway).status
    assert status is not None
    assert status["gatewayEndpoint"] == "http://llmops-gateway.llmops.svc:8080/v1"


@pytest.mark.parametrize(("loading_for", "replicas"), [(100, 2), (700, 1)])
def test_a_loading_pod_is_kept_within_its_startup_budget(loading_for: int, replicas: int) -> None:
    """1 ready idle pod + 1 loading: no scale-down while the loading pod is within the startup
    probe's budget (600 s here); past it (a stuck pod the kubelet restarts anyway) it goes."""
    body = copy.deepcopy(MANIFEST)
    body["spec"]["autoscaling"]["scaleDownStabilizationSeconds"] = 0
    body["status"] = {"desiredReplicas": 2}
    pods = (
        PodSummary("a", "primary", "Running", ready=True),
        PodSummary("b", "primary", "Running", created=NOW - timedelta(seconds=loading_for)),
    )
    scrape = Scrape((PodSignals("a"),), 1.0)
    settings = ReconcileSettings(render=RenderSettings(startup_timeout_seconds=600))
    plan = plan_decide(body, Observed({}, pods, scrape=scrape), NOW, settings)
    assert plan.desired_replicas == replicas  # the same decision, but for the pod's age
