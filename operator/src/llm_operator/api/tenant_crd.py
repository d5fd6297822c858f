"""Generate the LLMTenant CustomResourceDefinition from its pydantic models (as crd.py does
for LLMDeployment, with the same structural conversion)."""

from __future__ import annotations

from typing import Any

import yaml

from llm_operator.api.crd import Schema, model_schema, strip_markers
from llm_operator.api.resource import CATEGORIES, GROUP, VERSION
from llm_operator.api.tenant import (
    API_VERSION,
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
    {"name": "Keys", "type": "integer", "jsonPath": ".status.keys"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def tenant_openapi_schema() -> Schema:
    spec = model_schema(LLMTenantSpec)
    # spec may be omitted: the API server then fills in what `{}` would get.
    spec["default"] = {k: v["default"] for k, v in spec["properties"].items() if "default" in v}
    status = model_schema(LLMTenantStatus)
    status.pop("default", None)
    schema: Schema = strip_markers(
        {
            "type": "object",
            "description": "An llm-gateway client: allowed models, API keys (labelled Secrets), "
            "rate limits and a dollar budget.",
            "x-kubernetes-validations": [TENANT_NAME_FITS_LABEL.schema_entry()],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
                "spec": spec,
                "status": status,
            },
        }
    )
    return schema


def tenant_crd() -> Schema:
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
                    "schema": {"openAPIV3Schema": tenant_openapi_schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def tenant_crd_yaml() -> str:
    header = (
        f"# Generated from llm_operator.api by `make crds`; do not edit.\n# {API_VERSION} {KIND}\n"
    )
    return header + yaml.safe_dump(tenant_crd(), sort_keys=False, width=100)
