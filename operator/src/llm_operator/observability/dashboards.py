"""The two Grafana dashboards: Fleet cost and Deployment performance.

Every query filters by the namespace and deployment variables (namespace-level showback
panels by namespace only) and reads the recorded series of rules.py where one exists.
"""

from __future__ import annotations

from typing import Any

from llm_operator.observability import promql as q
from llm_operator.observability import rules as r
from llm_operator.observability.chargeback import tenants_row
from llm_operator.observability.gateway_panels import gateway_row, model_variable
from llm_operator.observability.grafana import (
    Annotation,
    Dashboard,
    Panel,
    Query,
    Row,
    Variable,
)
from llm_operator.observability.promql import BY_DEPLOYMENT, in_namespace, scoped, selector

WHERE = "{{namespace}}/{{deployment}}"
HOURS_PER_MONTH = 730


def _variables(source_metric: str) -> tuple[Variable, Variable]:
    return (
        Variable("namespace", "Namespace", f"label_values({source_metric}, namespace)"),
        Variable(
            "deployment",
            "LLMDeployment",
            f"label_values({selector(source_metric, in_namespace())}, deployment)",
        ),
    )


def _stat(title: str, description: str, queries: tuple[Query, ...], **options: Any) -> Panel:
    """A single-number panel of the fleet row (six across)."""
    return Panel(title, description, queries, kind="stat", width=4, height=5, **options)


def fleet_cost() -> Dashboard:
    cost = scoped(r.DEPLOYMENT_COST)
    budget = scoped(r.DEPLOYMENT_BUDGET)
    tokens = scoped(r.DEPLOYMENT_GENERATION_TOKENS)
    fleet = Row(
        "Fleet",
        (
            _stat(
                "Spend now",
                "Dollars per hour of every selected LLMDeployment's replicas, at catalog prices.",
                (Query(f"sum({cost})", "$/h"),),
                unit="currencyUSD",
                decimals=2,
            ),
            _stat(
                "Projected month",
                f"Spend now x {HOURS_PER_MONTH} hours.",
                (Query(f"sum({cost}) * {HOURS_PER_MONTH}", "$/month"),),
                unit="currencyUSD",
                decimals=0,
            ),
            _stat(
                "Budgets",
                "Sum of maxDollarsPerHour of the selected LLMDeployments that set one.",
                (Query(f"sum({budget})", "$/h"),),
                unit="currencyUSD",
                decimals=2,
            ),
            _stat(
                "Budget used",
                "Spend of the deployments that have a budget, over those budgets.",
                (
                    Query(
                        f"sum({cost} and on ({BY_DEPLOYMENT}) {budget}) / sum({budget})",
                        "used",
                    ),
                ),
                unit="percentunit",
                thresholds=((0.8, "yellow"), (1.0, "red")),
            ),
            _stat(
                "$ per 1M generated tokens",
                "Fleet spend over its generated tokens (5-minute rate); empty while idle.",
                (Query(f"sum({cost}) / (sum({tokens}) > 0) / 3600 * 1e6", "$/1M tokens"),),
                unit="currencyUSD",
                decimals=2,
            ),
            _stat(
                "Replicas",
                "Pods of the selected LLMDeployments by state.",
                (
                    Query(f"sum({scoped(q.REPLICAS, q.eq('state', 'ready'))})", "ready"),
                    Query(f"sum({scoped(q.REPLICAS, q.eq('state', 'desired'))})", "desired"),
                ),
            ),
        ),
    )
    per_deployment = Row(
        "Per deployment",
        (
            Panel(
                "$/h per deployment",
                "Cost of each LLMDeployment's current replicas.",
                (Query(cost, WHERE),),
                unit="currencyUSD",
                stacked=True,
            ),
            Panel(
                "$ per 1M generated tokens per deployment",
                "The operator's figure (also in status.cost): $/h over the pods' "
                "generated-token rate.",
                (Query(scoped(r.DEPLOYMENT_COST_PER_MILLION), WHERE),),
                unit="currencyUSD",
            ),
            Panel(
                "Budget used per deployment",
                "Spend over spec.autoscaling.budget.maxDollarsPerHour; 100 % means the "
                "autoscaler cannot add a replica.",
                (Query(scoped(r.DEPLOYMENT_BUDGET_USAGE), WHERE),),
                kind="bargauge",
                unit="percentunit",
                thresholds=((0.8, "yellow"), (1.0, "red")),
            ),
            Panel(
                "Autoscaler held back",
                "1 while the budget or replicas.max stops the autoscaler from adding replicas.",
                (
                    Query(
                        f"max by ({BY_DEPLOYMENT}, limit) ({scoped(q.LIMITED)})",
                        WHERE + " by {{limit}}",
                    ),
                ),
            ),
        ),
    )
    capacity = Row(
        "Capacity",
        (
            Panel(
                "Replicas by accelerator and capacity type",
                "Pods that exist (state current), by GPU type and on-demand / spot.",
                (
                    Query(
                        f"sum by (accelerator, capacity) "
                        f"({scoped(q.REPLICAS, q.eq('state', 'current'))})",
                        "{{accelerator}} {{capacity}}",
                    ),
                ),
                stacked=True,
            ),
            Panel(
                "$/h by accelerator and capacity type",
                "Where the money goes, by GPU type and on-demand / spot.",
                (
                    Query(
                        f"sum by (accelerator, capacity) ({scoped(q.COST)})",
                        "{{accelerator}} {{capacity}}",
                    ),
                ),
                unit="currencyUSD",
                stacked=True,
            ),
        ),
    )
    namespace_only = in_namespace()
    showback = Row(
        "Showback by namespace",
        (
            Panel(
                "$/h per namespace",
                "Every LLMDeployment of the namespace.",
                (Query(selector(r.NAMESPACE_COST, namespace_only), "{{namespace}}"),),
                unit="currencyUSD",
                stacked=True,
                width=8,
            ),
            Panel(
                "$ per 1M generated tokens per namespace",
                "The namespace's spend over its generated tokens (5-minute rate).",
                (Query(selector(r.NAMESPACE_COST_PER_MILLION, namespace_only), "{{namespace}}"),),
                unit="currencyUSD",
                width=8,
            ),
            Panel(
                "Budget used per namespace",
                "Spend of the namespace's budgeted deployments over their budgets.",
                (Query(selector(r.NAMESPACE_BUDGET_USAGE, namespace_only), "{{namespace}}"),),
                kind="bargauge",
                unit="percentunit",
                thresholds=((0.8, "yellow"), (1.0, "red")),
                width=8,
            ),
        ),
    )
    return Dashboard(
        uid="llmops-fleet-cost",
        title="LLM deployments / Fleet cost",
        description="What the LLMDeployments cost, against their budgets, by namespace, "
        "and what each tenant of the gateway spends.",
        variables=(*_variables(q.COST), model_variable()),
        rows=(fleet, per_deployment, capacity, showback, tenants_row()),
    )


