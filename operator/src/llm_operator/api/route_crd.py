"""Generate the LLMRoute CustomResourceDefinition from its pydantic models (as crd.py does
for LLMDeployment, with the same structural conversion)."""

from __future__ import annotations

from typing import Any

import yaml

from llm_operator.api.crd import Schema, model_schema, strip_markers
from llm_operator.api.resource import CATEGORIES, GROUP, VERSION
from llm_operator.api.route import (
    API_VERSION,
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
    spec = model_schema(LLMRouteSpec)
    status = model_schema(LLMRouteStatus)
    status.pop("default", None)
    schema: Schema = strip_markers(
        {
            "type": "object",
            "description": "A public model name served by LLMDeployments of its namespace: a "
            "weighted split or a quality-gated cascade, with ordered fallbacks.",
            "required": ["spec"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": spec,
                "status": status,
            },
        }
    )
    return schema


def route_crd() -> Schema:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "annotations": {"llmops.dev/generated-from": "llm_operator.api (make crds)"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": route_openapi_schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def route_crd_yaml() -> str:
    header = (
        f"# Generated from llm_operator.api by `make crds`; do not edit.\n# {API_VERSION} {KIND}\n"
    )
    return header + yaml.safe_dump(route_crd(), sort_keys=False, width=100)
