"""The gateway's HTTP application: the OpenAI routes, probes and /metrics, on aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from llm_gateway.capacity import Capacity
from llm_gateway.directory import Directory, ModelTarget
from llm_gateway.errors import error_response, model_not_found
from llm_gateway.fair_queue import FairQueue
from llm_gateway.holding import Holder, HoldRejected, HoldTimedOut, ModelGone
from llm_gateway.load import LoadScraper, LoadTracker, replica_states
from llm_gateway.metrics import CONTENT_TYPE, GatewayMetrics
from llm_gateway.picker import request_key
from llm_gateway.proxy import Proxy
from llm_gateway.request_key import BadRequest, routing_fields
from llm_gateway.route_path import RoutePath
from llm_gateway.routes import Route, RouteLookup
from llm_gateway.settings import GatewaySettings
from llm_gateway.spend_ledger import SpendLedger, SpendRecorder
from llm_gateway.tenancy import TICKET, Tenancy
from llm_gateway.tenants import TenantLookup

logger = logging.getLogger(__name__)

REJECTED_RETRY_AFTER_SECONDS = 5  # over the hold bound: the queue is full right now
TIMED_OUT_RETRY_AFTER_SECONDS = 30  # no replica after the hold timeout: a cold start is slow
MODEL_LABEL = web.RequestKey("model_label", str)  # the metrics label once the model is known
CLIENT_CLOSED = 499  # nginx's code for "the client went away": no response was sent
UPSTREAM_IDLE_SECONDS = 4.0  # below llm-server's --http-keep-alive-seconds (5)


class Gateway:
    """The request path: parse → (hold) → pick → forward. One per application."""

    def __init__(
        self,
        settings: GatewaySettings,
        directory: Directory,
        metrics: GatewayMetrics,
        tenants: TenantLookup | None = None,
        routes: RouteLookup | None = None,
    ):
        self.settings = settings
        self.directory = directory
        self.metrics = metrics
        self.tenants = tenants
        self.routes = routes
        self.tenancy = Tenancy(
            tenants, metrics, settings.require_tenant_key, settings.replicas_hint
        )
        self.tracker = LoadTracker(settings.failing_seconds)
        self.queue = FairQueue(
            metrics, settings.max_queued_per_model, settings.queue_timeout_seconds
        )
        self.holder = Holder(
            directory, metrics, settings.max_held_per_model, settings.hold_timeout_seconds
        )
        # Both need the client session, made on start-up.
        self.proxy: Proxy | None = None
        self.scraper: LoadScraper | None = None
        self.route_path: RoutePath | None = None

    async def generate(self, request: web.Request) -> web.StreamResponse:
        try:
            response = await self._generate(request)
        except asyncio.CancelledError:
            self.metrics.response(request.get(MODEL_LABEL, ""), CLIENT_CLOSED)
            if TICKET in request:
                self.tenancy.settle(request[TICKET], CLIENT_CLOSED)
            raise
        self.metrics.response(request.get(MODEL_LABEL, ""), response.status)
        if TICKET in request:
            self.tenancy.settle(request[TICKET], response.status)
        return response

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        tenant = self.tenancy.identify(request.headers.get("Authorization"))
        if isinstance(tenant, web.Response):
            return tenant  # 401, before the body is read
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            limit = self.settings.max_body_bytes
            return error_response(413, f"The request body exceeds {limit} bytes.")
        parse_started = time.perf_counter()
        try:
            fields = routing_fields(body, self.settings.prefix_chars)
        except BadRequest as exc:
            return error_response(400, str(exc), param=exc.param)
        route = self.routes.get_route(fields.model) if self.routes is not None else None
        if route is not None:  # a route's name wins over a served model's
            request[MODEL_LABEL] = fields.model
            assert self.route_path is not None
            parse_seconds = time.perf_counter() - parse_started
            return await self.route_path.serve(request, route, tenant, body, fields, parse_seconds)
        target = self.directory.get(fields.model)
        if target is None:
            return model_not_found(fields.model)
        request[MODEL_LABEL] = fields.model  # a known model: clients must not mint label values
        ticket = self.tenancy.admit(tenant, target, body, fields.stream)
        if isinstance(ticket, web.Response):
            return ticket  # 403, 429
        request[TICKET] = ticket
        parse_seconds = time.perf_counter() - parse_started
        if not target.serving():
            try:
                target = await self.holder.wait_for_replica(target)
            except HoldRejected:
                return error_response(
                    429, f"Too many requests are waiting for model `{fields.model}` to start.",
                    type="rate_limit_error", code="too_many_held_requests",
                    retry_after_seconds=REJECTED_RETRY_AFTER_SECONDS,
                )  # fmt: skip
            except HoldTimedOut:
                timeout = self.settings.hold_timeout_seconds
                return error_response(
                    503, f"No replica of model `{fields.model}` became ready in {timeout:g} s.",
                    type="service_unavailable_error", code="no_ready_replica",
                    retry_after_seconds=TIMED_OUT_RETRY_AFTER_SECONDS,
                )  # fmt: skip
            except ModelGone:
                return model_not_found(fields.model)
        assert self.proxy is not None
        key = request_key(fields.model, fields.prefix)
        return await self.proxy.forward(
            request, ticket.upstream_body, target, key, parse_seconds, ticket.observer,
            share=ticket.share,
        )  # fmt: skip


GATEWAY = web.AppKey("gateway", Gateway)


def _model_card(target: ModelTarget) -> dict[str, object]:
    owner = f"{target.namespace}/{target.deployment}"
    return {"id": target.model, "object": "model", "created": 0, "owned_by": owner}


def _route_card(route: Route) -> dict[str, object]:
    return {"id": route.model, "object": "model", "created": 0, "owned_by": "/".join(route.key)}


async def list_models(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    routes = gateway.routes.routes() if gateway.routes is not None else []
    cards = {t.model: _model_card(t) for t in gateway.directory.models()}
    cards.update((r.model, _route_card(r)) for r in routes)  # a route's name wins
    return web.json_response({"object": "list", "data": [cards[m] for m in sorted(cards)]})


async def get_model(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    model = request.match_info["model"]
    route = gateway.routes.get_route(model) if gateway.routes is not None else None
    if route is not None:
        return web.json_response(_route_card(route))
    target = gateway.directory.get(model)
    if target is None:
        return model_not_found(model)
    return web.json_response(_model_card(target))


async def generate(request: web.Request) -> web.StreamResponse:
    return await request.app[GATEWAY].generate(request)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready once the directory has its first view (a KubeDirectory may say so by `synced()`),
    and the tenants theirs when keys are required (else every caller would get a 401)."""
    gateway = request.app[GATEWAY]
    keys_needed = gateway.settings.require_tenant_key
    for source in (gateway.directory, gateway.tenants if keys_needed else None):
        synced = getattr(source, "synced", None)
        if synced is not None and not synced():
            return web.json_response({"status": "syncing"}, status=503)
    return web.json_response({"status": "ready"})


