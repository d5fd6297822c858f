"""A routed request: try the route's deployments in order (split or cascade, then fallbacks).

A deployment is passed over (outcome `fallback`) when it is missing, BudgetLimited or has no
serving replica; a sent attempt falls back on a connection error, a 5xx or a 429 that came
before the first byte reached the client. A cascade step's answer is read whole and escalates
to the next step when it fails the gate. When no deployment can serve at all, the request is
held for the first one that exists (scale from zero), as a plain model's request is.

Tenants are admitted once per request under the route's public model name; what the request
used (every attempt's tokens, each at its target's price) settles on the ticket. A tenant whose
budget is spent is served by the route's $0 deployments, if it has any (`tenant_budget`
passes over the others), instead of 429.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from aiohttp import web

from llm_gateway.cascade import (
    ClientAsked,
    client_answer,
    client_asked,
    sse_events,
    step_body,
    with_model,
)
from llm_gateway.directory import Directory, ModelTarget
from llm_gateway.errors import error_response
from llm_gateway.gates import failing_gate
from llm_gateway.holding import Holder, HoldRejected, HoldTimedOut, ModelGone
from llm_gateway.metrics import GatewayMetrics, RouteOutcome
from llm_gateway.picker import request_key
from llm_gateway.proxy import Proxy
from llm_gateway.request_key import RoutingFields
from llm_gateway.routes import Candidate, Route, body_seed, free_only, plan
from llm_gateway.tenancy import TICKET, Tenancy, Ticket
from llm_gateway.tenants import Tenant
from llm_gateway.usage import BodyUsage, Usage, usage_of


def falls_back(status: int) -> bool:
    return status == 429 or status >= 500


def _dollars(usage: Usage | None, price: float | None) -> float:
    return 0.0 if usage is None or price is None else usage.total * price / 1e6


@dataclasses.dataclass
class _Spend:
    """Every attempt's tokens and dollars: what the tenant and the route are charged."""

    prompt: int = 0
    completion: int = 0
    dollars: float = 0.0
    priced: bool = False

    def add(self, usage: Usage | None, price: float | None) -> None:
        if usage is not None:
            self.prompt += usage.prompt_tokens
            self.completion += usage.completion_tokens
            self.dollars += _dollars(usage, price)
            self.priced = self.priced or price is not None

    def settle_on(self, ticket: Ticket) -> Ticket:
        """The ticket charging all of it: the tokens, at their blended price."""
        observer = BodyUsage()
        total = self.prompt + self.completion
        if total:
            observer.usage = Usage(self.prompt, self.completion)
        price = self.dollars * 1e6 / total if total and self.priced else None
        return dataclasses.replace(ticket, observer=observer, dollars_per_million_tokens=price)


