"""KMock's watch without its gap, with bookmarks: a mixin for the tests' API server.

KMock 0.8 snapshots the objects under its lock, streams them, and only then subscribes to the
change bus: changes in between are lost. kopf lists before it watches, so an object created
in that window arrives as a stale ADDED whose follow-up MODIFIED never comes; kopf's
finalizer patch then fails its resourceVersion test (422) and waits for a "next cycle" that
only the operator's resync brings (60 s): a test would time out at random.

KMock sends no BOOKMARK events either; kopf treats a watch silent for 70 s as dead and
re-watches, and KMock then replays every object as ADDED. The API server bookmarks about once
a minute when asked (allowWatchBookmarks=true); so does this one, every BOOKMARK_SECONDS.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

BOOKMARK_SECONDS = 30.0


class GaplessWatch:
    """Overrides KubernetesEmulator._serve_watch: subscribe in the same locked step as the
    snapshot, and bookmark. Mix in before kmock.KubernetesEmulator; `kinds` maps
    "group/version/plural" to the Kind a bookmark names."""

    kinds: ClassVar[Mapping[str, str]] = {}

    async def _serve_watch(self, request: Any) -> AsyncIterator[Any]:
        emulator: Any = self  # the KubernetesEmulator this is mixed into
        yield b""  # start the stream (headers) at once, as KMock does
        bus = emulator._buses[request.resource]
        async with emulator._lock:
            snapshot = [
                obj.raw
                for (resource, namespace, name), obj in emulator.objects.items()
                if not obj.deleted and _watched(request, resource, namespace, name)
            ]
            marker = await bus.mark()
        changes: asyncio.Queue[Any] = asyncio.Queue()

        async def pump() -> None:
            async for event in bus.stream(since=marker):
                meta = event.get("object", {}).get("metadata", {})
                if _watched(request, request.resource, meta.get("namespace"), meta.get("name")):
                    changes.put_nowait(event)

        async def bookmark() -> None:
            while True:
                await asyncio.sleep(BOOKMARK_SECONDS)
                changes.put_nowait(self._bookmark(request, emulator._version))

        helpers = [asyncio.create_task(pump())]
        if request.params.get("allowWatchBookmarks") == "true":
            helpers.append(asyncio.create_task(bookmark()))
        try:
            for raw in snapshot:
                yield {"type": "ADDED", "object": raw}
            while True:
                yield await changes.get()
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await bus.unmark(marker)

    def _bookmark(self, request: Any, version: int) -> dict[str, Any]:
        resource = request.resource
        api_version = f"{resource.group}/{resource.version}" if resource.group else resource.version
        return {
            "type": "BOOKMARK",
            "object": {
                "apiVersion": api_version,
                "kind": self.kinds.get(f"{api_version}/{resource.plural}", ""),
                "metadata": {"resourceVersion": str(version)},
            },
        }


def _watched(request: Any, resource: Any, namespace: str | None, name: str | None) -> bool:
    return bool(
        resource == request.resource
        and (request.namespace is None or namespace == request.namespace)
        and (request.name is None or name == request.name)
    )
