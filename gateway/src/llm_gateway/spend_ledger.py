"""Writing tenants' spend to their LLMTenant's status.spend, so a budget is shared by every
gateway replica and survives a restart.

Every FLUSH_SECONDS, each tenant's dollars spent on this replica since the last write are
added to status.spend (for the current UTC day or month) by the recorder (KubeTenants: a read
and a conditional write, retried on a conflict with another replica's write). A failed write
keeps the dollars for the next round; a graceful shutdown writes once more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from llm_gateway.limits import Limiter
from llm_gateway.tenants import RecordedSpend, Tenant

log = logging.getLogger(__name__)
FLUSH_SECONDS = 5.0


@runtime_checkable
class SpendRecorder(Protocol):
    async def record_spend(
        self, tenant: Tenant, period_start: float, dollars: float
    ) -> RecordedSpend: ...


class SpendLedger:
    def __init__(
        self,
        limiter: Limiter,
        recorder: SpendRecorder,
        interval_seconds: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limiter = limiter
        self._recorder = recorder
        self._interval = interval_seconds
        self._clock = clock

    async def flush_once(self) -> None:
        for limits in self._limiter.all():
            taken = limits.take_unflushed(self._clock())
            if taken is None:
                continue
            period, dollars = taken
            tenant, recorded = limits.tenant, None
            try:
                recorded = await self._recorder.record_spend(tenant, period, dollars)
            except Exception as exc:  # kept for the next round; the budget still holds locally
                log.warning("writing the spend of tenant %s/%s failed: %s",
                            tenant.namespace, tenant.name, exc)  # fmt: skip
            finally:  # cancelled too (shutdown): the dollars go back to be written last
                limits.flushed(period, recorded)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush_once()
