"""List, then watch, one kind of object, forever: what an informer does, on asyncio.

The store is replaced from each list and updated from each watch event. The server ends each
watch after `resync_seconds`, and the next round lists again: a full resync, so an event lost
anywhere (a proxy, a dropped connection) is repaired within that time. Errors back off
exponentially with jitter, bounded, and reset after a good list; 410 Gone lists at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from llm_gateway.kube_api import KubeApi, KubeApiError

log = logging.getLogger(__name__)
MIN_ROUND_SECONDS = 1.0


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
