"""The operator's own /metrics: the only module that touches prometheus_client.

llm_operator_reconcile_total{result}            reconciles by outcome (ok, error, invalid)
llm_operator_reconcile_duration_seconds         histogram of one observe -> decide -> act
llm_operator_reconcile_errors_total{kind}       temporary, permanent, rejected, unexpected
llm_operator_api_requests_total{verb}           requests the executor sent
llm_operator_deployment_replicas{namespace,deployment}          pods that exist
llm_operator_deployment_ready_replicas{namespace,deployment}    pods ready
llm_operator_deployment_desired_replicas{namespace,deployment}  what the operator wants
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)
_LABELS = ("namespace", "deployment")

RECONCILES = Counter(
    "llm_operator_reconcile", "Reconciles by outcome.", ("result",), registry=REGISTRY
)
RECONCILE_SECONDS = Histogram(
    "llm_operator_reconcile_duration_seconds",
    "Duration of one observe-decide-act reconcile.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
ERRORS = Counter(
    "llm_operator_reconcile_errors", "Reconcile errors by kind.", ("kind",), registry=REGISTRY
)
API_REQUESTS = Counter(
    "llm_operator_api_requests", "Kubernetes API requests sent.", ("verb",), registry=REGISTRY
)
REPLICAS = Gauge("llm_operator_deployment_replicas", "Pods that exist.", _LABELS, registry=REGISTRY)
READY = Gauge(
    "llm_operator_deployment_ready_replicas", "Pods that are ready.", _LABELS, registry=REGISTRY
)
DESIRED = Gauge(
    "llm_operator_deployment_desired_replicas",
    "Replicas the operator wants.",
    _LABELS,
    registry=REGISTRY,
)


def serve(port: int) -> None:
    """Serve /metrics on `port` (0 = do not serve)."""
    if port:
        start_http_server(port, registry=REGISTRY)


def observe_reconcile(seconds: float, result: str) -> None:
    RECONCILES.labels(result).inc()
    RECONCILE_SECONDS.observe(seconds)


def count_error(kind: str) -> None:
    ERRORS.labels(kind).inc()


def count_request(verb: str, _path: str) -> None:
    API_REQUESTS.labels(verb).inc()


def set_replicas(namespace: str, name: str, replicas: int, ready: int, desired: int) -> None:
    REPLICAS.labels(namespace, name).set(replicas)
    READY.labels(namespace, name).set(ready)
    DESIRED.labels(namespace, name).set(desired)


def forget(namespace: str, name: str) -> None:
    """Drop a deleted deployment's series."""
    for gauge in (REPLICAS, READY, DESIRED):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
