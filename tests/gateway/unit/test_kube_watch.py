"""list_and_watch: list, then watch; resync when the server ends a watch; list again at once on
410 Gone; back off (bounded, reset after a good list) on errors a real API server produces only
under faults (a dropped connection, a 500)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest

from llm_gateway.kube_api import KubeApiError
from llm_gateway.kube_watch import Backoff, SkipLog, list_and_watch
from llm_gateway.kube_watch import Store as ParsedStore


def pod(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": version}}


class Store:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.replaced = 0

    def replace(self, objects: list[dict[str, Any]]) -> None:
        self.items = {o["metadata"]["name"]: o for o in objects}
        self.replaced += 1

    def upsert(self, obj: dict[str, Any]) -> None:
        self.items[obj["metadata"]["name"]] = obj

    def remove(self, obj: dict[str, Any]) -> None:
        self.items.pop(obj["metadata"]["name"], None)


class ScriptedApi:
    """Answers each list and each watch from a script; records what it was asked."""

    def __init__(self, lists: list[Any], watches: list[Any]) -> None:
        self.lists, self.watches = lists, watches
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.done = asyncio.Event()

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        self.calls.append(("list", dict(params or {})))
        if not self.lists:
            self.done.set()
            await asyncio.Event().wait()  # the test is over: wait to be cancelled
        answer = self.lists.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return {"metadata": {"resourceVersion": answer[0]}, "items": answer[1]}

    async def watch(
        self, path: str, params: Mapping[str, str], timeout_seconds: float
    ) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(("watch", dict(params)))
        for event in self.watches.pop(0):
            if isinstance(event, BaseException):
                raise event
            yield event


async def run(api: ScriptedApi, store: Store, sleeps: list[float]) -> None:
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await real_sleep(0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("llm_gateway.kube_watch.asyncio.sleep", fake_sleep)
        backoff = Backoff(initial_seconds=0.2, max_seconds=1.0)
        watching = list_and_watch(api, "/apis/x", {"labelSelector": "a"}, store, 30, backoff)  # type: ignore[arg-type]
        task = asyncio.create_task(watching)
        await asyncio.wait_for(api.done.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_events_update_the_store_and_an_ended_watch_lists_again() -> None:
    api = ScriptedApi(
        lists=[("10", [pod("a", "9")]), ("20", [pod("b", "20")])],
        watches=[
            [{"type": "ADDED", "object": pod("c", "11")},
             {"type": "MODIFIED", "object": pod("a", "12")},
             {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "13"}}},
             {"type": "DELETED", "object": pod("c", "14")}],
            [],
        ],
    )  # fmt: skip
    store, sleeps = Store(), []
    await run(api, store, sleeps)
    # The watch starts at the list's version, with the list's selector.
    assert api.calls[:2] == [
        ("list", {"labelSelector": "a"}),
        ("watch", {"labelSelector": "a", "resourceVersion": "10"}),
    ]
    assert api.calls[2] == ("list", {"labelSelector": "a"})  # the resync
    assert api.calls[3] == ("watch", {"labelSelector": "a", "resourceVersion": "20"})
    assert store.replaced == 2 and list(store.items) == ["b"]  # the relist replaced it all


async def test_gone_lists_again_at_once_and_errors_back_off_bounded() -> None:
    store, sleeps = Store(), []
    gone = KubeApiError(410, "too old resource version")
    api = ScriptedApi(
        lists=[("1", []), ("2", []), aiohttp.ClientConnectionError("refused"),
               KubeApiError(500, "etcd"), KubeApiError(403, "forbidden"),
               KubeApiError(403, "forbidden"), ("3", [pod("a", "3")])],
        watches=[[gone], [aiohttp.ServerDisconnectedError()], []],
    )  # fmt: skip
    await run(api, store, sleeps)
    assert [kind for kind, _ in api.calls].count("list") == 8
    assert list(store.items) == ["a"]
    # 410: no sleep; then the dropped watch and 4 failed lists back off 0.2 → 0.4 → 0.8 → 1.0
    # (bounded) with jitter (×0.5–1.0); a good list resets it; an ended watch waits ≤ 1 s.
    backoffs = sleeps[: len(sleeps) - 1]
    caps = [0.2, 0.4, 0.8, 1.0, 1.0]
    assert len(backoffs) == len(caps), sleeps
    for slept, cap in zip(backoffs, caps, strict=True):
        assert cap * 0.5 <= slept <= cap


def test_skip_log_leaves_invalid_objects_out_and_logs_once_per_generation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def parse(obj: dict[str, Any]) -> str:
        if obj["spec"].get("bad"):
            raise ValueError("spec.bad: not allowed\nmore detail")
        return str(obj["metadata"]["name"])

    skip = SkipLog("LLMRoute", parse)
    changes: list[int] = []
    store = ParsedStore(skip, lambda: changes.append(1))

    def obj(name: str, generation: int, bad: bool) -> dict[str, Any]:
        meta = {"namespace": "ns", "name": name, "generation": generation}
        return {"metadata": meta, "spec": {"bad": bad}}

    store.replace([obj("good", 1, False), obj("broken", 1, True)])
    store.replace([obj("good", 1, False), obj("broken", 1, True)])  # a resync re-sends it
    assert store.items == {("ns", "good"): "good"}
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert warnings == ["LLMRoute ns/broken skipped: spec.bad: not allowed more detail"]
    store.upsert(obj("broken", 2, True))  # edited, still invalid: said again
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 2
    store.upsert(obj("broken", 3, False))  # fixed: served
    assert store.items[("ns", "broken")] == "broken" and len(changes) == 4
