"""The Gateway row of the Deployment performance dashboard (issue 22 item 4).

The gateway's series are labelled by the served `model` (and `pod`, the model server's pod a
request went to), not by namespace/deployment, so the row filters by its own `model` variable,
whose values are the models the gateway knows (at zero replicas too, when holds matter). Several
gateway replicas each export their own counts: counters and histograms are summed over them,
the replica-state gauge (each replica's view of the same pods) takes their max. The operator's
cold-start histogram completes the picture of a scale from zero.
"""

from __future__ import annotations

from llm_operator.observability import promql as q
from llm_operator.observability.grafana import Panel, Query, Row, Variable

MODEL_LEGEND = "{{model}}"


def model_variable() -> Variable:
    return Variable("model", "Model (gateway)", f"label_values({q.GATEWAY_REPLICAS}, model)")


def _of_model(metric: str, *matchers: str) -> str:
    return q.selector(metric, q.of_model(), *matchers)


def _rate_by(by: str, metric: str, *matchers: str) -> str:
    return f"sum by ({by}) ({q.rate(_of_model(metric, *matchers))})"


def _quantiles(histogram: str, *quantiles: float) -> tuple[Query, ...]:
    return tuple(
        Query(
            q.quantile_of(quantile, histogram, "model", q.RATE_INTERVAL, q.of_model()),
            f"p{quantile * 100:g} {MODEL_LEGEND}",
        )
        for quantile in quantiles
    )


def _cold_start_p50() -> str:
    """Over every pod the operator measured since it started (the buckets' totals, not a
    rate): cold starts are minutes to days apart, and the first of a deployment is counted
    in the series' very first sample, which rate() and increase() never see."""
    buckets = q.selector(
        f"{q.COLD_START}_bucket",
        q.in_namespace(),
        q.matches("llmdeployment", q.DEPLOYMENT_VAR),
    )
    return f"histogram_quantile(0.5, sum by (namespace, llmdeployment, le) ({buckets}))"


def gateway_row() -> Row:
    requests = q.GATEWAY_REQUESTS
    return Row(
        "Gateway",
        (
            Panel(
                "Gateway requests by pick",
                "Requests the gateway sent to a replica per second: by prefix affinity, by "
                "load (the preferred replica was saturated), or to the only ready replica.",
                (Query(_rate_by("picked_by", requests), "{{picked_by}}"),),
                width=8,
                stacked=True,
            ),
            Panel(
                "Affinity ratio",
                "Share of requests that went to their prefix's replica (where its KV blocks "
                "are cached); the rest went by load or to the only replica.",
                (
                    Query(
                        f"{_rate_by('model', requests, q.eq('picked_by', 'affinity'))} "
                        f"/ {_rate_by('model', requests)}",
                        MODEL_LEGEND,
                    ),
                ),
                unit="percentunit",
                width=8,
            ),
            Panel(
                "Gateway responses by status",
                "What clients got from the gateway per second, by HTTP status (429: hold "
                "bound reached, 503: hold timed out, 404: unknown model).",
                (Query(_rate_by("code", q.GATEWAY_RESPONSES), "{{code}}"),),
                width=8,
            ),
            Panel(
                "In flight per replica",
                "Requests the gateways have in flight to each model server pod.",
                (Query(f"sum by (pod) ({_of_model(q.GATEWAY_IN_FLIGHT)})", "{{pod}}"),),
                width=8,
            ),
            Panel(
                "Retries per second",
                "Requests retried on another replica after a connection error before the "
                "first byte, by the pod that failed.",
                (Query(_rate_by("pod", q.GATEWAY_RETRIES), "{{pod}}"),),
                width=8,
            ),
            Panel(
                "Gateway added latency",
                "Gateway time before the request is sent to the replica (parse and pick), "
                "p50 and p99.",
                _quantiles(q.GATEWAY_ADDED_LATENCY, 0.5, 0.99),
                unit="s",
                width=8,
            ),
            Panel(
                "Held requests",
                "Requests held now because their model has no ready replica (scale from zero).",
                (Query(f"sum by (model) ({_of_model(q.GATEWAY_HELD)})", MODEL_LEGEND),),
                width=8,
            ),
            Panel(
                "Hold time",
                "How long held requests waited for a replica, p50 and p95.",
                _quantiles(q.GATEWAY_HOLD_TIME, 0.5, 0.95),
                unit="s",
                width=8,
            ),
            Panel(
                "Holds by outcome",
                "Holds that ended per interval: served once a replica was ready, timed out "
                "(503), or rejected over the per-model bound (429).",
                (
                    Query(
                        f"sum by (outcome) "
                        f"(increase({_of_model(q.GATEWAY_HOLDS)}[{q.RATE_INTERVAL}]))",
                        "{{outcome}}",
                    ),
                ),
                width=8,
            ),
            Panel(
                "Gateway replicas by state",
                "The model's pods as the gateway sees them (EndpointSlices): ready ones get "
                "requests, terminating (draining) and not-ready ones never do.",
                (
                    Query(
                        f"max by (model, state) ({_of_model(q.GATEWAY_REPLICAS)})",
                        MODEL_LEGEND + " {{state}}",
                    ),
                ),
                width=12,
            ),
            Panel(
                "Cold start p50",
                "Pod created to Ready (the operator's measure), median of the pods measured "
                "since the operator started (status.coldStart has the recent ones): what the "
                "first request after a scale from zero waits.",
                (Query(_cold_start_p50(), "{{namespace}}/{{llmdeployment}}"),),
                kind="stat",
                unit="s",
                width=12,
            ),
        ),
    )