def _latency(title: str, description: str, p50: str, p99: str) -> Panel:
    return Panel(
        title,
        description,
        (Query(scoped(p50), "p50 " + WHERE), Query(scoped(p99), "p99 " + WHERE)),
        unit="s",
    )


def _p99(histogram: str) -> str:
    matchers = (q.in_namespace(), q.in_deployment())
    return q.quantile_of(0.99, histogram, BY_DEPLOYMENT, q.RATE_INTERVAL, *matchers)


def _per_deployment_rate(metric: str) -> str:
    return f"sum by ({BY_DEPLOYMENT}) ({q.rate(scoped(metric))})"


def _hit_rate(title: str, description: str, hits: str, *looked_up: str) -> Panel:
    """hits / (sum of the `looked_up` counters), per deployment."""
    total = " + ".join(_per_deployment_rate(metric) for metric in looked_up)
    return Panel(
        title,
        description,
        (Query(f"{_per_deployment_rate(hits)} / ({total})", WHERE),),
        unit="percentunit",
        width=8,
    )


def _per_pod(title: str, description: str, expr: str, how: str = "sum", **options: Any) -> Panel:
    """One series per pod of the selected deployment (`how`: sum or max over its series)."""
    return Panel(
        title,
        description,
        (Query(f"{how} by (pod) ({expr})", "{{pod}}"),),
        width=8,
        **options,
    )


