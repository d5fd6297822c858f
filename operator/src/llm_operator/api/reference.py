"""The field reference (docs/api-reference.md), generated from the same schemas as the CRDs."""

from __future__ import annotations

import json
from typing import Any

from llm_operator.api.crd import openapi_schema
from llm_operator.api.route_crd import route_openapi_schema
from llm_operator.api.tenant_crd import tenant_openapi_schema


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    if node.get("type") == "array":
        return f"list of {_type(node.get('items', {}))}"
    if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {_type(node['additionalProperties'])}"
    return str(node.get("type", "object"))


def _constraints(node: dict[str, Any]) -> str:
    parts = []
    if "enum" in node:
        parts.append(" \\| ".join(f"`{v}`" for v in node["enum"]))
    if "minimum" in node:
        parts.append(f"{'>' if node.get('exclusiveMinimum') else '≥'} {node['minimum']}")
    if "maximum" in node:
        parts.append(f"≤ {node['maximum']}")
    if "maxItems" in node:
        parts.append(f"at most {node['maxItems']} items")
    if "pattern" in node and "enum" not in node and "int-or-string" not in str(node):
        parts.append("pattern")
    return ", ".join(parts)


def _rows(node: dict[str, Any], path: str, required: bool) -> list[str]:
    default = f"`{json.dumps(node['default'])}`" if node.get("default", {}) != {} else ""
    description = node.get("description", "").replace("|", "\\|").replace("\n", " ")
    rows = [
        f"| `{path}` | {_type(node)} | {'yes' if required else ''} | {default} | "
        f"{_constraints(node)} | {description} |"
    ]
    for rule in node.get("x-kubernetes-validations", []):
        rows.append(f"| `{path}{rule.get('fieldPath', '')}` | | | | rule | {rule['message']} |")
    child = node.get("items", node) if node.get("type") == "array" else node
    suffix = "[]" if child is not node else ""
    for name, sub in child.get("properties", {}).items():
        rows += _rows(sub, f"{path}{suffix}.{name}", name in child.get("required", []))
    return rows


def _tables(schema: dict[str, Any], heading: str) -> list[str]:
    lines = []
    for top in ("spec", "status"):
        lines += [
            f"{heading} {top}",
            "",
            "| field | type | required | default | allowed | description |",
            "| --- | --- | --- | --- | --- | --- |",
            *_rows(schema[top], top, top == "spec")[1:],
            "",
        ]
    return lines


def reference_markdown() -> str:
    lines = [
        "# LLMDeployment field reference",
        "",
        "Generated from `llm_operator.api` by `make crds`; do not edit. Concepts and examples:",
        "[api.md](api.md).",
        "",
        *_tables(openapi_schema()["properties"], "##"),
        "# LLMTenant field reference",
        "",
        "Tenants of llm-gateway: keys, limits, budgets ([traffic.md](traffic.md)).",
        "",
        *_tables(tenant_openapi_schema()["properties"], "##"),
        "# LLMRoute field reference",
        "",
        "Routes of llm-gateway: splits, fallbacks, cascades ([traffic.md](traffic.md)).",
        "",
        *_tables(route_openapi_schema()["properties"], "##"),
    ]
    return "\n".join(lines)
