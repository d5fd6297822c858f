"""The gateway's Prometheus metrics: the only module that imports prometheus_client.

Names and labels are fixed by the gateway contract (docs/gateway.md has the table). Each
GatewayMetrics owns its registry so several gateways (tests, benchmarks) live in one process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PickedBy = Literal["affinity", "load", "only"]
HoldOutcome = Literal["served", "timeout", "rejected"]
REPLICA_STATES = ("ready", "not_ready", "terminating")
TenantLabels = tuple[str, str, str]  # (namespace, tenant, model)
RouteOutcome = Literal["served", "fallback", "escalated", "failed"]
QueueRejection = Literal["queue_full", "shed", "queue_timeout"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# The gateway adds well under a millisecond: the buckets resolve 50 µs to 50 ms.
ADDED_LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
)  # fmt: skip
# Holds last as long as a cold start: seconds to minutes.
HOLD_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300, 600)
# A saturated model's queue: as long as a few generations, up to the queue timeout.
QUEUE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "llm_gateway_requests", "Requests sent to a replica, by how it was picked",
            ["model", "pod", "picked_by"], registry=r,
        )  # fmt: skip
        self.responses = Counter(
            "llm_gateway_responses", "Responses the client got, by HTTP status",
            ["model", "code"], registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "llm_gateway_in_flight", "Requests in flight to a replica", ["model", "pod"],
            registry=r,
        )  # fmt: skip
        self.held = Gauge(
            "llm_gateway_held_requests", "Requests held now, waiting for a replica", ["model"],
            registry=r,
        )  # fmt: skip
        self.holds = Counter(
            "llm_gateway_holds", "Held requests, by how the hold ended", ["model", "outcome"],
            registry=r,
        )  # fmt: skip
        self.hold_seconds = Histogram(
            "llm_gateway_hold_seconds", "Time a request was held", ["model"],
            buckets=HOLD_BUCKETS, registry=r,
        )  # fmt: skip
        self.queued = Gauge(
            "llm_gateway_queued_requests",
            "Requests waiting now in a saturated model's fair queue", ["model"], registry=r,
        )  # fmt: skip
        self.queue_seconds = Histogram(
            "llm_gateway_queue_seconds", "Time a dispatched request waited in the fair queue",
            ["model"], buckets=QUEUE_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_rejections = Counter(
            "llm_gateway_queue_rejections",
            "Requests a saturated model refused (429), by tenant and why",
            ["model", "namespace", "tenant", "reason"], registry=r,
        )  # fmt: skip
        self.retries = Counter(
            "llm_gateway_retries", "Requests retried after a connection error, by failed pod",
            ["model", "pod"], registry=r,
        )  # fmt: skip
        self.added_latency = Histogram(
            "llm_gateway_added_latency_seconds",
            "Gateway time before the upstream request is sent (parse and pick)",
            ["model"], buckets=ADDED_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.replicas = Gauge(
            "llm_gateway_replicas", "Replicas known per model, by state", ["model", "state"],
            registry=r,
        )  # fmt: skip
        # Chargeback (tenants): `tenant` "" is a request without a known key.
        tenant_labels = ["namespace", "tenant", "model"]
        self.tenant_requests = Counter(
            "llm_gateway_tenant_requests", "Tenants' requests, by the HTTP status they got",
            [*tenant_labels, "code"], registry=r,
        )  # fmt: skip
        self.tenant_tokens = Counter(
            "llm_gateway_tenant_tokens", "Tenants' tokens, from the answers' usage",
            [*tenant_labels, "kind"], registry=r,
        )  # fmt: skip
        self.tenant_dollars = Counter(
            "llm_gateway_tenant_dollars", "Tenants' spend: tokens x the model's $/1M tokens",
            tenant_labels, registry=r,
        )  # fmt: skip
        self.tenant_rejections = Counter(
            "llm_gateway_tenant_rejections", "Tenants' requests refused by a limit",
            [*tenant_labels, "limit"], registry=r,
        )  # fmt: skip
        self.unpriced_tokens = Counter(
            "llm_gateway_unpriced_tokens", "Tokens of models without status.cost (charged $0)",
            ["model"], registry=r,
        )  # fmt: skip

        # Routes (docs/traffic.md): one request count per attempt; dollars of every attempt and
        # what a direct call would have cost.
        route_labels = ["namespace", "route"]
        self.route_requests = Counter(
            "llm_gateway_route_requests", "Routed attempts, by target and what became of them",
            [*route_labels, "target", "outcome"], registry=r,
        )  # fmt: skip
        self.cascade_escalations = Counter(
            "llm_gateway_cascade_escalations", "Cascade answers that failed the gate, by step",
            [*route_labels, "step", "gate"], registry=r,
        )  # fmt: skip
        self.route_dollars = Counter(
            "llm_gateway_route_dollars", "Dollars of every routed attempt (discarded ones too)",
            route_labels, registry=r,
        )  # fmt: skip
        self.route_direct_dollars = Counter(
            "llm_gateway_route_direct_dollars",
            "Dollars the answered requests would have cost sent directly to the cascade's last "
            "step or the split's picked target", route_labels, registry=r,
        )  # fmt: skip

    def request_sent(self, model: str, pod: str, picked_by: PickedBy) -> None:
        self.requests.labels(model, pod, picked_by).inc()

    def response(self, model: str, code: int) -> None:
        self.responses.labels(model, str(code)).inc()

    def in_flight_changed(self, model: str, pod: str, delta: int) -> None:
        self.in_flight.labels(model, pod).inc(delta)

    def held_changed(self, model: str, delta: int) -> None:
        self.held.labels(model).inc(delta)

    def hold_ended(self, model: str, outcome: HoldOutcome, seconds: float | None) -> None:
        self.holds.labels(model, outcome).inc()
        if seconds is not None:
            self.hold_seconds.labels(model).observe(seconds)

    def queued_changed(self, model: str, delta: int) -> None:
        self.queued.labels(model).inc(delta)

    def queue_waited(self, model: str, seconds: float) -> None:
        self.queue_seconds.labels(model).observe(seconds)

    def queue_rejected(self, model: str, tenant: tuple[str, str], reason: QueueRejection) -> None:
        self.queue_rejections.labels(model, *tenant, reason).inc()

    def retried(self, model: str, failed_pod: str) -> None:
        self.retries.labels(model, failed_pod).inc()

    def gateway_latency(self, model: str, seconds: float) -> None:
        self.added_latency.labels(model).observe(seconds)

    def replica_counts(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        """Replace the replicas gauge with `counts` (model -> state -> count)."""
        self.replicas.clear()
        for model, by_state in counts.items():
            for state in REPLICA_STATES:
                self.replicas.labels(model, state).set(by_state.get(state, 0))

    def tenant_request(self, labels: TenantLabels, code: int) -> None:
        self.tenant_requests.labels(*labels, str(code)).inc()

    def tenant_usage(
        self, labels: TenantLabels, prompt: int, completion: int, dollars: float | None
    ) -> None:
        """An answer's tokens, and its dollars (None: the model has no price)."""
        self.tenant_tokens.labels(*labels, "prompt").inc(prompt)
        self.tenant_tokens.labels(*labels, "completion").inc(completion)
        if dollars is None:
            self.unpriced_tokens.labels(labels[2]).inc(prompt + completion)
        else:
            self.tenant_dollars.labels(*labels).inc(dollars)

    def tenant_rejected(self, labels: TenantLabels, limit: str) -> None:
        self.tenant_rejections.labels(*labels, limit).inc()

    def route_attempt(self, namespace: str, route: str, target: str, outcome: RouteOutcome) -> None:
        self.route_requests.labels(namespace, route, target, outcome).inc()

    def escalated(self, namespace: str, route: str, step: str, gate: str) -> None:
        self.cascade_escalations.labels(namespace, route, step, gate).inc()

    def route_spent(self, namespace: str, route: str, dollars: float, direct: float) -> None:
        """Dollars of attempts (`dollars`) and of the direct call (`direct`, for an answered
        request; 0 otherwise)."""
        self.route_dollars.labels(namespace, route).inc(dollars)
        self.route_direct_dollars.labels(namespace, route).inc(direct)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
