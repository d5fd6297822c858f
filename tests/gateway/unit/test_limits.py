"""Tenants' limits on one gateway replica, on a fake clock: buckets, budgets, Retry-After."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from llm_gateway.limits import Limiter, TokenBucket, next_period_start, period_start
from llm_gateway.tenants import RecordedSpend, Tenant

NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp()


def tenant(**limits: object) -> Tenant:
    unlimited = Tenant("team", "web", frozenset(), None, None, None, "day")
    return replace(unlimited, **limits)  # type: ignore[arg-type]


def test_requests_per_minute_then_retry_after_until_one_refills() -> None:
    limiter, web = Limiter(replicas=1), tenant(requests_per_minute=6)  # one per 10 s
    for _ in range(6):
        assert limiter.admit(web, 1, NOON) is None
    rejection = limiter.admit(web, 1, NOON)
    assert rejection is not None and rejection.limit == "requests_per_minute"
    assert rejection.retry_after_seconds == 10
    assert "6 requests per minute" in rejection.message and "team/web" in rejection.message
    assert limiter.admit(web, 1, NOON + 9) is not None
    assert limiter.admit(web, 1, NOON + 10) is None
    assert limiter.admit(web, 1, NOON + 10) is not None


def test_each_replica_enforces_its_share() -> None:
    limiter, web = Limiter(replicas=3), tenant(requests_per_minute=6)
    assert [limiter.admit(web, 1, NOON) is None for _ in range(3)] == [True, True, False]
    rejection = limiter.admit(web, 1, NOON)
    assert rejection is not None and rejection.retry_after_seconds == 30
    assert "split over 3 gateway replicas" in rejection.message


def test_a_share_below_one_request_still_lets_one_through_at_that_rate() -> None:
    limiter, web = Limiter(replicas=2), tenant(requests_per_minute=1)  # 0.5 per minute here
    assert limiter.admit(web, 1, NOON) is None
    rejection = limiter.admit(web, 1, NOON)
    assert rejection is not None and rejection.retry_after_seconds == 120  # 0.5 per minute
    assert limiter.admit(web, 1, NOON + 119) is not None
    assert limiter.admit(web, 1, NOON + 120) is None


def test_tokens_are_estimated_up_front_then_corrected_by_usage() -> None:
    limiter, web = Limiter(replicas=1), tenant(tokens_per_minute=600)  # 10 per second
    assert limiter.admit(web, 100, NOON) is None
    limiter.settle(web, 100, tokens=500, dollars=0.0, now=NOON)  # used 500, not 100
    assert limiter.admit(web, 100, NOON) is None  # 100 left
    rejection = limiter.admit(web, 100, NOON)
    assert rejection is not None and rejection.limit == "tokens_per_minute"
    assert rejection.retry_after_seconds == 10
    # A smaller answer than estimated gives tokens back.
    limiter.settle(web, 100, tokens=40, dollars=0.0, now=NOON)
    assert limiter.admit(web, 60, NOON) is None


def test_debt_from_a_long_answer_delays_the_next_requests() -> None:
    limiter, web = Limiter(replicas=1), tenant(tokens_per_minute=600)
    assert limiter.admit(web, 10, NOON) is None
    limiter.settle(web, 10, tokens=1200, dollars=0.0, now=NOON)  # 600 in debt
    rejection = limiter.admit(web, 10, NOON)
    assert rejection is not None and rejection.retry_after_seconds == 61  # (600 + 10) / 10
    assert limiter.admit(web, 10, NOON + 61) is None


def test_a_request_larger_than_the_bucket_waits_for_a_full_bucket() -> None:
    limiter, web = Limiter(replicas=1), tenant(tokens_per_minute=60)
    assert limiter.admit(web, 1000, NOON) is None  # never rejected forever
    assert limiter.admit(web, 1000, NOON + 1) is not None


@pytest.mark.parametrize(
    ("period", "now", "reopens"),
    [
        ("day", datetime(2026, 11, 30, 23, 59, 30, tzinfo=UTC), 30),
        ("month", datetime(2026, 11, 30, 23, 0, tzinfo=UTC), 3600),
        ("month", datetime(2026, 12, 31, 23, 59, 0, tzinfo=UTC), 60),
    ],
)
def test_budget_per_period_with_retry_after_until_the_next_one(
    period: str, now: datetime, reopens: int
) -> None:
    # Two replicas: the budget is not split (status.spend shares it, see the ledger tests).
    limiter, web = Limiter(replicas=2), tenant(budget_dollars=10.0, budget_period=period)
    t = now.timestamp()
    assert limiter.admit(web, 1, t) is None
    limiter.settle(web, 1, tokens=1, dollars=9.99, now=t)
    assert limiter.admit(web, 1, t) is None
    limiter.settle(web, 1, tokens=1, dollars=0.01, now=t)
    rejection = limiter.admit(web, 1, t)
    assert rejection is not None and rejection.limit == f"budget_{period}"
    assert rejection.retry_after_seconds == reopens
    assert f"$10 per {period}" in rejection.message
    # The next period starts from zero.
    assert limiter.admit(web, 1, t + reopens) is None


def test_budget_of_the_previous_day_does_not_count() -> None:
    limiter, web = Limiter(replicas=1), tenant(budget_dollars=1.0, budget_period="day")
    limiter.settle(web, 1, tokens=1, dollars=5.0, now=NOON)
    assert limiter.admit(web, 1, NOON) is not None
    assert limiter.admit(web, 1, NOON + 86400) is None


def test_changed_limits_apply_and_keep_what_was_used() -> None:
    limiter, web = Limiter(replicas=1), tenant(requests_per_minute=2)
    assert limiter.admit(web, 1, NOON) is None
    assert limiter.admit(web, 1, NOON) is None
    raised = replace(web, requests_per_minute=60)  # one a second; the used 2 stay used
    assert limiter.admit(raised, 1, NOON) is not None
    assert limiter.admit(raised, 1, NOON + 1) is None
    unlimited = replace(web, requests_per_minute=None)
    assert all(limiter.admit(unlimited, 1, NOON + 1) is None for _ in range(100))


def test_tenants_are_limited_separately() -> None:
    limiter = Limiter(replicas=1)
    a, b = tenant(requests_per_minute=1), replace(tenant(requests_per_minute=1), name="other")
    assert limiter.admit(a, 1, NOON) is None
    assert limiter.admit(a, 1, NOON) is not None
    assert limiter.admit(b, 1, NOON) is None


def test_bucket_never_holds_more_than_its_capacity() -> None:
    bucket = TokenBucket(10, now=0.0)
    assert bucket.wait_seconds(10, now=3600.0) == 0
    bucket.take(10, now=3600.0)
    assert bucket.wait_seconds(1, now=3600.0) == pytest.approx(6.0)


def test_periods_are_utc_calendar_days_and_months() -> None:
    now = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert period_start(now, "day") == datetime(2026, 12, 31, tzinfo=UTC)
    assert period_start(now, "month") == datetime(2026, 12, 1, tzinfo=UTC)
    assert next_period_start(period_start(now, "month"), "month") == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    assert next_period_start(period_start(now, "day"), "day") == datetime(2027, 1, 1, tzinfo=UTC)


def test_an_edited_tenant_keeps_this_periods_spend() -> None:
    limiter, web = Limiter(replicas=1), tenant(budget_dollars=1.0, requests_per_minute=10)
    limiter.settle(web, 1, tokens=1, dollars=1.0, now=NOON)
    edited = replace(web, requests_per_minute=20)
    rejection = limiter.admit(edited, 1, NOON + 1)
    assert rejection is not None and rejection.limit == "budget_day"
    monthly = replace(web, budget_period="month")  # another period: it is counted afresh
    assert limiter.admit(monthly, 1, NOON + 2) is None


def test_recorded_spend_counts_with_this_replicas_own_in_its_period_only() -> None:
    start = datetime(2026, 11, 30, tzinfo=UTC).timestamp()  # NOON's day
    spent_elsewhere = RecordedSpend(start, 0.75)  # by the other replicas, before a restart
    web = tenant(budget_dollars=1.0, budget_period="day", recorded=spent_elsewhere)
    limiter = Limiter(replicas=1)
    assert limiter.admit(web, 1, NOON) is None
    limiter.settle(web, 1, tokens=1, dollars=0.25, now=NOON)  # 0.75 + 0.25: spent
    assert limiter.admit(web, 1, NOON) is not None
    # Yesterday's record does not count today; a newer record of today's replaces it.
    yesterday = replace(web, recorded=RecordedSpend(start - 86400, 5.0))
    fresh = Limiter(replicas=1)
    assert fresh.admit(yesterday, 1, NOON) is None
    assert fresh.admit(replace(web, recorded=RecordedSpend(start, 1.0)), 1, NOON) is not None


def test_the_ledger_moves_spend_to_the_record_and_keeps_it_when_a_write_fails() -> None:
    limiter, web = Limiter(replicas=1), tenant(budget_dollars=1.0, budget_period="day")
    limits = limiter.limits(web, NOON)
    limiter.settle(web, 1, tokens=1, dollars=0.5, now=NOON)
    taken = limits.take_unflushed(NOON)
    assert taken is not None and taken[1] == 0.5 and limits.take_unflushed(NOON) is None
    limiter.settle(web, 1, tokens=1, dollars=0.25, now=NOON)  # while the write is under way
    assert limits.check(1, NOON) is None  # 0.5 being written + 0.25 counted: $0.75
    limits.flushed(taken[0], None)  # failed: written with the next round
    again = limits.take_unflushed(NOON)
    assert again == (taken[0], 0.75)
    limits.flushed(again[0], RecordedSpend(again[0], 1.0))  # another replica spent 0.25 too
    rejection = limits.check(1, NOON)
    assert rejection is not None and rejection.limit == "budget_day"
