"""The spend ledger: a tenant's dollars go to its recorder (status.spend) each round; a failed
write keeps them for the next round; the gateway writes once more when it stops."""

from __future__ import annotations

import time

import pytest
from aiohttp.test_utils import TestServer

from llm_gateway.app import GATEWAY, build_app
from llm_gateway.directory import StaticDirectory
from llm_gateway.limits import Limiter
from llm_gateway.settings import GatewaySettings
from llm_gateway.spend_ledger import SpendLedger
from llm_gateway.tenants import RecordedSpend, Tenant

NOON = 1_764_504_000.0  # 2025-11-30T12:00:00Z
WEB = Tenant("team", "web", frozenset(), None, None, 1.0, "day")


class Recorder:
    """status.spend of each tenant, as the API server would keep it; fails when told to."""

    def __init__(self) -> None:
        self.spend: dict[tuple[str, str], RecordedSpend] = {}
        self.failing = False
        self.writes = 0

    async def record_spend(self, tenant: Tenant, period: float, dollars: float) -> RecordedSpend:
        if self.failing:
            raise OSError("the API server is away")
        self.writes += 1
        known = self.spend.get(tenant.key)
        base = known.dollars if known and known.period_start == period else 0.0
        self.spend[tenant.key] = RecordedSpend(period, base + dollars)
        return self.spend[tenant.key]

    def lookup(self, api_key: str) -> Tenant | None:
        return None


async def test_each_round_writes_what_was_spent_and_a_failure_waits() -> None:
    limiter, recorder = Limiter(replicas=1), Recorder()
    ledger = SpendLedger(limiter, recorder, clock=lambda: NOON)
    limiter.settle(WEB, 1, 1, 0.25, NOON)
    await ledger.flush_once()
    assert recorder.spend[WEB.key].dollars == 0.25
    await ledger.flush_once()
    assert recorder.writes == 1  # nothing new: nothing written
    limiter.settle(WEB, 1, 1, 0.5, NOON)
    recorder.failing = True
    await ledger.flush_once()
    recorder.failing = False
    limiter.settle(WEB, 1, 1, 0.125, NOON)
    await ledger.flush_once()
    assert recorder.spend[WEB.key].dollars == pytest.approx(0.875)  # nothing lost
    assert limiter.admit(WEB, 1, NOON) is None  # $0.875 of $1
    limiter.settle(WEB, 1, 1, 0.125, NOON)
    assert limiter.admit(WEB, 1, NOON) is not None


async def test_the_gateway_runs_the_ledger_and_writes_once_more_when_it_stops() -> None:
    recorder = Recorder()
    app = build_app(GatewaySettings(static_models="x"), StaticDirectory(), tenants=recorder)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    app[GATEWAY].tenancy.limiter.settle(WEB, 1, 1, 0.3, time.time())  # the ledger's clock
    await server.close()
    assert recorder.spend[WEB.key].dollars == pytest.approx(0.3)
