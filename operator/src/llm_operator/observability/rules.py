"""Prometheus recording rules and alerts for LLMDeployments (a promtool rules file).

Recorded series follow Prometheus' `level:metric:operation` convention: `namespace_deployment:`
per LLMDeployment, `namespace:` per namespace (showback). The dashboards read these names
from here, so a rename cannot leave a panel behind. Thresholds are fixed defaults, documented
in docs/observability.md; the chart ships this file as a PrometheusRule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_operator.observability import promql as q
from llm_operator.observability.chargeback import chargeback_rules
from llm_operator.observability.promql import BY_DEPLOYMENT, selector

# Recorded series.
DEPLOYMENT_COST = "namespace_deployment:llmops_cost_dollars_per_hour:sum"
DEPLOYMENT_BUDGET = "namespace_deployment:llmops_budget_dollars_per_hour:max"
DEPLOYMENT_BUDGET_USAGE = "namespace_deployment:llmops_budget_usage:ratio"
DEPLOYMENT_COST_PER_MILLION = "namespace_deployment:llmops_cost_per_million_tokens:max"
NAMESPACE_COST = "namespace:llmops_cost_dollars_per_hour:sum"
NAMESPACE_BUDGET = "namespace:llmops_budget_dollars_per_hour:sum"
NAMESPACE_BUDGET_USAGE = "namespace:llmops_budget_usage:ratio"
NAMESPACE_COST_PER_MILLION = "namespace:llmops_cost_per_million_tokens:ratio"
DEPLOYMENT_GENERATION_TOKENS = "namespace_deployment:vllm_generation_tokens:rate5m"
DEPLOYMENT_PROMPT_TOKENS = "namespace_deployment:vllm_prompt_tokens:rate5m"
NAMESPACE_GENERATION_TOKENS = "namespace:vllm_generation_tokens:rate5m"
NAMESPACE_PROMPT_TOKENS = "namespace:vllm_prompt_tokens:rate5m"
TTFT_P50 = "namespace_deployment:vllm_time_to_first_token_seconds:p50_5m"
TTFT_P99 = "namespace_deployment:vllm_time_to_first_token_seconds:p99_5m"
INTER_TOKEN_P50 = "namespace_deployment:vllm_inter_token_latency_seconds:p50_5m"
INTER_TOKEN_P99 = "namespace_deployment:vllm_inter_token_latency_seconds:p99_5m"

# The TTFT objective: 99 % of requests see their first token within 2.5 s. The threshold must
# be a bucket boundary of vllm:time_to_first_token_seconds (a test checks it).
TTFT_SLO_SECONDS = 2.5
TTFT_SLO_TARGET = 0.99
SLO_WINDOWS = ("5m", "30m", "1h", "6h")
# Multi-window burn rates (Google SRE workbook): 14.4x spends 2 % of a 30-day error budget in
# one hour (page); 6x spends 5 % in six hours (ticket).
FAST_BURN = 14.4
SLOW_BURN = 6.0

BUDGET_EXHAUSTED_RATIO = 1.0


def ttft_slo_misses(window: str) -> str:
    """Recorded share of requests over the TTFT objective during `window`."""
    return f"namespace_deployment:vllm_ttft_slo_misses:ratio_rate{window}"


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str

    def as_rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": {"summary": self.summary, "description": self.description},
        }


def _record(name: str, expr: str) -> dict[str, str]:
    return {"record": name, "expr": expr}


def cost_rules() -> list[dict[str, str]]:
    """Token throughput; $/h, budget and budget use per deployment and namespace; $/1M tokens.

    One group: rules of a group run in order, so the ratios read this evaluation's inputs.
    """
    cost = selector(q.COST)
    budget = selector(q.BUDGET)
    # The budget is per deployment, repeated on each accelerator series: max, not sum.
    return [
        *throughput_rules(),
        _record(DEPLOYMENT_COST, f"sum by ({BY_DEPLOYMENT}) ({cost})"),
        _record(DEPLOYMENT_BUDGET, f"max by ({BY_DEPLOYMENT}) ({budget})"),
        _record(DEPLOYMENT_BUDGET_USAGE, f"{DEPLOYMENT_COST} / {DEPLOYMENT_BUDGET}"),
        # The operator's own figure, the one status.cost and `llmops cost` show.
        _record(
            DEPLOYMENT_COST_PER_MILLION,
            f"max by ({BY_DEPLOYMENT}) ({selector(q.COST_PER_MILLION)})",
        ),
        _record(NAMESPACE_COST, f"sum by (namespace) ({DEPLOYMENT_COST})"),
        _record(NAMESPACE_BUDGET, f"sum by (namespace) ({DEPLOYMENT_BUDGET})"),
        # Only deployments that have a budget count against it.
        _record(
            NAMESPACE_BUDGET_USAGE,
            f"sum by (namespace) ({DEPLOYMENT_COST} and on ({BY_DEPLOYMENT}) "
            f"{DEPLOYMENT_BUDGET}) / {NAMESPACE_BUDGET}",
        ),
        # Token-weighted: the namespace's dollars over its generated tokens; no sample while
        # nothing is generated (rather than +Inf).
        _record(
            NAMESPACE_COST_PER_MILLION,
            f"{NAMESPACE_COST} / ({NAMESPACE_GENERATION_TOKENS} > 0) / 3600 * 1e6",
        ),
    ]


def throughput_rules() -> list[dict[str, str]]:
    """Prompt and generated tokens per second, per deployment and namespace."""
    rules = []
    for recorded, counter in (
        (DEPLOYMENT_GENERATION_TOKENS, q.GENERATION_TOKENS),
        (DEPLOYMENT_PROMPT_TOKENS, q.PROMPT_TOKENS),
    ):
        rules.append(
            _record(recorded, f"sum by ({BY_DEPLOYMENT}) ({q.rate(selector(counter), '5m')})")
        )
    rules += [
        _record(
            NAMESPACE_GENERATION_TOKENS, f"sum by (namespace) ({DEPLOYMENT_GENERATION_TOKENS})"
        ),
        _record(NAMESPACE_PROMPT_TOKENS, f"sum by (namespace) ({DEPLOYMENT_PROMPT_TOKENS})"),
    ]
    return rules


def latency_rules() -> list[dict[str, str]]:
    """TTFT and inter-token latency p50 / p99 per deployment, then the TTFT objective's misses."""
    rules = []
    for recorded, quantile, histogram in (
        (TTFT_P50, 0.5, q.TTFT),
        (TTFT_P99, 0.99, q.TTFT),
        (INTER_TOKEN_P50, 0.5, q.INTER_TOKEN),
        (INTER_TOKEN_P99, 0.99, q.INTER_TOKEN),
    ):
        rules.append(_record(recorded, q.quantile_of(quantile, histogram, BY_DEPLOYMENT, "5m")))
    return [*rules, *slo_rules()]


