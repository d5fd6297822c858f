"""KMock's stateful Kubernetes API, made to scale to thousands of objects (benchmarks only).

A subclass of the integration tests' emulator (tests/integration/operator/operator_harness.py:
KMock's KubernetesEmulator plus a uid and a resourceVersion bumped on every write, 422 on a
failed JSON-patch `test`, watches without a gap and with bookmarks), changed only by
overriding methods (no monkey-patching):

1. No request history in the matching path. KMock picks the reaction for a request by
   checking `request in reaction_view`, and a view iterates over every request the server
   has ever received (kmock 0.8: `RawHandler._handle` -> `View.__contains__` ->
   `Root.__iter__`): O(requests so far) filter evaluations per reaction per request,
   quadratic in the run (120 ms per request after ~700 requests, 99 % of the server's CPU in
   our profile). Here `__iter__` yields only the request this task is serving, which is all
   the matching needs (no reaction here slices or counts requests). The server counts
   requests by method and resource itself (`counts`).
2. Object lookups by key: KMock's `_serve_fetch/_create/_update/_delete` scan every stored
   object for the one a request names; the overrides look it up by its key. The state
   changes still happen in KubernetesEmulator._handle, unchanged.
3. A server-side apply of a missing object creates it, as the API server does (KMock answers
   404 and the operator falls back to a POST: two writes per new child).

Lists and watch starts still scan the store (kopf does that a handful of times per run).
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import kmock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration" / "operator"))
from operator_harness import ApiServer

APPLY = "application/apply-patch+yaml"
# The request this task is serving (aiohttp serves each request in its own task).
_serving: contextvars.ContextVar[Any] = contextvars.ContextVar("serving", default=None)


class ScalableApiServer(ApiServer):
    """The tests' emulator without history scans, with keyed lookups and gapless watches."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.counts: Counter[str] = Counter()  # "METHOD plural" -> requests
        self.service_seconds = 0.0  # wall time spent inside request handling (excl. watches)
        self.watches: Counter[str] = Counter()  # plural -> open watch streams
        self.observers: list[Callable[[Any], None]] = []  # called with each request served

    def __iter__(self) -> Any:
        # The view of "all requests" that KMock's reaction matching walks: only the one this
        # task is serving, which is the one being matched.
        request = _serving.get()
        if request is not None:
            yield request

    async def _handle(self, request: Any) -> Any:
        watching = request.action == kmock.action.WATCH
        request = self._create_on_apply(request)
        if request.resource is not None:
            self.counts[f"{request.method.value} {request.resource.plural or '?'}"] += 1
        token = _serving.set(request)
        started = time.perf_counter()
        try:
            response = await super()._handle(request)  # stamps versions, answers 422
            for observer in self.observers:
                observer(request)
            return response
        finally:
            _serving.reset(token)
            if not watching:
                self.service_seconds += time.perf_counter() - started

    def _create_on_apply(self, request: Any) -> Any:
        """A server-side apply of a missing object creates it, as the API server does.

        (KMock answers 404; the operator would then retry as a POST, two writes per child.)
        """
        if (
            request.action != kmock.action.UPDATE
            or request.subresource is not None
            or not request.headers.get("Content-Type", "").startswith(APPLY)
            or not isinstance(request.data, dict)
        ):
            return request
        obj = self._named(request, request.namespace, request.name)
        if obj is not None and not obj.deleted:
            return request
        return attrs.evolve(request, action=kmock.action.CREATE, name=None)

    # --- keyed lookups (KMock scans all objects for these) ----------------------------------

    def _named(self, request: Any, namespace: str | None, name: str | None) -> Any:
        key = (request.resource, namespace, name)
        try:  # ObjectsArray has no .get()
            return self.objects[key]
        except KeyError:
            return None

    async def _serve_fetch(self, request: Any) -> Any:
        obj = self._named(request, request.namespace, request.name)
        if obj is None or obj.deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return obj.raw

    async def _serve_create(self, request: Any) -> Any:
        meta = request.data.get("metadata", {})
        obj = self._named(
            request, request.namespace or meta.get("namespace"), request.name or meta.get("name")
        )
        assert obj is not None  # created in KubernetesEmulator._handle
        return obj.raw

    async def _serve_update(self, request: Any) -> Any:
        obj = self._named(request, request.namespace, request.name)
        assert obj is not None  # updated in KubernetesEmulator._handle
        return obj.last.raw

    async def _serve_delete(self, request: Any) -> Any:
        obj = self._named(request, request.namespace, request.name)
        assert obj is not None  # deleted in KubernetesEmulator._handle
        return obj.last.raw

    # --- watches: gapless with bookmarks in ApiServer (gapless_watch); counted here -------

    async def _serve_watch(self, request: Any) -> AsyncIterator[Any]:
        self.watches[request.resource.plural] += 1
        try:
            async for item in super()._serve_watch(request):
                yield item
        finally:
            self.watches[request.resource.plural] -= 1


async def serve_forever(port: int, ready: Any, extra: Any = None) -> None:
    """Run the server on 127.0.0.1:`port`; `extra(server)` may add reactions; set `ready`."""
    async with ScalableApiServer() as server, kmock.Server(server, port=port):
        server.declare_resources()
        if extra is not None:
            extra(server)
        ready.set()
        await asyncio.Event().wait()
