"""Generate the LLMTenant CustomResourceDefinition from its pydantic models (as crd.py does
for LLMDeployment, with the same structural conversion)."""

from __future__ import annotations

from typing import Any

from llm_operator.api.crd import Schema, definition, generated_yaml, model_schema, resource_schema
from llm_operator.api.tenant import (
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    TENANT_NAME_FITS_LABEL,
    LLMTenantSpec,
    LLMTenantStatus,
)

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Models", "type": "string", "jsonPath": ".spec.models"},
    {"name": "RPM", "type": "integer", "jsonPath": ".spec.limits.requestsPerMinute"},
    {"name": "TPM", "type": "integer", "jsonPath": ".spec.limits.tokensPerMinute"},
    {"name": "Budget", "type": "string", "jsonPath": ".spec.budget.dollars"},
    {"name": "Per", "type": "string", "jsonPath": ".spec.budget.period"},
    {"name": "Spent", "type": "number", "jsonPath": ".status.spend.dollars"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def tenant_openapi_schema() -> Schema:
    spec = model_schema(LLMTenantSpec)
    # spec may be omitted: the API server then fills in what `{}` would get.
    spec["default"] = {k: v["default"] for k, v in spec["properties"].items() if "default" in v}
    return resource_schema(
        "An llm-gateway client: allowed models, API keys (labelled Secrets), "
        "rate limits and a dollar budget.",
        spec,
        model_schema(LLMTenantStatus),
        [TENANT_NAME_FITS_LABEL.schema_entry()],
        spec_required=False,
    )


def tenant_crd() -> Schema:
    return definition(
        (KIND, PLURAL, SINGULAR, SHORT_NAMES),
        tenant_openapi_schema(),
        {"status": {}},
        PRINTER_COLUMNS,
    )


def tenant_crd_yaml() -> str:
    return generated_yaml(tenant_crd())
