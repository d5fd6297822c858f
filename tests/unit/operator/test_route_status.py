"""An LLMRoute's status, computed purely (route_status.py), and the last hour of the gateway's
route counters (state/route_counters.py, state/route_window.py): parsing the gateway's page,
the hour window's increase (resets, new routes, several pods, ageing out), and the flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llm_operator.api.route import LastHour, LLMRoute
from llm_operator.route_status import DeploymentView, route_status, status_patch
from llm_operator.settings import config_from_args, parser
from llm_operator.state.route_counters import RouteCounters, gateway_pod_urls, route_counters
from llm_operator.state.route_window import RouteWindow

NOW = datetime(2026, 12, 3, 22, 0, tzinfo=UTC)
KEY = ("chat", "assistant")


def _route(**spec: Any) -> LLMRoute:
    return LLMRoute.from_manifest(
        {"metadata": {"name": "assistant", "namespace": "chat", "generation": 3},
         "spec": {"model": "assistant", **spec}}
    )  # fmt: skip


def _llmd(name: str, ready: int = 0, price: float | None = None, limited: bool = False,
          served: str | None = None) -> dict[str, Any]:  # fmt: skip
    status: dict[str, Any] = {"readyReplicas": ready, "servedModel": served or name}
    if price is not None:
        status["cost"] = {"dollarsPerMillionTokens": price}
    if limited:
        status["conditions"] = [{"type": "BudgetLimited", "status": "True"}]
    return {"metadata": {"name": name}, "spec": {}, "status": status}


def _views(*bodies: dict[str, Any]) -> dict[str, DeploymentView]:
    return {b["metadata"]["name"]: DeploymentView.from_manifest(b) for b in bodies}


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


CANARY = {"targets": [{"deployment": "int4", "weight": 90}, {"deployment": "canary", "weight": 10}],
          "fallback": ["large"]}  # fmt: skip


def test_targets_report_each_deployment_with_its_role_readiness_and_price() -> None:
    views = _views(_llmd("int4", 2, 0.05), _llmd("canary", 0, 0.06, limited=True),
                   _llmd("large", 1, 0.4))  # fmt: skip
    status = route_status(_route(**CANARY), views, None, None, NOW)
    assert status["targets"] == [
        {"deployment": "int4", "role": "target", "exists": True, "ready": True,
         "readyReplicas": 2, "budgetLimited": False, "dollarsPerMillionTokens": 0.05},
        {"deployment": "canary", "role": "target", "exists": True, "ready": False,
         "readyReplicas": 0, "budgetLimited": True, "dollarsPerMillionTokens": 0.06},
        {"deployment": "large", "role": "fallback", "exists": True, "ready": True,
         "readyReplicas": 1, "budgetLimited": False, "dollarsPerMillionTokens": 0.4},
    ]  # fmt: skip
    ready = _conditions(status)["Ready"]
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == (
        "True", "TargetsReady", 3,
    )  # fmt: skip
    assert status["observedGeneration"] == 3 and "lastHour" not in status


def test_cascade_steps_and_not_ready_reasons() -> None:
    route = _route(cascade={"steps": ["small", "big"]})
    missing = route_status(route, _views(_llmd("small", 1)), None, None, NOW)
    assert [t["role"] for t in missing["targets"]] == ["step", "step"]
    big = {"deployment": "big", "role": "step", "exists": False, "ready": False,
           "readyReplicas": 0, "budgetLimited": False}  # fmt: skip
    assert missing["targets"][1] == big
    ready = _conditions(missing)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "MissingDeployments")
    assert "big" in ready["message"]
    asleep = route_status(route, _views(_llmd("small"), _llmd("big")), None, None, NOW)
    assert _conditions(asleep)["Ready"]["reason"] == "NoReadyReplicas"


def test_shadows_a_served_model_of_the_namespace() -> None:
    route = _route(targets=[{"deployment": "int4"}])
    plain = route_status(route, _views(_llmd("int4", 1)), None, None, NOW)
    assert _conditions(plain)["ShadowsModel"]["status"] == "False"
    views = _views(_llmd("int4", 1), _llmd("old-chat", 1, served="assistant"))
    shadow = _conditions(route_status(route, views, None, None, NOW))["ShadowsModel"]
    assert (shadow["status"], shadow["reason"]) == ("True", "ServedModelShadowed")
    assert "old-chat" in shadow["message"]


def test_served_name_from_the_spec_when_status_has_none_yet() -> None:
    body = {"metadata": {"name": "x"}, "spec": {"model": {"servedName": "assistant"}}}
    assert DeploymentView.from_manifest(body) == DeploymentView("x", "assistant", 0, False, None)


def test_transition_time_kept_while_a_condition_holds_and_moved_when_it_flips() -> None:
    route = _route(targets=[{"deployment": "int4"}])
    first = route_status(route, _views(_llmd("int4", 1)), None, None, NOW)
    later = NOW + timedelta(minutes=5)
    same = route_status(route, _views(_llmd("int4", 2)), None, first, later)
    assert _conditions(same)["Ready"]["lastTransitionTime"] == "2026-12-03T22:00:00Z"
    flipped = route_status(route, _views(_llmd("int4", 0)), None, same, later)
    assert _conditions(flipped)["Ready"]["lastTransitionTime"] == "2026-12-03T22:05:00Z"


def test_status_patch_only_on_change_and_removes_what_is_gone() -> None:
    route = _route(targets=[{"deployment": "int4"}])
    hour = LastHour(requests=10, escalation_rate=0.2, dollars=0.5, direct_dollars=1.0,
                    window_seconds=3540)  # fmt: skip
    with_hour = route_status(route, _views(_llmd("int4", 1)), hour, None, NOW)
    assert with_hour["lastHour"] == {"requests": 10, "escalationRate": 0.2, "dollars": 0.5,
                                     "directDollars": 1.0, "windowSeconds": 3540}  # fmt: skip
    assert status_patch(with_hour, dict(with_hour)) is None
    without = route_status(route, _views(_llmd("int4", 1)), None, with_hour, NOW)
    patch = status_patch(with_hour, without)
    assert patch is not None and patch["lastHour"] is None
    assert status_patch(None, without) == without


PAGE = """\
# HELP llm_gateway_route_requests_total Attempts per route target and outcome
# TYPE llm_gateway_route_requests_total counter
llm_gateway_route_requests_total{namespace="chat",outcome="served",route="assistant",target="int4"} 7.0
llm_gateway_route_requests_total{namespace="chat",outcome="escalated",route="assistant",target="int4"} 3.0
llm_gateway_route_requests_total{namespace="chat",outcome="served",route="assistant",target="fp32"} 3.0
llm_gateway_route_requests_total{namespace="chat",outcome="failed",route="assistant",target="fp32"} 1.0
llm_gateway_route_requests_total{namespace="chat",outcome="fallback",route="assistant",target="x"} 2.0
llm_gateway_route_requests_total_created{namespace="chat",outcome="served",route="assistant",target="int4"} 1.7e9
llm_gateway_cascade_escalations_total{gate="logprob",namespace="chat",route="assistant",step="int4"} 2.0
llm_gateway_cascade_escalations_total{gate="pattern",namespace="chat",route="assistant",step="int4"} 1.0
llm_gateway_route_dollars_total{namespace="chat",route="assistant"} 0.25
llm_gateway_route_direct_dollars_total{namespace="chat",route="assistant"} 1.5
llm_gateway_route_dollars_total{namespace="other",route="we \\"quote\\", {braces}"} 0.5
llm_gateway_requests_total{model="chat",pod="p",picked_by="load"} 99.0
"""  # noqa: E501


def test_route_counters_from_a_gateway_page() -> None:
    counters = route_counters(PAGE)
    assert counters[KEY] == RouteCounters(requests=11, escalations=3, dollars=0.25,
                                          direct_dollars=1.5)  # fmt: skip
    assert counters[("other", 'we "quote", {braces}')] == RouteCounters(dollars=0.5)
    assert set(counters) == {KEY, ("other", 'we "quote", {braces}')}
    assert route_counters("not a metrics page\n{{{") == {}


def _c(requests: float, escalations: float = 0, dollars: float = 0) -> dict[Any, RouteCounters]:
    return {KEY: RouteCounters(requests, escalations, dollars, dollars * 2)}


def test_window_increase_over_pods_with_a_restart_and_a_new_route() -> None:
    window = RouteWindow()
    assert window.last_hour(KEY, 0) is None  # nothing scraped
    window.add(0, {"gw-a": _c(100, 10, 1.0), "gw-b": {}})
    assert window.last_hour(KEY, 0) is None  # one scrape: a baseline only
    window.add(60, {"gw-a": _c(110, 12, 1.5), "gw-b": _c(5, 1, 0.1)})  # b: the route is new
    window.add(120, {"gw-a": _c(4, 0, 0.2), "gw-b": _c(9, 1, 0.3)})  # a restarted
    hour = window.last_hour(KEY, 120)
    assert hour == LastHour(requests=10 + 4 + 5 + 4, escalation_rate=round((2 + 0 + 1) / 23, 4),
                            dollars=0.5 + 0.2 + 0.1 + 0.2, direct_dollars=2.0,
                            window_seconds=120)  # fmt: skip
    assert window.last_hour(("chat", "unknown"), 120) == LastHour(
        requests=0, escalation_rate=None, dollars=0, direct_dollars=0, window_seconds=120
    )


def test_window_forgets_samples_older_than_the_hour() -> None:
    window = RouteWindow(horizon_seconds=3600)
    window.add(0, {"gw": _c(0)})
    window.add(1800, {"gw": _c(50)})
    window.add(3600, {"gw": _c(60)})
    window.add(3660, {"gw": _c(70)})  # the sample at 0 ages out: 50 -> 70 remains
    assert window.last_hour(KEY, 3660) == LastHour(
        requests=20, escalation_rate=0.0, dollars=0, direct_dollars=0, window_seconds=1860
    )
    window.add(9000, {"old-gone": _c(1)})  # gw's samples all age out: it is dropped
    assert set(window.samples) == {"old-gone"}


def test_a_pod_that_misses_a_scrape_is_diffed_against_its_last_answer() -> None:
    window = RouteWindow()
    window.add(0, {"gw": _c(10)})
    window.add(60, {})  # timed out
    window.add(120, {"gw": _c(16)})
    hour = window.last_hour(KEY, 120)
    assert hour is not None and hour.requests == 6


def test_gateway_pod_urls_from_endpoint_slices() -> None:
    slices = [
        {"ports": [{"name": "http", "port": 8080}], "endpoints": [
            {"addresses": ["10.0.0.1"], "conditions": {"ready": True},
             "targetRef": {"kind": "Pod", "name": "gw-1"}},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": False},
             "targetRef": {"name": "gw-2"}},
            {"addresses": ["10.0.0.3"], "conditions": {"ready": True, "terminating": True},
             "targetRef": {"name": "gw-3"}},
            {"addresses": ["fd00::4"], "conditions": {}, "targetRef": {"name": "gw-4"}},
        ]},
        {"ports": [{"name": "other", "port": 1}, {"name": "x", "port": 2}],
         "endpoints": [{"addresses": ["10.0.0.9"]}]},  # no http port: skipped
    ]  # fmt: skip
    assert gateway_pod_urls(slices) == {
        "gw-1": "http://10.0.0.1:8080/metrics",
        "gw-4": "http://[fd00::4]:8080/metrics",
    }


def test_gateway_service_flag() -> None:
    base = ["-n", "chat"]
    config = config_from_args(parser().parse_args([*base, "--gateway-service", "ops/llm-gw"]))
    assert config.gateway_service == ("ops", "llm-gw") and config.gateway_scrape_seconds == 60
    assert config_from_args(parser().parse_args(base)).gateway_service is None
    for bad in ("llm-gw", "ops/", "Ops/gw", "ops/gw/x"):
        with pytest.raises(SystemExit):
            config_from_args(parser().parse_args([*base, "--gateway-service", bad]))
    with pytest.raises(SystemExit):
        config_from_args(parser().parse_args([*base, "--gateway-scrape-seconds", "0"]))