async def metrics_endpoint(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    gateway.metrics.replica_counts(replica_states(gateway.directory))
    return web.Response(body=gateway.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})


@web.middleware
async def openai_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown paths and methods answer in OpenAI's error format too."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason, code=exc.reason.lower().replace(" ", "_"))


def build_app(
    settings: GatewaySettings,
    directory: Directory,
    metrics: GatewayMetrics | None = None,
    tenants: TenantLookup | None = None,
    routes: RouteLookup | None = None,
) -> web.Application:
    """`tenants`: where API keys are looked up (KubeTenants); None: every caller is anonymous.
    `routes`: public model names routed to several deployments (KubeRoutes, a RouteTable)."""
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[openai_errors])
    gateway = Gateway(settings, directory, metrics or GatewayMetrics(), tenants, routes)
    app[GATEWAY] = gateway

    async def client_session(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for source in (directory, tenants, routes):  # e.g. KubeDirectory's watches
                if isinstance(source, contextlib.AbstractAsyncContextManager):
                    await stack.enter_async_context(source)
            # One pooled session for every replica: keep-alive connections, no per-host cap.
            # Idle ones close before llm-server's own 5 s keep-alive does, so a request never
            # races the server closing the connection it was about to reuse.
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=UPSTREAM_IDLE_SECONDS)
            session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=connector, auto_decompress=False)
            )
            capacity = Capacity(directory, gateway.tracker)
            gateway.proxy = Proxy(
                session, capacity, gateway.tracker, gateway.queue, gateway.metrics,
                settings.load_factor,
                settings.connect_timeout_seconds, settings.upstream_timeout_seconds,
            )  # fmt: skip
            gateway.route_path = RoutePath(
                directory, gateway.metrics, gateway.tenancy, gateway.holder, gateway.proxy
            )
            gateway.scraper = LoadScraper(
                directory, gateway.tracker, session, settings.scrape_interval_seconds
            )
            tasks = [asyncio.create_task(gateway.scraper.run(), name="llm-gateway-scraper")]
            ledger = None
            if isinstance(tenants, SpendRecorder):  # KubeTenants: budgets live in status.spend
                ledger = SpendLedger(gateway.tenancy.limiter, tenants)
                tasks.append(asyncio.create_task(ledger.run(), name="llm-gateway-ledger"))
            yield
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if ledger is not None:
                await ledger.flush_once()  # what was spent since the last write

    app.cleanup_ctx.append(client_session)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
    app.router.add_post("/v1/completions", generate)
    app.router.add_post("/v1/chat/completions", generate)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app
