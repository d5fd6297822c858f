"""The operator's in-memory state parts (llm_operator.state): what it wrote, what was refused,
when a daemon wakes, the autoscaler's tick. Pure or a few event-loop turns; no sleeping."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from llm_operator.plan import ChildRef, ChildSummary, Plan
from llm_operator.plan.observed import APPLIED_HASH_ANNOTATION, PodSummary, ScalingMemory
from llm_operator.state import AutoscalerClock, Rejections, Wakeups, WriteCache

KEY = ("ns", "chat")


def child(kind: str, name: str, digest: str) -> dict[str, Any]:
    meta = {"name": name, "annotations": {APPLIED_HASH_ANNOTATION: digest}}
    return {"apiVersion": "v1", "kind": kind, "metadata": meta}


def test_the_write_cache_corrects_what_the_index_has_not_seen_yet() -> None:
    cache = WriteCache()
    plan = Plan(
        apply=(child("ConfigMap", "chat-config", "new"), child("Service", "chat", "s1")),
        delete=(ChildRef("v1", "ConfigMap", "old", "ns"),),
        status={"phase": "Progressing"},
    )
    cache.remember(KEY, plan)
    indexed = {
        ("ConfigMap", "chat-config"): ChildSummary("v1", "ConfigMap", "chat-config", "stale"),
        ("ConfigMap", "old"): ChildSummary("v1", "ConfigMap", "old", "x"),
    }
    seen = cache.overlay(KEY, dict(indexed))
    assert seen[("ConfigMap", "chat-config")].applied_hash == "new"
    assert seen[("Service", "chat")].applied_hash == "s1"  # applied, its event not here yet
    assert ("ConfigMap", "old") not in seen  # deleted by us
    assert cache.status(KEY) == {"phase": "Progressing"}


def test_a_child_deleted_meanwhile_is_not_remembered_and_a_new_uid_is_noticed() -> None:
    cache = WriteCache()
    cache.child_gone(KEY, "Service", "chat")
    cache.remember(KEY, Plan(apply=(child("Service", "chat", "s1"),)))
    assert cache.overlay(KEY, {}) == {}
    assert not cache.uid_changed(KEY, "a")
    assert cache.uid_changed(KEY, "b")
    cache.forget(KEY)
    assert not cache.uid_changed(KEY, "b")


def test_rejections_block_the_same_rendering_only() -> None:
    rejections = Rejections()
    rejections.add(KEY, [child("Deployment", "chat", "bad")])
    assert rejections.any_refused(KEY, [child("Deployment", "chat", "bad")])
    assert not rejections.any_refused(KEY, [child("Deployment", "chat", "fixed")])
    rejections.forget(KEY)
    assert not rejections.any_refused(KEY, [child("Deployment", "chat", "bad")])


def test_wakeups_wait_for_the_nearest_of_requeue_tick_and_resync() -> None:
    wakeups = Wakeups(resync_seconds=60.0)
    far = time.monotonic() + 1000
    assert 59 < wakeups.timeout(KEY, far) <= 60
    wakeups.requeue(KEY, 5.0)
    assert 4 < wakeups.timeout(KEY, far) <= 5
    assert wakeups.timeout(KEY, 0.0) == 0.0  # a tick that is due
    wakeups.requeue(KEY, None)
    wakeups.reconciled(KEY)
    assert not wakeups.worth_reconciling(KEY, woken=False, scraped=False)
    assert wakeups.worth_reconciling(KEY, woken=True, scraped=False)
    assert wakeups.worth_reconciling(KEY, woken=False, scraped=True)


def test_a_wake_ends_the_wait_and_says_so() -> None:
    async def scenario() -> tuple[bool, bool]:
        wakeups = Wakeups()
        wakeups.events[KEY] = asyncio.Event()
        wakeups.wake(KEY)
        woken = await wakeups.wait(KEY, time.monotonic() + 1000)
        timed_out = await wakeups.wait(KEY, 0.0)  # due at once
        return woken, timed_out

    assert asyncio.run(scenario()) == (True, False)


def test_the_autoscaler_ticks_only_with_ready_pods() -> None:
    clock = AutoscalerClock(interval=10.0)
    pending = PodSummary("chat-0", "primary")
    assert asyncio.run(clock.scrape(KEY, [pending])) is None
    assert clock.next_tick(KEY) > time.monotonic()  # the next tick is an interval away
    assert clock.memory(KEY) == ScalingMemory()
    clock.forget(KEY)
    assert clock.next_tick(KEY) == 0.0


def test_the_write_cache_knows_a_key_once_it_applied_deleted_or_listed_its_children() -> None:
    key = ("ns", "chat")
    cache = WriteCache()
    assert not cache.knows(key)  # a fresh process: the reconciler may read the API through
    cache.read_through(key)
    assert cache.knows(key)  # once per key
    cache.forget(key)
    assert not cache.knows(key)
    cache.child_gone(key, "Deployment", "chat")
    assert cache.knows(key)  # deleted by hand: re-create, do not read through
