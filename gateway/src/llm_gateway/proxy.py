"""Forwarding a request to a picked replica and relaying its answer chunk by chunk.

The raw body goes upstream unchanged with the headers that matter (Authorization passes
through: the pod checks the key). A connection error before the first byte of the answer is
retried once on another replica, and so is llm-server's 503 `draining`/`loading` (the replica
refused before doing any work: it is as good as gone, as when a pod starts draining before its
EndpointSlice says so). Other 429s and 503s are the replica's answer, relayed as they are.
Once streaming has started, an upstream failure ends the client's stream (it sees a truncated
response, never a spliced one). A model with a capacity per replica is saturated when every
serving replica has that many requests on it: the request then waits its turn in the fair
queue (fair_queue.py), or, for a route that has another target to try, is answered 429
`model_saturated` at once (held back: the route falls back).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from llm_gateway.capacity import Capacity
from llm_gateway.directory import ModelTarget, Replica
from llm_gateway.errors import error_response
from llm_gateway.fair_queue import FairQueue, QueueRefused
from llm_gateway.fair_share import Share
from llm_gateway.load import LoadTracker
from llm_gateway.metrics import GatewayMetrics
from llm_gateway.picker import pick
from llm_gateway.usage import BodyUsage, StreamUsage

logger = logging.getLogger(__name__)

FORWARDED_REQUEST_HEADERS = (
    "Authorization", "Content-Type", "Accept", "Accept-Encoding", "X-Request-Id",
    "Traceparent", "Tracestate",
)  # fmt: skip
# Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, not the response.
HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade")
)  # fmt: skip
ATTEMPTS = 2  # the first try and one retry on another replica
NOT_SERVING_CODES = frozenset(("draining", "loading"))  # llm-server's 503s before any work
MAX_INSPECTED_BYTES = 64 * 1024  # a 503 body larger than this is relayed, not read
SATURATED_RETRY_AFTER_SECONDS = 1  # a saturated model frees a slot within a generation
REFUSED_MESSAGES = {
    "queue_full": "is saturated and its queue is full",
    "shed": "is saturated: this request was shed for one of a higher priority",
    "queue_timeout": "stayed saturated for the whole queue timeout",
}


def _upstream_headers(request: web.Request) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name in FORWARDED_REQUEST_HEADERS:
        for value in request.headers.getall(name, ()):
            headers.add(name, value)
    return headers


def _client_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP)


def _error_code(body: bytes) -> object:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    return error.get("code") if isinstance(error, dict) else None


async def _small_503_body(upstream: aiohttp.ClientResponse) -> bytes | None:
    """The body of a 503 small enough to inspect, or None (relay it untouched)."""
    length = upstream.content_length
    if upstream.status != 503 or length is None or length > MAX_INSPECTED_BYTES:
        return None
    return await upstream.read()


def _refused(model: str, reason: str) -> web.Response:
    return error_response(
        429, f"Model `{model}` {REFUSED_MESSAGES.get(reason, 'is saturated')}; retry shortly.",
        type="rate_limit_error", code=reason if reason in REFUSED_MESSAGES else "model_saturated",
        retry_after_seconds=SATURATED_RETRY_AFTER_SECONDS,
    )  # fmt: skip


class Proxy:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        capacity: Capacity,
        tracker: LoadTracker,
        queue: FairQueue,
        metrics: GatewayMetrics,
        load_factor: float,
        connect_timeout_seconds: float,
        upstream_timeout_seconds: float,
    ) -> None:
        self._session = session
        self._capacity = capacity
        self._tracker = tracker
        self._queue = queue
        self._metrics = metrics
        self._load_factor = load_factor
        # No total limit: a long generation is fine as long as bytes keep coming.
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_seconds, sock_read=upstream_timeout_seconds
        )

    async def forward(
        self,
        request: web.Request,
        body: bytes,
        target: ModelTarget,
        key: int,
        parse_seconds: float,
        observer: BodyUsage | StreamUsage | None = None,
        hold_back: Callable[[int], bool] | None = None,
        *,
        share: Share,
        saturated_fallback: bool = False,
    ) -> web.StreamResponse:
        """`observer` sees the relayed answer's bytes (it may take out some: tenancy's usage).
        An answer whose status `hold_back` accepts is read whole and returned unsent (a route
        falls back on it, or a cascade gates it); so is every error made here. `share` is the
        caller's place in a saturated model's queue (the ticket's: tenancy owns who it is);
        `saturated_fallback` answers 429 at once instead of queueing."""
        model = target.model
        pick_started = time.perf_counter()
        if target.capacity_per_replica is not None:
            saturated = self._queue.queued(model) or not self._capacity.has_room(target)
            if saturated_fallback and saturated:  # others wait already, or no room now
                return _refused(model, "saturated")
            try:
                waited = await self._queue.wait_turn(
                    model,
                    share,
                    lambda: self._capacity.has_room(target),
                )
            except QueueRefused as exc:
                return _refused(model, exc.reason)
            pick_started += waited  # queueing is not the gateway's added latency
            target = self._capacity.current(target)
        try:
            return await self._forward(
                request, body, target, key, parse_seconds, pick_started, observer, hold_back
            )
        finally:
            if target.capacity_per_replica is not None:
                self._queue.slot_freed(model)

    async def _forward(
        self,
        request: web.Request,
        body: bytes,
        target: ModelTarget,
        key: int,
        parse_seconds: float,
        pick_started: float,
        observer: BodyUsage | StreamUsage | None,
        hold_back: Callable[[int], bool] | None,
    ) -> web.StreamResponse:
        model = target.model
        tried: list[str] = []  # pods that failed to connect, in order
        headers = _upstream_headers(request)
        for attempt in range(ATTEMPTS):
            avoid = self._tracker.failing_pods(target.replicas) | set(tried)
            avoid |= self._capacity.full_pods(target)  # taken unless nothing else is left
            loads = self._tracker.loads(target.replicas)
            chosen = pick(target.replicas, key, loads, self._load_factor, avoid)
            if chosen is None or chosen.replica.pod in tried:
                break  # no other replica to retry on
            replica = chosen.replica
            if attempt == 0:
                added = parse_seconds + time.perf_counter() - pick_started
                self._metrics.gateway_latency(model, added)
            else:
                self._metrics.retried(model, tried[-1])
            self._metrics.request_sent(model, replica.pod, chosen.picked_by)
            self._tracker.started(replica.url)
            self._metrics.in_flight_changed(model, replica.pod, +1)
            try:
                try:
                    upstream = await self._send(request, body, headers, replica)
                except aiohttp.SocketTimeoutError:
                    return error_response(
                        504, f"Replica {replica.pod} did not answer in time.",
                        type="upstream_error", code="upstream_timeout",
                    )  # fmt: skip
                except aiohttp.ClientError as exc:
                    logger.warning("replica %s sent a bad response: %r", replica.pod, exc)
                    return error_response(
                        502, f"Replica {replica.pod} sent a malformed response.",
                        type="upstream_error", code="upstream_bad_response",
                    )  # fmt: skip
                if upstream is None:
                    tried.append(replica.pod)
                    continue
                async with upstream:
                    others = any(
                        r.pod != replica.pod and r.pod not in tried for r in target.serving()
                    )
                    can_retry = attempt + 1 < ATTEMPTS and others
                    body_503 = await _small_503_body(upstream) if can_retry else None
                    if body_503 is None and hold_back is not None and hold_back(upstream.status):
                        return await self._held_back(upstream, replica)
                    if body_503 is None:
                        return await self._relay(request, upstream, replica, observer)
                    if _error_code(body_503) in NOT_SERVING_CODES:
                        logger.info("replica %s is not serving (503): trying another", replica.pod)
                        self._tracker.mark_failing(replica.url)
                        tried.append(replica.pod)
                        continue
                    headers_503 = _client_headers(upstream)
                    headers_503.popall("Content-Length", None)
                    return web.Response(status=503, headers=headers_503, body=body_503)
            finally:
                self._tracker.finished(replica.url)
                self._metrics.in_flight_changed(model, replica.pod, -1)
        return error_response(
            502,
            f"No replica of model `{model}` accepted the connection; retry shortly.",
            type="upstream_error",
            code="upstream_unavailable",
            retry_after_seconds=1,
        )

    async def _send(
        self, request: web.Request, body: bytes, headers: CIMultiDict[str], replica: Replica
    ) -> aiohttp.ClientResponse | None:
        """The upstream response (headers read), or None after a connection error."""
        try:
            return await self._session.post(
                replica.url + request.path_qs,
                data=body,
                headers=headers,
                timeout=self._timeout,
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            )
        except aiohttp.SocketTimeoutError:
            raise  # connected, then silence: the replica is slow, not gone; no retry
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            logger.warning("replica %s refused the connection: %s", replica.pod, exc)
            self._tracker.mark_failing(replica.url)
            return None
        except aiohttp.ClientConnectionError as exc:  # e.g. it died before answering
            logger.warning("replica %s dropped the connection: %s", replica.pod, exc)
            return None

    async def _held_back(
        self, upstream: aiohttp.ClientResponse, replica: Replica
    ) -> web.StreamResponse:
        try:
            body = await upstream.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("replica %s failed mid-response: %r", replica.pod, exc)
            return error_response(
                502, f"Replica {replica.pod} failed mid-response.",
                type="upstream_error", code="upstream_bad_response",
            )  # fmt: skip
        headers = _client_headers(upstream)
        headers.popall("Content-Length", None)
        return web.Response(status=upstream.status, headers=headers, body=body)

    async def _relay(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        replica: Replica,
        observer: BodyUsage | StreamUsage | None,
    ) -> web.StreamResponse:
        headers = _client_headers(upstream)
        if isinstance(observer, StreamUsage):
            headers.popall("Content-Length", None)  # it may take bytes out
        response = web.StreamResponse(
            status=upstream.status, reason=upstream.reason, headers=headers
        )
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                if observer is not None:
                    chunk = observer.feed(chunk)
                    if not chunk:
                        continue
                await response.write(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Too late to retry: end the client's connection without a clean end of body so
            # it sees the truncation.
            logger.warning("replica %s failed mid-response: %r", replica.pod, exc)
            if request.transport is not None:
                request.transport.close()
            return response
        try:
            if observer is not None and (tail := observer.finish()):
                await response.write(tail)
            await response.write_eof()
        except ConnectionResetError:  # the client left as the answer ended: nothing to send
            logger.info("client of replica %s left before the end of the answer", replica.pod)
        return response
