"""Holding requests while a model has no serving replica (scale from zero, or all restarting).

A held request waits for the directory to change (a replica turns ready) up to a timeout; the
count held per model is bounded. While anything is held for a model, the directory is asked to
signal demand (the operator then scales 0 → 1) at most every DEMAND_REFRESH_SECONDS per model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from llm_gateway.directory import Directory, ModelTarget
from llm_gateway.metrics import GatewayMetrics
from llm_operator.api.demand import DEMAND_REFRESH_SECONDS

logger = logging.getLogger(__name__)


class HoldRejected(Exception):
    """Too many requests already held for this model: 429."""


class HoldTimedOut(Exception):
    """No replica became ready within the hold timeout: 503."""


class ModelGone(Exception):
    """The model left the directory while its request was held: 404."""


class Holder:
    def __init__(
        self,
        directory: Directory,
        metrics: GatewayMetrics,
        max_held_per_model: int,
        timeout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._directory = directory
        self._metrics = metrics
        self._max_held = max_held_per_model
        self._timeout = timeout_seconds
        self._clock = clock
        self._held: dict[str, int] = {}
        self._last_signal: dict[str, float] = {}

    def held(self, model: str) -> int:
        return self._held.get(model, 0)

    async def _signal_demand(self, target: ModelTarget) -> None:
        now = self._clock()
        last = self._last_signal.get(target.model)
        if last is not None and now - last < DEMAND_REFRESH_SECONDS:
            return
        self._last_signal[target.model] = now  # before the await: one signal per interval
        try:
            await self._directory.signal_demand(target)
        except Exception:  # a failed patch must not fail the held request; the next one retries
            logger.warning("signalling demand for %s failed", target.model, exc_info=True)

    async def wait_for_replica(self, target: ModelTarget) -> ModelTarget:
        """The model's target once it has a serving replica; raises HoldRejected, HoldTimedOut
        or ModelGone."""
        model = target.model
        if self.held(model) >= self._max_held:
            self._metrics.hold_ended(model, "rejected", None)
            raise HoldRejected(model)
        self._held[model] = self.held(model) + 1
        self._metrics.held_changed(model, +1)
        start = self._clock()
        try:
            while True:
                current = self._directory.get(model)
                if current is None:
                    raise ModelGone(model)
                if current.serving():
                    self._metrics.hold_ended(model, "served", self._clock() - start)
                    return current
                remaining = start + self._timeout - self._clock()
                if remaining <= 0:
                    self._metrics.hold_ended(model, "timeout", self._clock() - start)
                    raise HoldTimedOut(model)
                await self._signal_demand(current)
                await self._directory.wait_changed(min(remaining, DEMAND_REFRESH_SECONDS))
        finally:  # also when the client leaves (the handler is cancelled)
            self._held[model] = self.held(model) - 1
            self._metrics.held_changed(model, -1)
