"""Validate our manifests the way the operator and gateway read them, with a fix for every problem.

The operator and `llmops validate` share this: pydantic parses the manifest (types, bounds,
enums, cross-field rules), and each error becomes a `Problem` naming the field by its path in
the manifest (`spec.replicas.min`) and saying how to fix it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from llm_operator.api.base import RuleViolation
from llm_operator.api.crd import openapi_schema
from llm_operator.api.resource import LLMDeployment
from llm_operator.api.route import KIND as ROUTE_KIND
from llm_operator.api.route import LLMRoute
from llm_operator.api.route_crd import route_openapi_schema
from llm_operator.api.tenant import KIND as TENANT_KIND
from llm_operator.api.tenant import LLMTenant
from llm_operator.api.tenant_crd import tenant_openapi_schema

# The kinds that travel beside LLMDeployments (examples/routes, examples/tenants): each checked
# by its own model; no pod is rendered from them, so no render policy applies.
COMPANION_KINDS: dict[str, tuple[type[LLMRoute] | type[LLMTenant], Any]] = {
    ROUTE_KIND: (LLMRoute, route_openapi_schema),
    TENANT_KIND: (LLMTenant, tenant_openapi_schema),
}

_PATTERN_HINTS = {
    "servedName": "use letters, digits and . _ / : - (at most 128), e.g. llama-3-8b-instruct",
    "parameterCount": "write the size as 8B, 70B, 350M or a plain number such as 8030261248",
    "name": "use lowercase letters, digits, '-' and '.', starting and ending with a letter "
    "or digit (an RFC 1123 subdomain, as the API server requires)",
}
_QUANTITY_HINT = "write a Kubernetes quantity such as 8Gi, 500m or 4"


@dataclass(frozen=True)
class Problem:
    path: str  # the field, e.g. spec.replicas.min
    message: str  # what is wrong
    hint: str  # how to fix it ("" when the message already says)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" + (f" (fix: {self.hint})" if self.hint else "")


def _join(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _schema_at(loc: tuple[Any, ...], root: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"properties": {"spec": root["properties"]["spec"]}}
    for part in loc:
        if isinstance(part, int):
            node = node.get("items", {})
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return {}
    return node


def _problem(error: Any, root: dict[str, Any]) -> Problem:
    loc: tuple[Any, ...] = tuple(error["loc"])
    kind = error["type"]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, RuleViolation):
        path = _join(loc)
        if not path.endswith(cause.rule.field_path):  # model-level rule: point at the field
            path = (path + cause.rule.field_path).lstrip(".")
        return Problem(path, cause.rule.message, cause.rule.fix)
    message = error["msg"].removeprefix("Value error, ")
    if message.startswith("unknown accelerator type"):
        message, _, choices = message.partition("; ")
        return Problem(_join(loc), message, choices)
    field = next((str(p) for p in reversed(loc) if not isinstance(p, int)), "")
    if kind == "missing":
        return Problem(_join(loc), "required field is missing", f"add {field}")
    if kind == "extra_forbidden":
        known = list(_schema_at(loc[:-1], root).get("properties", {}))
        close = difflib.get_close_matches(field, known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"known fields: {', '.join(known)}"
        return Problem(_join(loc), "unknown field", hint)
    if kind == "literal_error":
        return Problem(_join(loc), message, "use one of the listed values")
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        node = _schema_at(loc, root)
        low, high = node.get("minimum"), node.get("maximum")
        return Problem(_join(loc), message, f"use a value between {low} and {high}")
    if kind in {"too_long", "too_short", "string_too_long", "string_too_short"}:
        return Problem(_join(loc), message, "shorten or lengthen it to fit the limit")
    if kind == "string_pattern_mismatch":
        parent = next((str(p) for p in reversed(loc[:-1]) if not isinstance(p, int)), "")
        hint = _PATTERN_HINTS.get(field) or _PATTERN_HINTS.get(parent, "see the CRD's pattern")
        return Problem(_join(loc), f"{error['input']!r} has the wrong form", hint)
    if "Kubernetes quantity" in message:
        return Problem(_join(loc), message, _QUANTITY_HINT)
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return Problem(_join(loc), message, "write a value of that type")
    return Problem(_join(loc), message, "")


def validate_manifest(manifest: Any) -> tuple[LLMDeployment | None, list[Problem]]:
    """Parse one manifest; the resource when valid, else every problem found."""
    if not isinstance(manifest, dict):
        return None, [Problem("(document)", "is not a mapping", "write an LLMDeployment object")]
    try:
        return LLMDeployment.model_validate(manifest), []
    except ValidationError as exc:
        return None, [_problem(e, openapi_schema()) for e in exc.errors()]


def validate_companion(manifest: dict[str, Any]) -> tuple[str | None, list[Problem]]:
    """An LLMRoute or LLMTenant (kind in COMPANION_KINDS): its name when valid, else problems."""
    model, schema = COMPANION_KINDS[manifest["kind"]]
    try:
        return model.model_validate(manifest).metadata.name, []
    except ValidationError as exc:
        return None, [_problem(e, schema()) for e in exc.errors()]
