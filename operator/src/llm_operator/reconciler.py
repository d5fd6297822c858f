"""One reconcile: observe (kopf indices + what we wrote) -> decide (pure) -> act (k8s.py).

`Runtime` is the operator's in-memory state, shared by the kopf handlers through kopf's memo:
- what this process last applied and the status it last wrote. Watch events lag behind our
  own writes; without this a reconcile woken by the Deployment's event could re-apply the
  ConfigMap whose event has not arrived yet, or re-send an Event. A child's DELETED event
  drops its entry, so a child deleted by hand is re-created. A fresh process starts empty
  and reads the truth from the indices, which kopf fills before any handler runs.
- a lock per LLMDeployment (the create/update handler and the daemon never overlap),
- a wake-up per LLMDeployment (child and pod events wake its daemon) and when it is due.
- the autoscaler: its collector, each LLMDeployment's next scrape and its ScalingMemory
  (stabilization windows, counter readings). Memory only: a restarted operator starts with
  empty windows, so its first decisions hold the current count until the windows refill.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import kopf

from llm_operator import metrics
from llm_operator.api.status import FORBIDDEN, REJECTED_BY_API
from llm_operator.autoscale.collector import Collector, ScrapeTarget
from llm_operator.k8s import FORBIDDEN_DELAY, ForbiddenError, KubeApi, RejectedError
from llm_operator.plan import ChildSummary, Observed, Plan, ReconcileSettings, decide
from llm_operator.plan.children import manifest_hash
from llm_operator.plan.decide import failed
from llm_operator.plan.observed import APPLIED_HASH_ANNOTATION, ScalingMemory, Scrape

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name) of an LLMDeployment
CHILD_INDEX_PREFIX = "llmd_children_"
POD_INDEX = "llmd_pods"


@dataclass
class Runtime:
    settings: ReconcileSettings
    api: KubeApi
    resync_seconds: float = 60.0
    applied: dict[Key, dict[tuple[str, str], tuple[str, str | None]]] = field(
        default_factory=dict
    )  # (kind, name) -> (apiVersion, applied hash; None = we deleted it)
    statuses: dict[Key, dict[str, Any]] = field(default_factory=dict)
    rejected: dict[Key, set[str]] = field(default_factory=dict)  # manifest hashes refused
    gone: dict[Key, set[tuple[str, str]]] = field(default_factory=dict)  # deleted meanwhile
    uids: dict[Key, str] = field(default_factory=dict)  # a new object may reuse a name
    locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    wakeups: dict[Key, asyncio.Event] = field(default_factory=dict)
    due: dict[Key, float] = field(default_factory=dict)  # monotonic time a requeue is due
    closed: bool = False  # set on operator cleanup: daemons spawned late must exit too
    scrape_interval: float = 10.0
    collector: Collector = field(default_factory=Collector)
    memories: dict[Key, ScalingMemory] = field(default_factory=dict)
    next_scrape: dict[Key, float] = field(default_factory=dict)  # monotonic time
    last_reconciled: dict[Key, float] = field(default_factory=dict)  # monotonic time
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    # Reconciles in flight at once: a burst (1,000 creates) queues here instead of
    # interleaving 1,000 renders and API calls on one event loop (each would take seconds).
    max_concurrent: int = 8
    slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(self.max_concurrent)

    # --- memory -----------------------------------------------------------------------------

    def forget(self, key: Key) -> None:
        """Drop what we remember about an LLMDeployment (deleted, or its name reused)."""
        tables = (self.applied, self.statuses, self.rejected, self.due, self.uids, self.gone)
        for table in (*tables, self.memories, self.next_scrape, self.last_reconciled):
            table.pop(key, None)

    def child_gone(self, key: Key, kind: str, name: str) -> None:
        """A child's DELETED event: forget it (also if a reconcile in flight applied it)."""
        self.applied.get(key, {}).pop((kind, name), None)
        self.gone.setdefault(key, set()).add((kind, name))
        self.wake(key)

    def close(self) -> None:
        self.closed = True
        for event in self.wakeups.values():
            event.set()
        self.api.close()

    def wake(self, key: Key) -> None:
        event = self.wakeups.get(key)
        if event is not None:
            event.set()

    async def wait(self, key: Key, stopped: Awaitable[Any] | None = None) -> bool:
        """Until woken, a requeue, a scrape or a resync is due, or `stopped` finishes.

        True when woken by an event."""
        event = self.wakeups.setdefault(key, asyncio.Event())
        timeout = self.resync_seconds
        due = self.due.get(key)
        if due is not None:
            timeout = max(min(timeout, due - time.monotonic()), 0.0)
        scrape_at = self.next_scrape.get(key, 0.0)
        timeout = max(min(timeout, scrape_at - time.monotonic()), 0.0)
        waiters = [asyncio.ensure_future(event.wait())]
        if stopped is not None:
            waiters.append(asyncio.ensure_future(stopped))
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        woken = event.is_set()
        event.clear()
        return woken

    def worth_reconciling(self, key: Key, woken: bool, scrape: Scrape | None) -> bool:
        """Whether a daemon wake-up has anything for a reconcile: an event, a scrape with
        pods in it, a requeue or a resync that is due. A tick of a deployment without ready
        pods is not (1,000 of them would otherwise re-render every scrape interval)."""
        now = time.monotonic()
        if woken or scrape is not None or self.due.get(key, now + 1) <= now:
            return True
        return now - self.last_reconciled.get(key, float("-inf")) >= self.resync_seconds

    # --- observe -> decide -> act -----------------------------------------------------------

    async def scrape(self, key: Key, indices: Mapping[str, Any]) -> Scrape | None:
        """The autoscaler's tick: each ready pod's /metrics, when due and there are ready pods
        (else None)."""
        if time.monotonic() < self.next_scrape.get(key, 0.0):
            return None
        self.next_scrape[key] = time.monotonic() + self.scrape_interval
        pods = indices[POD_INDEX].get(key, ()) if POD_INDEX in indices else ()
        targets = [
            ScrapeTarget(p.name, p.ip, p.port)
            for p in sorted(pods, key=lambda p: p.name)
            if p.ready and not p.deleting
        ]
        if not targets:
            return None
        signals = await self.collector.scrape(targets)
        return Scrape(signals, time.monotonic())

    def observe(self, key: Key, indices: Mapping[str, Any]) -> Observed:
        children: dict[tuple[str, str], ChildSummary] = {}
        for name, index in indices.items():
            if name.startswith(CHILD_INDEX_PREFIX):
                for child in index.get(key, ()):
                    children[(child.kind, child.name)] = child
        for (kind, name), (api_version, digest) in self.applied.get(key, {}).items():
            if digest is None:
                children.pop((kind, name), None)
            elif (kind, name) not in children:
                children[(kind, name)] = ChildSummary(api_version, kind, name, digest)
            else:
                children[(kind, name)] = replace(children[(kind, name)], applied_hash=digest)
        pods = tuple(indices[POD_INDEX].get(key, ())) if POD_INDEX in indices else ()
        return Observed(children, tuple(sorted(pods, key=lambda p: p.name)))

    async def reconcile(
        self, body: Mapping[str, Any], indices: Mapping[str, Any], scrape: Scrape | None = None
    ) -> Plan:
        meta = body["metadata"]
        key: Key = (meta["namespace"], meta["name"])
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock, self.slots:
            self.last_reconciled[key] = time.monotonic()
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
            elapsed = time.perf_counter() - started
            self.durations.append(elapsed)
            metrics.observe_reconcile(elapsed, "ok")
            return plan

    async def _reconcile(
        self, key: Key, body: Mapping[str, Any], indices: Mapping[str, Any], scrape: Scrape | None
    ) -> Plan:
        uid = str(body["metadata"].get("uid"))
        if self.uids.setdefault(key, uid) != uid:
            self.forget(key)
            self.uids[key] = uid
        manifest = dict(body)
        if key in self.statuses:
            manifest["status"] = self.statuses[key]
        memory = self.memories.get(key) or ScalingMemory()
        observed = replace(self.observe(key, indices), scrape=scrape, memory=memory)
        plan = decide(manifest, observed, datetime.now(tz=UTC), self.settings)
        refused = self.rejected.get(key, set())
        if any(_stamp(m) in refused for m in plan.apply):
            raise kopf.PermanentError("the API server refused this spec's objects before")
        try:
            await self.api.execute(plan, body)
        except RejectedError as exc:
            self.rejected.setdefault(key, set()).update(_stamp(m) for m in plan.apply)
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
        self._remember(key, plan)
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
        if plan.requeue_after is not None:
            self.due[key] = time.monotonic() + plan.requeue_after
        else:
            self.due.pop(key, None)
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
        if plan.status is not None:
            self.statuses[key] = plan.status

    def _remember(self, key: Key, plan: Plan) -> None:
        memory = self.applied.setdefault(key, {})
        gone = self.gone.pop(key, set())
        for manifest in plan.apply:
            if (manifest["kind"], manifest["metadata"]["name"]) in gone:
                continue  # deleted while we applied it: let the index say what exists
            digest = _stamp(manifest)
            memory[(manifest["kind"], manifest["metadata"]["name"])] = (
                manifest["apiVersion"],
                digest,
            )
        for ref in plan.delete:
            memory[(ref.kind, ref.name)] = (ref.api_version, None)
        if plan.status is not None:
            self.statuses[key] = plan.status
        if plan.memory is not None:
            self.memories[key] = plan.memory


def _stamp(manifest: Mapping[str, Any]) -> str:
    annotations = manifest["metadata"].get("annotations") or {}
    return str(annotations.get(APPLIED_HASH_ANNOTATION) or manifest_hash(manifest))
