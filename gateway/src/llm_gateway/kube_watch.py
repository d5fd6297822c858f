"""List, then watch, one kind of object, forever: what an informer does, on asyncio.

The store is replaced from each list and updated from each watch event. The server ends each
watch after `resync_seconds`, and the next round lists again: a full resync, so an event lost
anywhere (a proxy, a dropped connection) is repaired within that time. Errors back off
exponentially with jitter, bounded, and reset after a good list; 410 Gone lists at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from llm_gateway.kube_api import KubeApi, KubeApiError
from llm_gateway.kube_targets import object_key

log = logging.getLogger(__name__)
MIN_ROUND_SECONDS = 1.0
RESYNC_SECONDS = 300.0
Key = tuple[str, str]  # (namespace, name)


def collection_path(base: str, plural: str, namespace: str) -> str:
    """The list/watch path of a kind in one namespace ("" = all namespaces)."""
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


class WatchStore(Protocol):
    def replace(self, objects: list[dict[str, Any]]) -> None: ...
    def upsert(self, obj: dict[str, Any]) -> None: ...
    def remove(self, obj: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Backoff:
    initial_seconds: float = 0.2
    max_seconds: float = 30.0

    def after(self, delay: float) -> float:
        return min(self.max_seconds, max(self.initial_seconds, delay * 2))

    def sleep_for(self, delay: float) -> float:
        # Jitter: several gateway replicas that lost the API server together do not return
        # in step.
        return delay * random.uniform(0.5, 1.0)


async def list_and_watch(
    api: KubeApi,
    path: str,
    params: Mapping[str, str],
    store: WatchStore,
    resync_seconds: float,
    backoff: Backoff = Backoff(),
) -> None:
    """Keep `store` in step with the objects at `path` until cancelled."""
    delay = backoff.initial_seconds
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            listing = await api.get(path, params)
            store.replace(list(listing.get("items") or []))
            delay = backoff.initial_seconds
            version = str(listing["metadata"]["resourceVersion"])
            watch_params = {**params, "resourceVersion": version}
            async for event in api.watch(path, watch_params, resync_seconds):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind in ("ADDED", "MODIFIED"):
                    store.upsert(obj)
                elif kind == "DELETED":
                    store.remove(obj)
                # BOOKMARK: nothing changed; the next list starts fresh anyway.
            # The server ended the watch: resync, but never in a tight loop (a proxy that
            # closes watches at once).
            await asyncio.sleep(max(0.0, MIN_ROUND_SECONDS - (loop.time() - started)))
            continue
        except KubeApiError as exc:
            if exc.status == 410:  # our version is too old: list again now
                continue
            log.warning("watch %s: %s; again in %.1f s", path, exc, delay)
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            log.warning("watch %s: %r; again in %.1f s", path, exc, delay)
        await asyncio.sleep(backoff.sleep_for(delay))
        delay = backoff.after(delay)


class Store:
    """The parsed objects of one watch (one kind, one namespace or all); `parse` returns None
    for an object to leave out. `changed` is called after every change."""

    def __init__(self, parse: Callable[[dict[str, Any]], Any], changed: Callable[[], None]):
        self.items: dict[Key, Any] = {}
        self.synced = False
        self._parse, self._changed = parse, changed

    def replace(self, objects: list[dict[str, Any]]) -> None:
        parsed = ((object_key(o), self._parse(o)) for o in objects)
        self.items = {key: value for key, value in parsed if value is not None}
        self.synced = True
        self._changed()

    def upsert(self, obj: dict[str, Any]) -> None:
        value = self._parse(obj)
        if value is None:
            self.items.pop(object_key(obj), None)
        else:
            self.items[object_key(obj)] = value
        self._changed()

    def remove(self, obj: dict[str, Any]) -> None:
        if self.items.pop(object_key(obj), None) is not None:
            self._changed()


class SkipLog:
    """Wraps a parser that raises ValueError on an invalid object: the object is left out and
    logged once per generation (an invalid object is re-sent on every resync)."""

    def __init__(self, kind: str, parse: Callable[[dict[str, Any]], Any], note: str = ""):
        self._kind, self._parse, self._note = kind, parse, note
        self._logged: set[tuple[str, str, object]] = set()

    def __call__(self, obj: dict[str, Any]) -> Any:
        try:
            return self._parse(obj)
        except ValueError as exc:
            namespace, name = object_key(obj)
            generation = (obj.get("metadata") or {}).get("generation")
            if (namespace, name, generation) not in self._logged:
                self._logged.add((namespace, name, generation))
                first = " ".join(str(exc).splitlines()[:3])
                log.warning("%s %s/%s skipped%s: %s", self._kind, namespace, name, self._note,
                            first)  # fmt: skip
            return None


class Watches:
    """The list-and-watch tasks of one watcher, started and stopped together."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coroutine))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