class RoutePath:
    def __init__(
        self,
        directory: Directory,
        metrics: GatewayMetrics,
        tenancy: Tenancy,
        holder: Holder,
        proxy: Proxy,
    ) -> None:
        self._directory, self._metrics, self._tenancy = directory, metrics, tenancy
        self._holder, self._proxy = holder, proxy

    async def serve(
        self,
        request: web.Request,
        route: Route,
        tenant: Tenant | None,
        body: bytes,
        fields: RoutingFields,
        parse_seconds: float,
    ) -> web.StreamResponse:
        candidates = plan(route, body_seed(body), self._directory.deployment)
        # Admitted once, under the name the client called; priced per attempt below.
        public = ModelTarget(route.model, route.namespace, route.name, ())
        free = free_only(candidates)
        ticket = self._tenancy.admit(
            tenant, public, body, fields.stream and not route.is_cascade,
            free_fallback=any(c.skip in (None, "no_ready_replica") for c in free),
        )  # fmt: skip
        if isinstance(ticket, web.Response):
            return ticket  # 403, 429
        request[TICKET] = ticket
        if ticket.over_budget:
            candidates = free
        usable = [c for c in candidates if c.skip is None]
        if not usable:
            held, answer = await self._hold(route, candidates)
            # Each passed-over deployment is a fallback; a failed hold fails the request.
            for c in candidates:
                outcome: RouteOutcome = "failed" if c.deployment == held.deployment else "fallback"
                if c.deployment != held.deployment or answer is not None:
                    self._metrics.route_attempt(route.namespace, route.name, c.deployment, outcome)
            if answer is not None:
                return answer
            usable = [held]
        else:
            for c in candidates:
                if c.skip is not None:
                    self._metrics.route_attempt(
                        route.namespace, route.name, c.deployment, "fallback"
                    )
        serve = self._cascade if route.is_cascade else self._split
        return await serve(request, route, ticket, usable, candidates[0], fields, parse_seconds)

    def _price_of(self, route: Route, deployment: str) -> float | None:
        target = self._directory.deployment(route.namespace, deployment)
        return None if target is None else target.dollars_per_million_tokens

    async def _hold(
        self, route: Route, candidates: list[Candidate]
    ) -> tuple[Candidate, web.Response | None]:
        """Waits for the first existing, not BudgetLimited deployment to serve: that
        deployment, and None or the error that ends the request."""
        waiting = next(
            (
                c
                for c in candidates
                if c.target is not None and c.skip not in ("budget_limited", "tenant_budget")
            ),
            None,
        )
        if waiting is None or waiting.target is None:
            why = ", ".join(f"{c.deployment}: {c.skip}" for c in candidates)
            return candidates[-1], error_response(
                503, f"No deployment of route `{route.model}` can serve ({why}).",
                type="service_unavailable_error", code="no_route_target", retry_after_seconds=30,
            )  # fmt: skip
        try:
            target = await self._holder.wait_for_replica(waiting.target)
        except (HoldRejected, HoldTimedOut, ModelGone) as exc:
            return waiting, error_response(
                503, f"No deployment of route `{route.model}` became ready ({type(exc).__name__}).",
                type="service_unavailable_error", code="no_ready_replica", retry_after_seconds=30,
            )  # fmt: skip
        return Candidate(waiting.deployment, target, None), None

    async def _split(
        self,
        request: web.Request,
        route: Route,
        ticket: Ticket,
        usable: list[Candidate],
        picked: Candidate,
        fields: RoutingFields,
        parse_seconds: float,
    ) -> web.StreamResponse:
        parsed = json.loads(ticket.upstream_body)
        response: web.StreamResponse | None = None
        for i, c in enumerate(usable):
            assert c.target is not None
            last = i == len(usable) - 1
            response = await self._proxy.forward(
                request, with_model(parsed, c.target.model), c.target,
                request_key(c.target.model, fields.prefix), parse_seconds, ticket.observer,
                hold_back=None if last else falls_back, share=ticket.share,
                saturated_fallback=not last,
            )  # fmt: skip
            if not response.prepared and not last and falls_back(response.status):
                self._metrics.route_attempt(route.namespace, route.name, c.deployment, "fallback")
                continue
            outcome: RouteOutcome = "failed" if falls_back(response.status) else "served"
            self._metrics.route_attempt(route.namespace, route.name, c.deployment, outcome)
            price = c.target.dollars_per_million_tokens
            request[TICKET] = dataclasses.replace(ticket, dollars_per_million_tokens=price)
            usage = ticket.observer.usage
            direct = picked.target.dollars_per_million_tokens if picked.target else None
            self._metrics.route_spent(
                route.namespace, route.name, _dollars(usage, price), _dollars(usage, direct)
            )
            break
        assert response is not None
        return response

    async def _cascade(
        self,
        request: web.Request,
        route: Route,
        ticket: Ticket,
        usable: list[Candidate],
        picked: Candidate,
        fields: RoutingFields,
        parse_seconds: float,
    ) -> web.StreamResponse:
        gate, cascade = route.gate, route.spec.cascade
        assert gate is not None and cascade is not None
        parsed: dict[str, Any] = json.loads(ticket.upstream_body)
        asked = client_asked(parsed, chat=request.path.endswith("/chat/completions"))
        spend = _Spend()
        steps = set(cascade.steps)
        last_price = self._price_of(route, cascade.steps[-1])
        for i, c in enumerate(usable):
            assert c.target is not None
            later = usable[i + 1 :]
            escalates_to = any(n.deployment in steps for n in later) and c.deployment in steps
            response = await self._proxy.forward(
                request, step_body(parsed, c.target.model, asked, gate.needs_logprobs), c.target,
                request_key(c.target.model, fields.prefix), parse_seconds, None,
                hold_back=lambda _status: True, share=ticket.share,
            )  # fmt: skip
            answer = _json(response) if response.status == 200 else None
            price = c.target.dollars_per_million_tokens
            if answer is None:
                if falls_back(response.status) or response.status == 200:
                    outcome: RouteOutcome = "fallback" if later else "failed"
                    self._metrics.route_attempt(route.namespace, route.name, c.deployment, outcome)
                    if later:
                        continue
                else:  # the client's mistake (4xx): every step would say the same
                    self._metrics.route_attempt(route.namespace, route.name, c.deployment, "served")
                self._metrics.route_spent(route.namespace, route.name, spend.dollars, 0.0)
                request[TICKET] = spend.settle_on(ticket)
                return response
            usage = usage_of(answer)
            spend.add(usage, price)
            failed = failing_gate(gate, answer) if escalates_to else None
            if failed is not None:
                self._metrics.escalated(route.namespace, route.name, c.deployment, failed)
                self._metrics.route_attempt(route.namespace, route.name, c.deployment, "escalated")
                continue
            self._metrics.route_attempt(route.namespace, route.name, c.deployment, "served")
            self._metrics.route_spent(
                route.namespace, route.name, spend.dollars, _dollars(usage, last_price)
            )
            request[TICKET] = spend.settle_on(ticket)
            return _answer_response(client_answer(answer, asked), asked)
        raise AssertionError("the last step is served or failed")  # pragma: no cover


def _json(response: web.StreamResponse) -> dict[str, Any] | None:
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes):
        return None
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return answer if isinstance(answer, dict) else None


def _answer_response(answer: dict[str, Any], asked: ClientAsked) -> web.Response:
    if not asked.stream:
        return web.json_response(answer)
    return web.Response(
        body=sse_events(answer, asked),
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
    )