def slo_rules() -> list[dict[str, str]]:
    """Share of requests whose first token took longer than the objective, per window."""
    within = selector(f"{q.TTFT}_bucket", q.eq("le", str(TTFT_SLO_SECONDS)))
    total = selector(f"{q.TTFT}_count")
    return [
        _record(
            ttft_slo_misses(window),
            f"1 - sum by ({BY_DEPLOYMENT}) ({q.rate(within, window)}) "
            f"/ sum by ({BY_DEPLOYMENT}) ({q.rate(total, window)})",
        )
        for window in SLO_WINDOWS
    ]


def alerts() -> list[Alert]:
    where = "{{ $labels.namespace }}/{{ $labels.deployment }}"
    error_budget = round(1 - TTFT_SLO_TARGET, 6)

    def burn(factor: float, long: str, short: str) -> str:
        threshold = round(factor * error_budget, 6)
        return (
            f"{ttft_slo_misses(long)} > {threshold} "
            f"and on ({BY_DEPLOYMENT}) {ttft_slo_misses(short)} > {threshold}"
        )

    objective = f"{TTFT_SLO_TARGET:.0%} of first tokens within {TTFT_SLO_SECONDS:g} s"
    limited = selector(q.LIMITED, q.eq("limit", "budget"))
    server_up = selector("up", q.eq("container", q.SERVER_CONTAINER), 'deployment!=""')
    return [
        Alert(
            "LLMDeploymentBudgetExhausted",
            f"{DEPLOYMENT_BUDGET_USAGE} >= {BUDGET_EXHAUSTED_RATIO:g}",
            "15m",
            "warning",
            f"{where} spends its whole dollar budget",
            f"{where} costs {{{{ $value | humanizePercentage }}}} of "
            "spec.autoscaling.budget.maxDollarsPerHour.",
        ),
        Alert(
            "LLMDeploymentScaleLimitedByBudget",
            f"max by ({BY_DEPLOYMENT}) ({limited}) == 1",
            "15m",
            "warning",
            f"{where} needs more replicas than its budget pays for",
            f"The autoscaler of {where} has been held at the budget for 15 minutes; "
            "requests queue. Raise maxDollarsPerHour or lower the cost per replica.",
        ),
        Alert(
            "LLMDeploymentTTFTBurnFast",
            burn(FAST_BURN, "1h", "5m"),
            "2m",
            "critical",
            f"{where} burns its time-to-first-token error budget fast",
            f"{{{{ $value | humanizePercentage }}}} of requests to {where} missed the "
            f"objective ({objective}) over the last 5 minutes and hour.",
        ),
        Alert(
            "LLMDeploymentTTFTBurnSlow",
            burn(SLOW_BURN, "6h", "30m"),
            "15m",
            "warning",
            f"{where} burns its time-to-first-token error budget",
            f"{{{{ $value | humanizePercentage }}}} of requests to {where} missed the "
            f"objective ({objective}) over the last 30 minutes and 6 hours.",
        ),
        Alert(
            "LLMDeploymentNotReady",
            f"{selector(q.DESIRED_REPLICAS)} > 0 "
            f"and on ({BY_DEPLOYMENT}) {selector(q.READY_REPLICAS)} == 0",
            "10m",
            "critical",
            f"{where} has no ready replica",
            f"{where} wants replicas but none has been ready for 10 minutes: "
            "see kubectl describe llmd and its Events.",
        ),
        Alert(
            "LLMDeploymentDegraded",
            f"{selector(q.READY_REPLICAS)} < on ({BY_DEPLOYMENT}) {selector(q.DESIRED_REPLICAS)}",
            "30m",
            "warning",
            f"{where} has fewer ready replicas than it wants",
            f"{where} has had {{{{ $value }}}} ready replicas, fewer than desired, for 30 minutes.",
        ),
        Alert(
            "LLMDeploymentAutoscalerScrapeFailing",
            f"sum by ({BY_DEPLOYMENT}) ({q.rate(selector(q.SCRAPE_FAILURES), '5m')}) > 0",
            "10m",
            "warning",
            f"The operator cannot read the metrics of {where}'s pods",
            f"Scrapes of {where}'s pods have been failing for 10 minutes; the autoscaler "
            "treats their load as unknown and will not scale down.",
        ),
        Alert(
            "LLMServerScrapeTargetDown",
            f"{server_up} == 0",
            "5m",
            "warning",
            "Prometheus cannot scrape {{ $labels.pod }} of " + where,
            "{{ $labels.instance }} ({{ $labels.pod }}) has been down for Prometheus "
            "for 5 minutes; its dashboards and cost figures are incomplete.",
        ),
        _gateway_turned_away(),
    ]


