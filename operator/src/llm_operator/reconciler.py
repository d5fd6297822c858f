"""One reconcile: observe (kopf indices + what we wrote) -> decide (pure) -> act (k8s.py).

`Runtime` is what the kopf handlers share through kopf's memo: the settings, the API client,
a lock per LLMDeployment (the create/update handler and the daemon never overlap), a bound
on reconciles in flight, and the operator's memory in named parts (llm_operator.state):
- `writes`: what this process last applied and the status it last wrote (watch events lag
  behind our own writes);
- `rejections`: renderings the API server refused, not sent again;
- `wakeups`: when each LLMDeployment's daemon re-evaluates (events, requeues, resyncs);
- `autoscaler`: the next scrape of each LLMDeployment's pods and its ScalingMemory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import kopf

from llm_operator import metrics
from llm_operator.api.status import FORBIDDEN, REJECTED_BY_API
from llm_operator.autoscale.collector import Collector
from llm_operator.k8s import FORBIDDEN_DELAY, ForbiddenError, KubeApi, RejectedError
from llm_operator.plan import ChildSummary, Observed, Plan, ReconcileSettings, decide
from llm_operator.plan.decide import failed
from llm_operator.plan.observed import Scrape, summarize_child
from llm_operator.render.objects import DEPLOYMENT_LABEL, MANAGED_SELECTOR
from llm_operator.state import AutoscalerClock, Key, Rejections, Wakeups, WriteCache

logger = logging.getLogger(__name__)

CHILD_INDEX_PREFIX = "llmd_children_"
POD_INDEX = "llmd_pods"


@dataclass
class Runtime:
    settings: ReconcileSettings
    api: KubeApi
    resync_seconds: float = 60.0
    scrape_interval: float = 10.0
    collector: Collector = field(default_factory=Collector)
    # Reconciles in flight at once: a burst (1,000 creates) queues here instead of
    # interleaving 1,000 renders and API calls on one event loop (each would take seconds).
    max_concurrent: int = 8
    writes: WriteCache = field(default_factory=WriteCache)
    rejections: Rejections = field(default_factory=Rejections)
    wakeups: Wakeups = field(init=False)
    autoscaler: AutoscalerClock = field(init=False)
    locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.wakeups = Wakeups(self.resync_seconds)
        self.autoscaler = AutoscalerClock(self.scrape_interval, self.collector)
        self.slots = asyncio.Semaphore(self.max_concurrent)

    @property
    def closed(self) -> bool:
        return self.wakeups.closed

    def forget(self, key: Key) -> None:
        """Drop what we remember about an LLMDeployment (deleted, or its name reused)."""
        self.writes.forget(key)
        self.rejections.forget(key)
        self.wakeups.forget(key)
        self.autoscaler.forget(key)

    def child_gone(self, key: Key, kind: str, name: str) -> None:
        self.writes.child_gone(key, kind, name)
        self.wakeups.wake(key)

    def wake(self, key: Key) -> None:
        self.wakeups.wake(key)

    def close(self) -> None:
        self.wakeups.close()
        self.api.close()

    async def wait(self, key: Key, stopped: Awaitable[Any] | None = None) -> bool:
        """Until woken, a requeue, a scrape or a resync is due; True when woken by an event."""
        return await self.wakeups.wait(key, self.autoscaler.next_tick(key), stopped)

    def worth_reconciling(self, key: Key, woken: bool, scrape: Scrape | None) -> bool:
        return self.wakeups.worth_reconciling(key, woken, scrape is not None)

    async def scrape(self, key: Key, indices: Mapping[str, Any]) -> Scrape | None:
        """The autoscaler's tick when due: each ready pod's /metrics (None without any)."""
        pods = indices[POD_INDEX].get(key, ()) if POD_INDEX in indices else ()
        return await self.autoscaler.scrape(key, pods)

    # --- observe -> decide -> act -----------------------------------------------------------

    def observe(self, key: Key, indices: Mapping[str, Any]) -> Observed:
        children: dict[tuple[str, str], ChildSummary] = {}
        for name, index in indices.items():
            if name.startswith(CHILD_INDEX_PREFIX):
                for child in index.get(key, ()):
                    children[(child.kind, child.name)] = child
        pods = tuple(indices[POD_INDEX].get(key, ())) if POD_INDEX in indices else ()
        children = self.writes.overlay(key, children)
        return Observed(children, tuple(sorted(pods, key=lambda p: p.name)))

    async def _read_through(
        self, key: Key, body: Mapping[str, Any], observed: Observed
    ) -> Observed:
        """The children from the API server when the indices may be cold.

        kopf fills its indices before the first handler only at start-up. A replica that
        resumes after a peering pause (the leader left) re-lists the children while its
        LLMDeployment handlers already run: an empty index there would mean "create" (a second
        Created and Ready, and a status flap). So when the index shows no Deployment for an
        LLMDeployment whose status says its children were applied (a phase other than Failed)
        and this process has not written them, read them from the API server, once.
        """
        has_deployment = any(kind == "Deployment" for kind, _ in observed.children)
        phase = (body.get("status") or {}).get("phase")
        if has_deployment or phase in (None, "Failed") or self.writes.knows(key):
            return observed
        self.writes.read_through(key)
        selector = f"{DEPLOYMENT_LABEL}={key[1]},{MANAGED_SELECTOR}"
        listed = await self.api.list_children(key[0], selector)
        children = {(c.kind, c.name): c for c in map(summarize_child, listed)}
        return replace(observed, children={**children, **observed.children})

    async def reconcile(
        self, body: Mapping[str, Any], indices: Mapping[str, Any], scrape: Scrape | None = None
    ) -> Plan:
        meta = body["metadata"]
        key: Key = (meta["namespace"], meta["name"])
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock, self.slots:
            self.wakeups.reconciled(key)
            started = time.perf_counter()
            try:
                plan = await self._reconcile(key, body, indices, scrape)
            except kopf.PermanentError:
                metrics.observe_reconcile(time.perf_counter() - started, "invalid")
                raise
            except kopf.TemporaryError:
                metrics.count_error("temporary")
                metrics.observe_reconcile(time.perf_counter() - started, "error")
                raise
            except Exception:
                metrics.count_error("unexpected")
                metrics.observe_reconcile(time.perf_counter() - started, "error")
                raise
            metrics.observe_reconcile(time.perf_counter() - started, "ok")
            return plan

    async def _reconcile(
        self, key: Key, body: Mapping[str, Any], indices: Mapping[str, Any], scrape: Scrape | None
    ) -> Plan:
        uid = str(body["metadata"].get("uid"))
        if self.writes.uid_changed(key, uid):
            self.forget(key)
            self.writes.uid_changed(key, uid)  # records the new object's uid
        manifest = dict(body)
        status = self.writes.status(key)
        if status is not None:
            manifest["status"] = status
        memory = self.autoscaler.memory(key)
        observed = await self._read_through(key, body, self.observe(key, indices))
        observed = replace(observed, scrape=scrape, memory=memory)
        plan = decide(manifest, observed, datetime.now(tz=UTC), self.settings)
        if self.rejections.any_refused(key, plan.apply):
            raise kopf.PermanentError("the API server refused this spec's objects before")
        try:
            await self.api.execute(plan, body)
        except RejectedError as exc:
            self.rejections.add(key, plan.apply)
            await self._reject(key, manifest, REJECTED_BY_API, str(exc))
            raise kopf.PermanentError(f"{REJECTED_BY_API}: {exc}") from exc
        except ForbiddenError as exc:
            # Not the spec's fault: say so in status and an Event (a silent retry loop hides
            # it), and retry slowly; the next reconcile after RBAC is fixed clears it.
            message = f"the operator's RBAC forbids a request (see docs/install.md): {exc}"
            try:
                await self._reject(key, manifest, FORBIDDEN, message)
            except (ForbiddenError, kopf.TemporaryError) as report:
                logger.warning("could not report %s on %s/%s: %s", FORBIDDEN, *key, report)
            raise kopf.TemporaryError(f"{FORBIDDEN}: {exc}", delay=FORBIDDEN_DELAY) from exc
        self.writes.remember(key, plan)
        self.autoscaler.remember(key, plan.memory)
        logger.debug(
            "reconciled %s/%s: applied %s, deleted %d, status %s, events %s",
            *key,
            [f"{m['kind']}/{m['metadata']['name']}" for m in plan.apply],
            len(plan.delete),
            "written" if plan.status is not None else "unchanged",
            [e.reason for e in plan.events],
        )
        metrics.set_replicas(*key, plan.replicas, plan.ready_replicas, plan.desired_replicas)
        if plan.report is not None:
            metrics.report_cost(*key, plan.report)
        metrics.observe_cold_starts(*key, plan.cold_starts)
        self.wakeups.requeue(key, plan.requeue_after)
        if plan.error is not None:
            metrics.count_error("permanent")
            raise kopf.PermanentError(f"{plan.error.reason}: {plan.error.message}")
        return plan

    async def _reject(
        self, key: Key, manifest: Mapping[str, Any], reason: str, message: str
    ) -> None:
        metrics.count_error("rejected" if reason == REJECTED_BY_API else "forbidden")
        plan = failed(manifest, reason, message, datetime.now(tz=UTC))
        await self.api.execute(plan, manifest)
        self.writes.remember_status(key, plan.status)