def deployment_performance() -> Dashboard:
    load = Row(
        "Load and replicas",
        (
            _per_pod(
                "Queue depth",
                "Requests waiting to be scheduled, per pod: the autoscaler's signal.",
                scoped(q.WAITING),
            ),
            _per_pod(
                "Running requests", "Requests in each pod's running batch.", scoped(q.RUNNING)
            ),
            Panel(
                "Replicas: desired vs ready",
                "What the autoscaler wants, what exists, what serves, what is still loading.",
                (Query(f"sum by (state) ({scoped(q.REPLICAS)})", "{{state}}"),),
                width=8,
            ),
            Panel(
                "Requests per second",
                "Finished requests by finish reason (stop, length, abort).",
                (
                    Query(
                        f"sum by (finished_reason) ({q.rate(scoped(q.REQUEST_SUCCESS))})",
                        "{{finished_reason}}",
                    ),
                ),
            ),
            Panel(
                "Rejected requests per second",
                "Requests refused before the engine, by reason (queue_full, draining, "
                "invalid_parameter, ...).",
                (Query(f"sum by (reason) ({q.rate(scoped(q.REJECTED))})", "{{reason}}"),),
            ),
        ),
    )
    latency = Row(
        "Latency",
        (
            _latency(
                "Time to first token",
                "Arrival to first token, 5-minute p50 and p99 (recorded).",
                r.TTFT_P50,
                r.TTFT_P99,
            ),
            _latency(
                "Inter-token latency",
                "Between consecutive streamed tokens, 5-minute p50 and p99 (recorded).",
                r.INTER_TOKEN_P50,
                r.INTER_TOKEN_P99,
            ),
            Panel(
                "End-to-end latency and queue time, p99",
                "Arrival to last token, and time spent waiting before being scheduled.",
                (
                    Query(_p99(q.E2E_LATENCY), "end-to-end " + WHERE),
                    Query(_p99(q.QUEUE_TIME), "queue " + WHERE),
                ),
                unit="s",
            ),
            Panel(
                "Requests over the TTFT objective",
                f"Share of requests whose first token took over {r.TTFT_SLO_SECONDS:g} s "
                f"(objective: under {1 - r.TTFT_SLO_TARGET:.0%}), over 5 minutes and 1 hour.",
                (
                    Query(scoped(r.ttft_slo_misses("5m")), "5m " + WHERE),
                    Query(scoped(r.ttft_slo_misses("1h")), "1h " + WHERE),
                ),
                unit="percentunit",
            ),
        ),
    )
    throughput = Row(
        "Throughput",
        (
            Panel(
                "Tokens per second",
                "Prompt tokens prefilled and tokens generated (5-minute rate, recorded).",
                (
                    Query(scoped(r.DEPLOYMENT_PROMPT_TOKENS), "prompt " + WHERE),
                    Query(scoped(r.DEPLOYMENT_GENERATION_TOKENS), "generated " + WHERE),
                ),
                width=8,
            ),
            _per_pod(
                "Batch size",
                "Sequences in each pod's last engine step.",
                scoped(q.BATCH_SIZE),
                how="max",
            ),
            _per_pod(
                "Preemptions per second",
                "Requests preempted (recomputed later) because the KV cache was full.",
                q.rate(scoped(q.PREEMPTIONS)),
            ),
        ),
    )
    caches = Row(
        "Caches",
        (
            _per_pod(
                "KV cache usage",
                "Share of each pod's KV-cache blocks in use; near 100 % means preemptions.",
                scoped(q.KV_CACHE_USAGE),
                how="max",
                unit="percentunit",
                thresholds=((0.9, "red"),),
            ),
            _hit_rate(
                "Prefix cache hit rate",
                "Prompt tokens found in the prefix cache over prompt tokens looked up.",
                q.PREFIX_CACHE_HITS,
                q.PREFIX_CACHE_QUERIES,
            ),
            _hit_rate(
                "Response cache hit rate",
                "Cacheable requests answered from the response cache (needs --response-cache).",
                q.RESPONSE_CACHE_HITS,
                q.RESPONSE_CACHE_HITS,
                q.RESPONSE_CACHE_MISSES,
            ),
        ),
    )
    autoscaler = Row(
        "Autoscaler",
        (
            Panel(
                "Scaling decisions",
                "Replica changes the autoscaler decided, by direction (also shown as "
                "annotations on every panel).",
                (
                    Query(
                        f"sum by (direction) (increase({scoped(q.DECISIONS)}[{q.RATE_INTERVAL}]))",
                        "{{direction}}",
                    ),
                ),
                width=8,
            ),
            Panel(
                "Held back by",
                "1 while the budget or replicas.max stops the autoscaler from adding replicas.",
                (Query(f"max by (limit) ({scoped(q.LIMITED)})", "{{limit}}"),),
                width=8,
            ),
            Panel(
                "Autoscaler scrape failures per second",
                "The operator could not read a ready pod's /metrics (its load counts as unknown).",
                (Query(_per_deployment_rate(q.SCRAPE_FAILURES), WHERE),),
                width=8,
            ),
        ),
    )
    # The operator creates both directions' counters at 0 on a deployment's first reconcile,
    # so increase() sees its decisions (and ignores the reset of an operator restart). A
    # decision in the very first reconcile after a start gives a series born at 1: the
    # `unless ... offset` term catches series that did not exist a minute ago.
    counter = scoped(q.DECISIONS)
    decisions = Annotation(
        name="Autoscaler decisions",
        expr=f"sum by ({BY_DEPLOYMENT}, direction) "
        f"(increase({counter}[1m]) > 0 or ({counter} > 0 unless {counter} offset 1m))",
        title="Scale {{direction}}",
        text="{{namespace}}/{{deployment}}",
        tag_keys="namespace,deployment,direction",
    )
    return Dashboard(
        uid="llmops-deployment-performance",
        title="LLM deployments / Deployment performance",
        description="Load, latency, throughput, caches and autoscaling of LLMDeployments, "
        "and the gateway in front of them.",
        variables=(*_variables(q.WAITING), model_variable()),
        rows=(load, latency, throughput, caches, autoscaler, gateway_row()),
        annotations=(decisions,),
        time_from="now-1h",
    )


def dashboards() -> dict[str, Dashboard]:
    """File name (without .json) -> dashboard."""
    return {"fleet-cost": fleet_cost(), "deployment-performance": deployment_performance()}
