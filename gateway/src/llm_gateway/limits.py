"""Tenants' limits on one gateway replica: token buckets and period budgets. Pure.

Rates: each replica enforces its share, every per-minute limit divided by `replicas` (the
--replicas-hint), a stateless, approximate split like Envoy's local rate limit; a client whose
requests all land on one replica gets that replica's share. Requests per minute and tokens per
minute are token buckets that hold a minute's worth and refill continuously. Tokens are charged
up front with the prompt's estimate and corrected with the answer's `usage` when it ends, so a
bucket may go into debt: the next requests wait until it is repaid.

Budgets are shared and durable: the period's spend is the LLMTenant's status.spend (what every
replica has written there, spend_ledger.py) plus what this replica spent since its last write;
the period is the UTC day or month. Between writes, each replica sees the others' spend late,
so a budget may be overshot by a few seconds of spend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from llm_gateway.tenants import RecordedSpend, Tenant

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
        # This replica's spend in the period [_period_from, _period_until) (epoch seconds) not
        # yet in status.spend: `unflushed`, and what a write under way is adding (`flushing`).
        self.unflushed = self.flushing = 0.0
        self._recorded: RecordedSpend | None = None
        self._period_from = self._period_until = 0.0
        self._merge(tenant.recorded)

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

    def _merge(self, recorded: RecordedSpend | None) -> None:
        """Keep the latest status.spend: a later period, or more of the same one (spend only
        grows within a period; a watch may bring an older one than this replica wrote)."""
        old = self._recorded
        if recorded is not None and (
            old is None
            or (recorded.period_start, recorded.dollars) > (old.period_start, old.dollars)
        ):
            self._recorded = recorded

    def update(self, tenant: Tenant, now: float) -> None:
        """The LLMTenant changed: keep what was used, apply the new limits."""
        self._merge(tenant.recorded)
        if tenant is not self.tenant and tenant != self.tenant:
            if tenant.budget_period != self.tenant.budget_period:
                self._period_until = 0.0  # find the period again
            self.tenant = tenant
            self.requests = self._bucket(tenant.requests_per_minute, self.requests, now)
            self.tokens = self._bucket(tenant.tokens_per_minute, self.tokens, now)

    def _spent(self, now: float) -> float:
        """This period's spend over every replica, as far as this one knows; a new period
        starts from zero."""
        if not self._period_from <= now < self._period_until:
            period = self.tenant.budget_period
            start = period_start(datetime.fromtimestamp(now, UTC), period)
            if start.timestamp() != self._period_from:
                self.unflushed = 0.0  # the last period's: over, and never enforced again
            self._period_from = start.timestamp()
            self._period_until = next_period_start(start, period).timestamp()
        recorded = self._recorded
        shared = recorded.dollars if recorded and recorded.period_start == self._period_from else 0
        return shared + self.unflushed + self.flushing

    def take_unflushed(self, now: float) -> tuple[float, float] | None:
        """(period start, dollars) for the ledger to add to status.spend, or None."""
        self._spent(now)
        if self.unflushed <= 0 or self.flushing:
            return None
        self.flushing, self.unflushed = self.unflushed, 0.0
        return self._period_from, self.flushing

    def flushed(self, period_start: float, recorded: RecordedSpend | None) -> None:
        """The write for `period_start` ended: `recorded` is status.spend now (it holds what
        was written), or None when the write failed (the dollars wait for the next one, if
        their period is still on)."""
        if recorded is None and period_start == self._period_from:
            self.unflushed += self.flushing
        self.flushing = 0.0
        self._merge(recorded)

    def _whose(self) -> tuple[str, str]:
        t, n = self.tenant, self.replicas
        return f"tenant `{t.namespace}/{t.name}`", f" (split over {n} gateway replicas)" * (n > 1)

    def check(self, estimated_tokens: int, now: float, budget: bool = True) -> Rejection | None:
        """Why the request may not pass now, or None; `budget=False` skips the budget (the
        request goes to a deployment that costs nothing)."""
        t = self.tenant
        if budget and t.budget_dollars is not None and self._spent(now) >= t.budget_dollars:
            return Rejection(
                f"budget_{t.budget_period}",
                _retry_after(self._period_until - now),
                f"The tenant `{t.namespace}/{t.name}` has spent its budget of "
                f"${t.budget_dollars:g} per {t.budget_period}; it renews at the start of the "
                f"next UTC {t.budget_period}.",
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
            self.unflushed += dollars


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

    def all(self) -> list[TenantLimits]:
        """Every tenant seen so far (the ledger writes their spend)."""
        return list(self._tenants.values())
