"""Generate the LLMRoute CustomResourceDefinition from its pydantic models (as crd.py does
for LLMDeployment, with the same structural conversion)."""

from __future__ import annotations

from typing import Any

from llm_operator.api.crd import Schema, definition, generated_yaml, model_schema, resource_schema
from llm_operator.api.route import (
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    LLMRouteSpec,
    LLMRouteStatus,
)

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Requests/h", "type": "integer", "jsonPath": ".status.lastHour.requests"},
    {"name": "Escalation", "type": "number", "jsonPath": ".status.lastHour.escalationRate"},
    {"name": "$/h", "type": "number", "jsonPath": ".status.lastHour.dollars"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def route_openapi_schema() -> Schema:
    return resource_schema(
        "A public model name served by LLMDeployments of its namespace: a "
        "weighted split or a quality-gated cascade, with ordered fallbacks.",
        model_schema(LLMRouteSpec),
        model_schema(LLMRouteStatus),
        [],
        spec_required=True,
    )


def route_crd() -> Schema:
    return definition(
        (KIND, PLURAL, SINGULAR, SHORT_NAMES),
        route_openapi_schema(),
        {"status": {}},
        PRINTER_COLUMNS,
    )


def route_crd_yaml() -> str:
    return generated_yaml(route_crd())
