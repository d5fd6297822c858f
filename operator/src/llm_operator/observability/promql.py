"""Metric names and the PromQL building blocks shared by the recording rules and dashboards.

Label flow (docs/observability.md): the operator exports `namespace` and `deployment` as
labels of its own series (its ServiceMonitor keeps them with honorLabels); the llm-server
pods' series get `namespace`, `pod`, `service` and `container` from the Prometheus Operator
and `deployment` from the relabeling in the LLMDeployment's rendered ServiceMonitor.
"""

from __future__ import annotations

# The operator's own /metrics (llm_operator.metrics).
COST = "llmops_deployment_cost_dollars_per_hour"
BUDGET = "llmops_deployment_budget_dollars_per_hour"
REPLICAS = "llmops_deployment_replicas"  # state: desired, current, ready, starting
COST_PER_MILLION = "llmops_deployment_cost_per_million_tokens"
DECISIONS = "llmops_autoscaler_decisions_total"  # direction: up, down
LIMITED = "llmops_autoscaler_limited"  # limit: budget, max; 0 or 1
SCRAPE_FAILURES = "llmops_autoscaler_scrape_failures_total"
DESIRED_REPLICAS = "llm_operator_deployment_desired_replicas"
READY_REPLICAS = "llm_operator_deployment_ready_replicas"
# Pod created -> Ready; labelled `llmdeployment` (not `deployment`), by the gateway contract.
COLD_START = "llmops_cold_start_seconds"

# The gateway's /metrics (llm_gateway.metrics): labelled by the served `model`, and `pod` (the
# model server's pod the request went to), not by namespace/deployment.
GATEWAY_REQUESTS = "llm_gateway_requests_total"  # picked_by: affinity, load, only
GATEWAY_RESPONSES = "llm_gateway_responses_total"  # code: the HTTP status the client got
GATEWAY_IN_FLIGHT = "llm_gateway_in_flight"
GATEWAY_HELD = "llm_gateway_held_requests"
GATEWAY_HOLDS = "llm_gateway_holds_total"  # outcome: served, timeout, rejected
GATEWAY_HOLD_TIME = "llm_gateway_hold_seconds"
GATEWAY_RETRIES = "llm_gateway_retries_total"  # pod: the replica that failed
GATEWAY_ADDED_LATENCY = "llm_gateway_added_latency_seconds"
GATEWAY_REPLICAS = "llm_gateway_replicas"  # state: ready, not_ready, terminating
# Chargeback (issue 23), labelled namespace and tenant (the LLMTenant; "" = no key) and model.
TENANT_REQUESTS = "llm_gateway_tenant_requests_total"  # code: the HTTP status
TENANT_TOKENS = "llm_gateway_tenant_tokens_total"  # kind: prompt, completion
TENANT_DOLLARS = "llm_gateway_tenant_dollars_total"
TENANT_REJECTIONS = "llm_gateway_tenant_rejections_total"  # limit: the limit that refused
# A saturated model's fair queue (tenants share it by weight): waiting now, and refused (429)
# by tenant and reason (queue_full, shed, queue_timeout).
QUEUED = "llm_gateway_queued_requests"
QUEUE_REJECTIONS = "llm_gateway_queue_rejections_total"
TENANT_METRICS = (TENANT_REQUESTS, TENANT_TOKENS, TENANT_DOLLARS, TENANT_REJECTIONS)
UNPRICED_TOKENS = "llm_gateway_unpriced_tokens_total"  # model only: no $/1M tokens known

# The llm-server pods (vLLM's names, llm_server.metrics).
WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
PREEMPTIONS = "vllm:num_preemptions_total"
TTFT = "vllm:time_to_first_token_seconds"
INTER_TOKEN = "vllm:inter_token_latency_seconds"
E2E_LATENCY = "vllm:e2e_request_latency_seconds"
QUEUE_TIME = "vllm:request_queue_time_seconds"
REQUEST_SUCCESS = "vllm:request_success_total"  # finished_reason: stop, length, abort
PREFIX_CACHE_QUERIES = "vllm:prefix_cache_queries_total"
PREFIX_CACHE_HITS = "vllm:prefix_cache_hits_total"
RESPONSE_CACHE_HITS = "llm_server_response_cache_hits_total"
RESPONSE_CACHE_MISSES = "llm_server_response_cache_misses_total"
REJECTED = "llm_server_rejected_requests_total"  # reason: queue_full, draining, ...
BATCH_SIZE = "llm_server_batch_size"
SERVER_CONTAINER = "llm-server"  # the pods' container name, hence the `container` label

# Dashboard variables (Grafana substitutes them before the query reaches Prometheus).
NAMESPACE_VAR = "$namespace"
DEPLOYMENT_VAR = "$deployment"
MODEL_VAR = "$model"
RATE_INTERVAL = "$__rate_interval"

BY_DEPLOYMENT = "namespace, deployment"


def selector(metric: str, *matchers: str) -> str:
    """`metric{m1, m2}`, or the bare name when nothing filters it (the rules' inputs)."""
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def eq(label: str, value: str) -> str:
    return f'{label}="{value}"'


def matches(label: str, pattern: str) -> str:
    return f'{label}=~"{pattern}"'


def in_namespace() -> str:
    return matches("namespace", NAMESPACE_VAR)


def in_deployment() -> str:
    return matches("deployment", DEPLOYMENT_VAR)


def of_model() -> str:
    return matches("model", MODEL_VAR)


def scoped(metric: str, *matchers: str) -> str:
    """A deployment-level series filtered by both dashboard variables."""
    return selector(metric, in_namespace(), in_deployment(), *matchers)


def rate(series: str, window: str = RATE_INTERVAL) -> str:
    return f"rate({series}[{window}])"


def quantile_of(q: float, histogram: str, by: str, window: str, *matchers: str) -> str:
    """histogram_quantile over the bucket rates of `histogram`, aggregated `by` (plus le)."""
    buckets = selector(f"{histogram}_bucket", *matchers)
    return f"histogram_quantile({q}, sum by ({by}, le) ({rate(buckets, window)}))"
