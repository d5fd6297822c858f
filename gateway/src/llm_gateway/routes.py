"""Routes: a public model name → the LLMDeployments to try, in order. Pure.

A split picks one target by weight, seeded by a hash of the request's body, so a client's
retry of the same request lands on the same target while different requests spread by
weight (the affinity key would not do: requests sharing a system prompt share it). A cascade
tries its steps cheapest first. The route's fallback list follows either. Which of these are
usable right now (present, serving, not BudgetLimited) is decided per request from the
directory (`plan`); a tenant whose budget is spent may still use the route's free deployments
(`free_only`).
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from llm_gateway.directory import ModelTarget
from llm_gateway.gates import CompiledGate
from llm_operator.api.route import LLMRouteSpec, Target

SkipReason = Literal["missing", "no_ready_replica", "budget_limited", "tenant_budget"]


@dataclass(frozen=True)
class Route:
    """One LLMRoute as the gateway applies it."""

    namespace: str
    name: str
    spec: LLMRouteSpec
    gate: CompiledGate | None  # a cascade's gate, compiled once

    @classmethod
    def of(cls, namespace: str, name: str, spec: LLMRouteSpec) -> Route:
        gate = CompiledGate.of(spec.cascade.gate) if spec.cascade is not None else None
        return cls(namespace, name, spec, gate)

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def is_cascade(self) -> bool:
        return self.spec.cascade is not None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


class RouteLookup(Protocol):
    def get_route(self, model: str) -> Route | None: ...
    def routes(self) -> list[Route]: ...  # by public name


class RouteTable:
    """Routes by public model name. Two routes claiming one name: the first by
    (namespace, name) wins, so every gateway replica agrees; `collisions` lists the others."""

    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self._routes: dict[str, Route] = {}
        self.collisions: list[tuple[Route, Route]] = []  # (loser, winner)
        for route in sorted(routes, key=lambda r: r.key):
            winner = self._routes.setdefault(route.model, route)
            if winner is not route:
                self.collisions.append((route, winner))

    def get_route(self, model: str) -> Route | None:
        return self._routes.get(model)

    def routes(self) -> list[Route]:
        return sorted(self._routes.values(), key=lambda r: r.model)


def body_seed(body: bytes) -> int:
    """The split's seed: a hash every gateway replica and process agrees on."""
    return int.from_bytes(hashlib.blake2b(body, digest_size=8).digest(), "big")


def pick_weighted(targets: Sequence[Target], seed: int) -> str:
    """The deployment whose share of [0, total weight) holds seed mod total."""
    bounds = list(itertools.accumulate(t.weight for t in targets))
    return targets[bisect.bisect_right(bounds, seed % bounds[-1])].deployment


def attempt_order(spec: LLMRouteSpec, seed: int) -> tuple[str, ...]:
    """Deployments in the order a request tries them: the picked target (split) or every
    step (cascade), then the fallbacks."""
    if spec.cascade is not None:
        return (*spec.cascade.steps, *spec.fallback)
    return (pick_weighted(spec.targets, seed), *spec.fallback)


@dataclass(frozen=True)
class Candidate:
    deployment: str
    target: ModelTarget | None
    skip: SkipReason | None  # why it is passed over without being sent to; None: try it


def candidate(deployment: str, target: ModelTarget | None) -> Candidate:
    if target is None:
        return Candidate(deployment, None, "missing")
    if target.budget_limited:
        return Candidate(deployment, target, "budget_limited")
    if not target.serving():
        return Candidate(deployment, target, "no_ready_replica")
    return Candidate(deployment, target, None)


TargetFinder = Callable[[str, str], "ModelTarget | None"]  # (namespace, deployment) -> target


def plan(route: Route, seed: int, find: TargetFinder) -> list[Candidate]:
    """The route's deployments in attempt order, each with its target now and whether to skip
    it."""
    return [candidate(d, find(route.namespace, d)) for d in attempt_order(route.spec, seed)]


def free_only(candidates: list[Candidate]) -> list[Candidate]:
    """For a tenant whose budget is spent: only deployments priced at $0 stay usable (a
    self-hosted CPU pool, say); the priced ones are passed over as `tenant_budget`. Unpriced
    ones too: their price is not known yet, not known to be zero."""
    return [
        c
        if c.skip in ("missing", "budget_limited")
        or (c.target is not None and c.target.dollars_per_million_tokens == 0)
        else dataclasses.replace(c, skip="tenant_budget")
        for c in candidates
    ]


def direct_price(route: Route, picked: str) -> str:
    """The deployment whose price a direct call would have paid: the cascade's last step, or
    the split's picked target."""
    if route.spec.cascade is not None:
        return route.spec.cascade.steps[-1]
    return picked
