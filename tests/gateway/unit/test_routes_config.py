"""Where routes come from: the --static-models file's long form, and KubeRoutes fed as its
watch feeds it (without an API server); BudgetLimited read from a deployment's status."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from llm_gateway.__main__ import main
from llm_gateway.kube_api import KubeApi
from llm_gateway.kube_routes import KubeRoutes
from llm_gateway.kube_targets import _budget_limited
from llm_gateway.static_models import StaticModelsError, parse_static_config

LONG = {
    "models": {
        "cheap": {"replicas": ["http://127.0.0.1:8001"], "dollarsPerMillionTokens": 0.05,
                  "capacityPerReplica": 4},
        "large": ["http://127.0.0.1:8002"],
    },
    "routes": [
        {"model": "assistant", "cascade": {"steps": ["cheap", "large"],
                                           "gate": {"minMeanTokenLogprob": -1.2}}},
        {"model": "large", "targets": [{"deployment": "cheap"}], "fallback": ["large"]},
    ],
}  # fmt: skip


def test_the_long_form_has_prices_and_routes() -> None:
    config = parse_static_config(LONG)
    prices = {t.model: t.dollars_per_million_tokens for t in config.targets}
    assert prices == {"cheap": 0.05, "large": None}
    capacities = {t.model: t.capacity_per_replica for t in config.targets}
    assert capacities == {"cheap": 4, "large": None}  # none given: no fair queue
    route = config.routes.get_route("assistant")
    assert route is not None and route.is_cascade and route.namespace == "static"
    assert route.gate is not None and route.gate.min_mean_token_logprob == -1.2
    shadowing = config.routes.get_route("large")  # a route may take a served name
    assert shadowing is not None and shadowing.spec.fallback == ["large"]
    short = parse_static_config({"tiny": ["http://127.0.0.1:8001"]})
    assert [t.model for t in short.targets] == ["tiny"] and short.routes.routes() == []


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({**LONG, "routes": [{"model": "a", "targets": [{"deployment": "nope"}]}]}, "no model"),
        ({**LONG, "routes": [{"model": "a"}]}, "exactly one of targets"),
        ({**LONG, "routes": [LONG["routes"][0]] * 2}, "two routes"),  # type: ignore[index]
        ({**LONG, "extra": 1}, "long form"),
        ({"models": {"m": {"replicas": [], "dollarsPerMillionTokens": -1}}}, "≥ 0"),
        ({"models": {"m": {"urls": []}}}, "unknown keys"),
        ({"models": {"m": {"replicas": [], "capacityPerReplica": 0}}}, "integer ≥ 1"),
        ({"models": {"m": {"replicas": [], "capacityPerReplica": True}}}, "integer ≥ 1"),
        ({"routes": []}, "long form"),
    ],
)
def test_bad_long_forms_say_why(document: Any, message: str) -> None:
    with pytest.raises(StaticModelsError, match=message):
        parse_static_config(document)


def test_cli_refuses_a_bad_route_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  m: [http://127.0.0.1:1]\nroutes:\n  - {model: a, targets: []}\n")
    assert main(["--static-models", str(path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def llmr(name: str, namespace: str = "team", generation: int = 1, **spec: Any) -> Any:
    spec = spec or {"model": "assistant", "targets": [{"deployment": "chat"}]}
    meta = {"name": name, "namespace": namespace, "generation": generation}
    return {"apiVersion": "inference.llmops.dev/v1alpha1", "kind": "LLMRoute",
            "metadata": meta, "spec": spec}  # fmt: skip


def view(*namespaces: str) -> KubeRoutes:
    return KubeRoutes(KubeApi.__new__(KubeApi), namespaces)  # never opened: fed by hand


def test_routes_follow_events_and_invalid_ones_are_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    routes = view("team")
    store = routes._stores["team"]
    assert not routes.synced()
    store.replace([llmr("r")])
    assert routes.synced()
    found = routes.get_route("assistant")
    assert found is not None and found.key == ("team", "r")
    bad = llmr("r", generation=2, model="assistant", targets=[{"deployment": "a", "weight": 0}])
    with caplog.at_level(logging.WARNING, logger="llm_gateway.kube_routes"):
        store.upsert(bad)
        store.upsert(bad)
    assert routes.get_route("assistant") is None
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 1
    store.upsert(llmr("r", generation=3))
    assert routes.get_route("assistant") is not None
    store.remove(llmr("r"))
    assert routes.get_route("assistant") is None


def test_two_routes_for_one_name_the_first_wins_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    routes = view()
    with caplog.at_level(logging.WARNING, logger="llm_gateway.kube_routes"):
        routes._stores[""].replace([llmr("z", "b"), llmr("a", "b")])
        routes._stores[""].upsert(llmr("a", "b", generation=2))
    found = routes.get_route("assistant")
    assert found is not None and found.key == ("b", "a")
    assert len([r for r in caplog.records if "both claim" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("conditions", "limited"),
    [
        ([{"type": "BudgetLimited", "status": "True"}], True),
        ([{"type": "BudgetLimited", "status": "False"}], False),
        ([{"type": "Ready", "status": "True"}], False),
        (None, False),
        ("garbage", False),
    ],
)
def test_budget_limited_is_read_from_the_status(conditions: Any, limited: bool) -> None:
    assert _budget_limited({"status": {"conditions": conditions}}) is limited