def _gateway_turned_away() -> Alert:
    """Held requests (no ready replica) that ended in a 503 or 429. The counter's first
    increment creates its series at 1, which increase() cannot see: the `unless ... offset`
    term catches series that did not exist 10 minutes ago."""
    failed = selector(q.GATEWAY_HOLDS, q.matches("outcome", "timeout|rejected"))
    return Alert(
        "LLMGatewayHeldRequestsTurnedAway",
        f"sum by (model) (increase({failed}[10m])) > 0 "
        f"or sum by (model) ({failed} unless {failed} offset 10m) > 0",
        "1m",
        "warning",
        "llm-gateway turned away requests held for {{ $labels.model }}",
        "Requests for {{ $labels.model }} held while it had no ready replica ended in 503 "
        "(hold timeout) or 429 (too many held): {{ $value | humanize }} in the last 10 "
        "minutes. Its cold start outlasts gateway.holdTimeoutSeconds, or it cannot scale up "
        "(budget, replicas.max, no node for its GPU).",
    )


def rule_groups() -> dict[str, Any]:
    """The whole rules file: `{"groups": [...]}`, as promtool and PrometheusRule.spec take."""
    return {
        "groups": [
            {"name": "llmops.cost", "rules": cost_rules()},
            {"name": "llmops.latency", "rules": latency_rules()},
            {"name": "llmops.alerts", "rules": [alert.as_rule() for alert in alerts()]},
            {"name": "llmops.chargeback", "rules": chargeback_rules()},
        ]
    }


def recording_rules() -> list[dict[str, str]]:
    return cost_rules() + latency_rules()
