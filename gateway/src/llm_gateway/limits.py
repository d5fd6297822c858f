"""Tenants' limits on one gateway replica: token buckets and period budgets. Pure.

Each replica enforces its share: every limit divided by `replicas` (the --replicas-hint), a
stateless, approximate split like Envoy's local rate limit; a client whose requests all land
on one replica gets that replica's share. Requests per minute and tokens per minute are token
buckets that hold a minute's worth and refill continuously. Tokens are charged up front with
the prompt's estimate and corrected with the answer's `usage` when it ends, so a bucket may go
into debt: the next requests wait until it is repaid. The budget compares this period's spend
(on this replica, since it started) with its share; the period is the UTC day or month.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from llm_gateway.tenants import Tenant

SECONDS_PER_MINUTE = 60.0


@dataclass(frozen=True)
class Rejection:
    limit: str  # requests_per_minute | tokens_per_minute | budget_day | budget_month
    retry_after_seconds: int
    message: str


class TokenBucket:
    """Holds up to `capacity`, refills `capacity` per minute; its level may go below zero."""

    def __init__(self, capacity: float, now: float) -> None:
        self.capacity = capacity
        self.level = capacity
        self._updated = now

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self.level = min(self.capacity, self.level + elapsed * self.capacity / SECONDS_PER_MINUTE)
        self._updated = max(now, self._updated)

    def resize(self, capacity: float, now: float) -> None:
        self._refill(now)
        self.capacity = capacity
        self.level = min(self.level, capacity)

    def wait_seconds(self, cost: float, now: float) -> float:
        """0 when `cost` can be taken now, else the seconds until it can. A cost above the
        capacity needs a full bucket, or it could never pass."""
        self._refill(now)
        needed = min(cost, self.capacity) - self.level
        return 0.0 if needed <= 0 else needed * SECONDS_PER_MINUTE / self.capacity

    def take(self, cost: float, now: float) -> None:
        self._refill(now)
        self.level -= cost


def period_start(now: datetime, period: str) -> datetime:
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.replace(day=1) if period == "month" else day


def next_period_start(start: datetime, period: str) -> datetime:
    if period == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return datetime.fromtimestamp(start.timestamp() + 86400, UTC)


def _retry_after(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class TenantLimits:
    """One tenant's buckets and spend on this replica."""

    def __init__(self, tenant: Tenant, replicas: int, now: float) -> None:
        self.tenant = tenant
        self.replicas = replicas
        self.requests = self._bucket(tenant.requests_per_minute, None, now)
        self.tokens = self._bucket(tenant.tokens_per_minute, None, now)
        self.spent_dollars = 0.0  # in the period [_period_from, _period_until) (epoch seconds)
        self._period_from = self._period_until = 0.0

    def _bucket(
        self, limit: int | None, bucket: TokenBucket | None, now: float
    ) -> TokenBucket | None:
        if limit is None:
            return None
        share = limit / self.replicas
        if bucket is None:
            return TokenBucket(share, now)
        bucket.resize(share, now)
        return bucket

    def update(self, tenant: Tenant, now: float) -> None:
        """The LLMTenant changed: keep what was used, apply the new limits."""
        if tenant is not self.tenant and tenant != self.tenant:
            if tenant.budget_period != self.tenant.budget_period:
                self._period_until = 0.0  # find the period again
            self.tenant = tenant
            self.requests = self._bucket(tenant.requests_per_minute, self.requests, now)
            self.tokens = self._bucket(tenant.tokens_per_minute, self.tokens, now)

    def _spent(self, now: float) -> float:
        """This period's spend; a new period starts from zero."""
        if not self._period_from <= now < self._period_until:
            period = self.tenant.budget_period
            start = period_start(datetime.fromtimestamp(now, UTC), period)
            if start.timestamp() != self._period_from:
                self.spent_dollars = 0.0
            self._period_from = start.timestamp()
            self._period_until = next_period_start(start, period).timestamp()
        return self.spent_dollars

    def _whose(self) -> tuple[str, str]:
        t, n = self.tenant, self.replicas
        return f"tenant `{t.namespace}/{t.name}`", f" (split over {n} gateway replicas)" * (n > 1)

    def check(self, estimated_tokens: int, now: float, budget: bool = True) -> Rejection | None:
        """Why the request may not pass now, or None; `budget=False` skips the budget (the
        request goes to a deployment that costs nothing)."""
        t = self.tenant
        spent = budget and t.budget_dollars is not None
        if spent and self._spent(now) >= (t.budget_dollars or 0) / self.replicas:
            where, split = self._whose()
            return Rejection(
                f"budget_{t.budget_period}",
                _retry_after(self._period_until - now),
                f"The {where} has spent its budget of ${t.budget_dollars:g} per "
                f"{t.budget_period}{split}; it renews at the start of the next UTC "
                f"{t.budget_period}.",
            )
        if self.requests is not None:
            wait = self.requests.wait_seconds(1, now)
            if wait > 0:
                limit, (where, split) = t.requests_per_minute, self._whose()
                return Rejection(
                    "requests_per_minute",
                    _retry_after(wait),
                    f"The {where} is over its limit of {limit} requests per minute{split}.",
                )
        if self.tokens is not None:
            wait = self.tokens.wait_seconds(estimated_tokens, now)
            if wait > 0:
                limit, (where, split) = t.tokens_per_minute, self._whose()
                return Rejection(
                    "tokens_per_minute",
                    _retry_after(wait),
                    f"The {where} is over its limit of {limit} tokens per minute{split}.",
                )
        return None

    def admit(self, estimated_tokens: int, now: float) -> None:
        if self.requests is not None:
            self.requests.take(1, now)
        if self.tokens is not None:
            self.tokens.take(estimated_tokens, now)

    def settle(self, estimated_tokens: int, tokens: int, dollars: float, now: float) -> None:
        """The answer ended: charge its real tokens instead of the estimate, and its dollars."""
        if self.tokens is not None:
            self.tokens.take(tokens - estimated_tokens, now)
        if dollars:
            self._spent(now)
            self.spent_dollars += dollars


class Limiter:
    """Every tenant's limits on this replica, made on first use and kept while it exists."""

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self._tenants: dict[tuple[str, str], TenantLimits] = {}

    def limits(self, tenant: Tenant, now: float) -> TenantLimits:
        found = self._tenants.get(tenant.key)
        if found is None:
            found = self._tenants[tenant.key] = TenantLimits(tenant, self.replicas, now)
        else:
            found.update(tenant, now)
        return found

    def admit(
        self, tenant: Tenant, estimated_tokens: int, now: float, budget: bool = True
    ) -> Rejection | None:
        """Take one request and the estimate from the tenant's buckets, or say why not."""
        limits = self.limits(tenant, now)
        rejection = limits.check(estimated_tokens, now, budget)
        if rejection is None:
            limits.admit(estimated_tokens, now)
        return rejection

    def settle(
        self, tenant: Tenant, estimated_tokens: int, tokens: int, dollars: float, now: float
    ) -> None:
        self.limits(tenant, now).settle(estimated_tokens, tokens, dollars, now)
