"""Routes, pure: the weighted split, the attempt order, what is skipped, name collisions."""

from __future__ import annotations

import collections
from typing import Any

from llm_gateway.directory import ModelTarget, Replica, StaticDirectory, deployment_index
from llm_gateway.routes import (
    Route,
    RouteTable,
    attempt_order,
    body_seed,
    pick_weighted,
    plan,
)
from llm_operator.api.route import LLMRouteSpec, Target

READY = (Replica("p", "http://127.0.0.1:1", ready=True, terminating=False),)


def spec(**fields: Any) -> LLMRouteSpec:
    return LLMRouteSpec.model_validate({"model": "assistant", **fields})


def test_split_proportions_follow_the_weights() -> None:
    targets = [Target(deployment="int4", weight=90), Target(deployment="canary", weight=10)]
    seeds = [body_seed(f'{{"model":"assistant","prompt":"q{i}"}}'.encode()) for i in range(4000)]
    counts = collections.Counter(pick_weighted(targets, s) for s in seeds)
    assert counts.keys() == {"int4", "canary"}
    assert 0.07 < counts["canary"] / len(seeds) < 0.13  # 10 %, within a few standard errors


def test_the_same_request_picks_the_same_target() -> None:
    targets = [Target(deployment=f"t{i}", weight=1) for i in range(5)]
    body = b'{"model":"assistant","prompt":"same"}'
    assert len({pick_weighted(targets, body_seed(body)) for _ in range(20)}) == 1
    # Weight bounds: seed 0..89 -> int4, 90..99 -> canary.
    split = [Target(deployment="int4", weight=90), Target(deployment="canary", weight=10)]
    assert [pick_weighted(split, s) for s in (0, 89, 90, 99, 100)] == [
        "int4", "int4", "canary", "canary", "int4",
    ]  # fmt: skip


def test_attempt_order() -> None:
    split = spec(targets=[{"deployment": "a", "weight": 1}], fallback=["b", "c"])
    assert attempt_order(split, 7) == ("a", "b", "c")
    cascade = spec(cascade={"steps": ["small", "large"]}, fallback=["backup"])
    assert attempt_order(cascade, 7) == ("small", "large", "backup")


def target(name: str, *, replicas: tuple[Replica, ...] = READY, **kw: Any) -> ModelTarget:
    return ModelTarget(f"{name}-model", "ns", name, replicas, **kw)


def test_plan_skips_missing_unready_and_budget_limited_targets() -> None:
    route = Route.of("ns", "r", spec(cascade={"steps": ["a", "b", "c"]}, fallback=["d"]))
    index = deployment_index(
        [target("a", budget_limited=True), target("b", replicas=()), target("d")]
    )
    found = plan(route, 0, lambda ns, name: index.get((ns, name)))
    assert [(c.deployment, c.skip) for c in found] == [
        ("a", "budget_limited"), ("b", "no_ready_replica"), ("c", "missing"), ("d", None),
    ]  # fmt: skip
    other_namespace = deployment_index([ModelTarget("a-model", "elsewhere", "a", READY)])
    found = plan(route, 0, lambda ns, name: other_namespace.get((ns, name)))
    assert found[0].skip == "missing"  # targets are in the route's own namespace


def test_a_directory_finds_route_targets_by_deployment_as_they_change() -> None:
    directory = StaticDirectory([target("a")])
    route = Route.of("ns", "r", spec(targets=[{"deployment": "a"}], fallback=["b"]))
    assert [c.skip for c in plan(route, 0, directory.deployment)] == [None, "missing"]
    directory.put(target("b"))
    directory.remove("a-model")
    assert [c.skip for c in plan(route, 0, directory.deployment)] == ["missing", None]


def test_two_routes_with_one_name_the_first_by_namespace_and_name_wins() -> None:
    one = spec(targets=[{"deployment": "a"}])
    table = RouteTable([Route.of("ns-b", "r", one), Route.of("ns-a", "z", one)])
    winner = table.get_route("assistant")
    assert winner is not None and winner.key == ("ns-a", "z")
    assert [(loser.key, won.key) for loser, won in table.collisions] == [
        (("ns-b", "r"), ("ns-a", "z"))
    ]
    assert table.get_route("other") is None
