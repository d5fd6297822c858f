"""Tenants on the request path: who calls (the API key), whether they may call this model and
are within their limits, and, once the answer has ended, what it used and cost.

With --require-tenant-key a request without a known key is refused (401); without it, such a
request is served as the anonymous tenant "" (no limits), counted under the model's namespace.
The Authorization header still goes upstream unchanged either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from llm_gateway.directory import ModelTarget
from llm_gateway.errors import error_response
from llm_gateway.fair_share import Share
from llm_gateway.limits import Limiter
from llm_gateway.metrics import GatewayMetrics, TenantLabels
from llm_gateway.tenants import Tenant, TenantLookup, bearer_key
from llm_gateway.usage import BodyUsage, StreamUsage, ask_for_usage, estimate_tokens

FORBIDDEN = 403
OVER_LIMIT = 429


@dataclass
class Ticket:
    """An admitted request: whose it is, and how to read and price its answer."""

    tenant: Tenant | None  # None: anonymous
    labels: TenantLabels
    dollars_per_million_tokens: float | None
    estimated_tokens: int
    upstream_body: bytes  # the body to send (a stream asks for usage)
    observer: BodyUsage | StreamUsage  # sees the relayed bytes; finds the usage
    share: Share  # its tenant's weight and priority in a saturated model's queue
    over_budget: bool = False  # admitted past a spent budget: only $0 deployments may serve


TICKET = web.RequestKey("tenant_ticket", Ticket)


class Tenancy:
    def __init__(
        self,
        lookup: TenantLookup | None,
        metrics: GatewayMetrics,
        require_key: bool,
        replicas: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lookup = lookup
        self._metrics = metrics
        self._require_key = require_key
        self.limiter = Limiter(replicas)
        self._clock = clock

    def identify(self, authorization: str | None) -> Tenant | web.Response | None:
        """The caller's tenant, None (anonymous), or the 401 to answer."""
        key = bearer_key(authorization)
        tenant = self._lookup.lookup(key) if key is not None and self._lookup else None
        if tenant is None and self._require_key:
            message = (
                "Incorrect API key provided."
                if key
                else "You didn't provide an API key (Authorization: Bearer <key>)."
            )
            return error_response(401, message, code="invalid_api_key")
        return tenant

    def admit(
        self,
        tenant: Tenant | None,
        target: ModelTarget,
        body: bytes,
        stream: bool,
        free_fallback: bool = False,
    ) -> Ticket | web.Response:
        """A ticket for the request, or the 403/429 to answer (counted here). With
        `free_fallback` (a route with a $0 deployment), a spent budget admits the request
        anyway, marked `over_budget`."""
        model = target.model
        if tenant is None:
            labels: TenantLabels = (target.namespace, "", model)
        else:
            labels = (tenant.namespace, tenant.name, model)
        estimate = estimate_tokens(body)
        if tenant is not None and not tenant.allows(model):
            self._metrics.tenant_request(labels, FORBIDDEN)
            return error_response(
                FORBIDDEN, f"The tenant `{tenant.namespace}/{tenant.name}` may not call model "
                f"`{model}`.", type="permission_error", code="model_not_allowed", param="model",
            )  # fmt: skip
        over_budget = False
        if tenant is not None:
            now = self._clock()
            rejection = self.limiter.admit(tenant, estimate, now)
            if rejection is not None and rejection.limit.startswith("budget") and free_fallback:
                rejection = self.limiter.admit(tenant, estimate, now, budget=False)
                over_budget = rejection is None
            if rejection is not None:
                self._metrics.tenant_rejected(labels, rejection.limit)
                self._metrics.tenant_request(labels, OVER_LIMIT)
                budget = rejection.limit.startswith("budget")
                return error_response(
                    OVER_LIMIT, rejection.message,
                    type="insufficient_quota" if budget else "rate_limit_error",
                    code=rejection.limit, retry_after_seconds=rejection.retry_after_seconds,
                )  # fmt: skip
        observer: BodyUsage | StreamUsage
        if stream:
            body, client_asked = ask_for_usage(body)
            observer = StreamUsage(client_asked)
        else:
            observer = BodyUsage()
        price = target.dollars_per_million_tokens
        share = Share(labels[:2]) if tenant is None else tenant.share
        return Ticket(tenant, labels, price, estimate, body, observer, share, over_budget)

    def settle(self, ticket: Ticket, code: int) -> None:
        """The response ended with `code`: count it, its tokens and dollars, and charge the
        tenant's limits with what it really used (the estimate stays when no usage came)."""
        self._metrics.tenant_request(ticket.labels, code)
        usage = ticket.observer.usage
        tokens, dollars = ticket.estimated_tokens, 0.0
        if usage is not None:
            tokens = usage.total
            price = ticket.dollars_per_million_tokens
            priced = None if price is None else tokens * price / 1e6
            self._metrics.tenant_usage(
                ticket.labels, usage.prompt_tokens, usage.completion_tokens, priced
            )
            dollars = priced or 0.0
        if ticket.tenant is not None:
            self.limiter.settle(
                ticket.tenant, ticket.estimated_tokens, tokens, dollars, self._clock()
            )
