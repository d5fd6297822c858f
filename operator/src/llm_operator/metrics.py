"""The operator's own /metrics: the only module that touches prometheus_client.

llm_operator_reconcile_total{result}            reconciles by outcome (ok, error, invalid)
llm_operator_reconcile_duration_seconds         histogram of one observe -> decide -> act
llm_operator_reconcile_errors_total{kind}       temporary, permanent, rejected, unexpected
llm_operator_api_requests_total{verb}           requests the executor sent
llm_operator_deployment_replicas{namespace,deployment}          pods that exist
llm_operator_deployment_ready_replicas{namespace,deployment}    pods ready
llm_operator_deployment_desired_replicas{namespace,deployment}  what the operator wants

Cost and autoscaling, per LLMDeployment (names and labels agreed with the chart's dashboards
and alert rules; `capacity` is spec.accelerator.capacity, `accelerator` the resolved type):
llmops_deployment_cost_dollars_per_hour{namespace,deployment,accelerator,capacity}
llmops_deployment_budget_dollars_per_hour{namespace,deployment,accelerator,capacity}  with a budget
llmops_deployment_replicas{namespace,deployment,accelerator,capacity,state}  desired, current,
    ready, starting
llmops_deployment_cost_per_million_tokens{namespace,deployment,accelerator,capacity}  absent while
    no tokens are generated
llmops_autoscaler_decisions_total{namespace,deployment,direction}  up, down
llmops_autoscaler_limited{namespace,deployment,limit}  budget, max (builtin mode): 1 while binding
llmops_autoscaler_scrape_failures_total{namespace,deployment}
llmops_cold_start_seconds{namespace,llmdeployment}  histogram: pod created -> Ready, each pod once
    (the label name is the gateway contract's, issue 22)
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from llm_operator.plan.types import CostReport

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


_COST_LABELS = ("namespace", "deployment", "accelerator", "capacity")
COST = Gauge(
    "llmops_deployment_cost_dollars_per_hour",
    "Dollars per hour of the pods that exist (starting pods bill too).",
    _COST_LABELS,
    registry=REGISTRY,
)
BUDGET = Gauge(
    "llmops_deployment_budget_dollars_per_hour",
    "The LLMDeployment's budget (spec.autoscaling.budget.maxDollarsPerHour).",
    _COST_LABELS,
    registry=REGISTRY,
)
DEPLOYMENT_REPLICAS = Gauge(
    "llmops_deployment_replicas",
    "Replicas by state: desired (the operator's decision), current (pods that exist), ready, "
    "starting.",
    (*_COST_LABELS, "state"),
    registry=REGISTRY,
)
TOKEN_COST = Gauge(
    "llmops_deployment_cost_per_million_tokens",
    "Dollars per million generated tokens over the last scrape interval.",
    _COST_LABELS,
    registry=REGISTRY,
)
DECISIONS = Counter(
    "llmops_autoscaler_decisions",
    "Autoscaler decisions that changed the desired replicas.",
    ("namespace", "deployment", "direction"),
    registry=REGISTRY,
)
LIMITED = Gauge(
    "llmops_autoscaler_limited",
    "1 while the limit binds the autoscaler's decision, else 0.",
    ("namespace", "deployment", "limit"),
    registry=REGISTRY,
)
SCRAPE_FAILURES = Counter(
    "llmops_autoscaler_scrape_failures",
    "Pod /metrics scrapes that failed (timeout, refused, error, unreadable).",
    ("namespace", "deployment"),
    registry=REGISTRY,
)
COLD_START = Histogram(
    "llmops_cold_start_seconds",
    "Pod created -> Ready (image pull, weights load, server start), each pod once.",
    ("namespace", "llmdeployment"),
    buckets=(5, 10, 20, 30, 60, 90, 120, 180, 300, 600, 900, 1800, 3600),
    registry=REGISTRY,
)
_REPLICA_STATES = ("desired", "current", "ready", "starting")
# (namespace, deployment) -> (accelerator, capacity) of its series: a fallback or a capacity
# change moves them to new label values, and the old ones must go.
_cost_labels: dict[tuple[str, str], tuple[str, str]] = {}


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


def report_cost(namespace: str, name: str, report: CostReport) -> None:
    """Set one LLMDeployment's cost and autoscaler series from its reconcile's figures."""
    labels = (report.accelerator, report.capacity)
    old = _cost_labels.get((namespace, name))
    if old is not None and old != labels:
        _remove_cost_series(namespace, name, old)
    _cost_labels[namespace, name] = labels
    cost_labels = (namespace, name, *labels)
    COST.labels(*cost_labels).set(report.dollars_per_hour)
    _set_or_remove(BUDGET, cost_labels, report.budget_dollars_per_hour)
    _set_or_remove(TOKEN_COST, cost_labels, report.dollars_per_million_tokens)
    counts = (report.desired, report.current, report.ready, report.starting)
    for state, count in zip(_REPLICA_STATES, counts, strict=True):
        DEPLOYMENT_REPLICAS.labels(*cost_labels, state).set(count)
    for limit, binding in (("budget", report.budget_limited), ("max", report.max_limited)):
        _set_or_remove(LIMITED, (namespace, name, limit), None if binding is None else binding)
    # Counters start at 0 on the first report, so increase() also sees the first decision
    # (a series born at 1 has no earlier sample to increase from).
    decisions = {d: DECISIONS.labels(namespace, name, d) for d in ("up", "down")}
    failures = SCRAPE_FAILURES.labels(namespace, name)
    if report.direction:
        decisions["up" if report.direction > 0 else "down"].inc()
    if report.scrape_failures:
        failures.inc(report.scrape_failures)


def observe_cold_starts(namespace: str, name: str, seconds: tuple[float, ...]) -> None:
    for value in seconds:
        COLD_START.labels(namespace, name).observe(value)


def _set_or_remove(gauge: Gauge, labels: tuple[str, ...], value: float | None) -> None:
    if value is None:
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)
    else:
        gauge.labels(*labels).set(value)


def _remove_cost_series(namespace: str, name: str, labels: tuple[str, str]) -> None:
    for gauge in (COST, BUDGET, TOKEN_COST):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name, *labels)
    for state in _REPLICA_STATES:
        with contextlib.suppress(KeyError):
            DEPLOYMENT_REPLICAS.remove(namespace, name, *labels, state)


def forget(namespace: str, name: str) -> None:
    """Drop a deleted deployment's series."""
    for gauge in (REPLICAS, READY, DESIRED):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
    labels = _cost_labels.pop((namespace, name), None)
    if labels is not None:
        _remove_cost_series(namespace, name, labels)
    for limit in ("budget", "max"):
        with contextlib.suppress(KeyError):
            LIMITED.remove(namespace, name, limit)
    for direction in ("up", "down"):
        with contextlib.suppress(KeyError):
            DECISIONS.remove(namespace, name, direction)
    with contextlib.suppress(KeyError):
        SCRAPE_FAILURES.remove(namespace, name)
    with contextlib.suppress(KeyError):
        COLD_START.remove(namespace, name)
