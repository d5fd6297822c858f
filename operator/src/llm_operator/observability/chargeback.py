"""Chargeback (issue 23): recording rules over llm-gateway's tenant counters, and the Tenants
row of the Fleet cost dashboard.

The gateway counts per tenant (an LLMTenant: `namespace`, `tenant`; "" for requests without
a known key) and served `model`; each gateway replica counts its own share, so every query sums
over replicas. Dollars are tokens priced with the target LLMDeployment's
status.cost.dollarsPerMillionTokens; tokens of a model without that price are counted apart
(unpriced). Recorded names are fixed by the tenants contract.
"""

from __future__ import annotations

from llm_operator.observability import promql as q
from llm_operator.observability.grafana import Panel, Query, Row

TENANT_DOLLARS = "llmops:tenant_dollars:increase1h"
TENANT_TOKENS = "llmops:tenant_tokens:rate5m"
NAMESPACE_DOLLARS = "llmops:namespace_dollars:increase1h"
RECORDED = (TENANT_DOLLARS, TENANT_TOKENS, NAMESPACE_DOLLARS)
# Every series the Tenants row reads (tests/observability feeds them to a real Prometheus).
SERIES = (
    *RECORDED, q.TENANT_REQUESTS, q.TENANT_REJECTIONS, q.UNPRICED_TOKENS, q.QUEUED,
    q.QUEUE_REJECTIONS,
)  # fmt: skip

BY_TENANT = "namespace, tenant, model"
TENANT_LEGEND = "{{namespace}}/{{tenant}}"


def chargeback_rules() -> list[dict[str, str]]:
    """Dollars per tenant and model over the last hour, token rates, and namespace showback."""
    return [
        {
            "record": TENANT_DOLLARS,
            "expr": f"sum by ({BY_TENANT}) (increase({q.TENANT_DOLLARS}[1h]))",
        },
        {
            "record": TENANT_TOKENS,
            "expr": f"sum by ({BY_TENANT}, kind) ({q.rate(q.TENANT_TOKENS, '5m')})",
        },
        {"record": NAMESPACE_DOLLARS, "expr": f"sum by (namespace) ({TENANT_DOLLARS})"},
    ]


def _of_tenants(metric: str) -> str:
    return q.selector(metric, q.in_namespace(), q.of_model())


def tenants_row() -> Row:
    return Row(
        "Tenants",
        (
            Panel(
                "Tenant spend, last hour",
                "Dollars each tenant spent in the last hour (rolling), over the selected "
                'models: tokens x the model\'s $/1M tokens. (no key) = tenant "".',
                (
                    Query(
                        f"sum by (namespace, tenant) ({_of_tenants(TENANT_DOLLARS)})", TENANT_LEGEND
                    ),
                ),
                unit="currencyUSD",
                stacked=True,
                width=8,
            ),
            Panel(
                "Tenant tokens per second",
                "Prompt and completion tokens per second per tenant (5-minute rate).",
                (
                    Query(
                        f"sum by (namespace, tenant, kind) ({_of_tenants(TENANT_TOKENS)})",
                        TENANT_LEGEND + " {{kind}}",
                    ),
                ),
                stacked=True,
                width=8,
            ),
            Panel(
                "Namespace spend, last hour",
                "Showback: dollars of every tenant of the namespace in the last hour.",
                (Query(q.selector(NAMESPACE_DOLLARS, q.in_namespace()), "{{namespace}}"),),
                kind="bargauge",
                unit="currencyUSD",
                width=8,
            ),
            Panel(
                "Tenant requests by status",
                "Requests per second per tenant, by the HTTP status the client got (401 bad "
                "key, 403 model not allowed, 429 over a limit).",
                (
                    Query(
                        f"sum by (namespace, tenant, code) "
                        f"({q.rate(_of_tenants(q.TENANT_REQUESTS))})",
                        TENANT_LEGEND + " {{code}}",
                    ),
                ),
                width=8,
            ),
            Panel(
                "Rejections by limit",
                "Requests refused with 429 per interval, by the limit that refused them "
                "(requests_per_minute, tokens_per_minute, budget_day, budget_month).",
                (
                    Query(
                        f"sum by (namespace, tenant, limit) "
                        f"(increase({_of_tenants(q.TENANT_REJECTIONS)}[{q.RATE_INTERVAL}]))",
                        TENANT_LEGEND + " {{limit}}",
                    ),
                ),
                width=8,
            ),
            Panel(
                "Waiting in the fair queue",
                "Requests waiting now because their model is saturated (every replica runs "
                "its maxConcurrentSequences): they leave by tenant weight.",
                (Query(f"sum by (model) ({q.selector(q.QUEUED, q.of_model())})", "{{model}}"),),
                width=8,
            ),
            Panel(
                "Shed by the fair queue",
                "Requests a saturated model refused (429) per interval, by tenant and why: "
                "queue_full, shed (for a higher priority) or queue_timeout.",
                (
                    Query(
                        f"sum by (namespace, tenant, reason) "
                        f"(increase({_of_tenants(q.QUEUE_REJECTIONS)}[{q.RATE_INTERVAL}]))",
                        TENANT_LEGEND + " {{reason}}",
                    ),
                ),
                width=8,
            ),
            Panel(
                "Unpriced tokens per second",
                "Tokens served by models without status.cost.dollarsPerMillionTokens yet: "
                "their tenants are charged $0 for them, so spend is understated.",
                (
                    Query(
                        f"sum by (model) ({q.rate(q.selector(q.UNPRICED_TOKENS, q.of_model()))})",
                        "{{model}}",
                    ),
                ),
                width=8,
            ),
        ),
    )
