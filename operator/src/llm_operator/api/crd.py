"""Generate the LLMDeployment CustomResourceDefinition from the pydantic models.

Pydantic writes JSON Schema 2020-12; the API server wants a *structural* OpenAPI v3.0 schema.
`structural()` bridges the two: inline $refs, drop nulls from optionals, turn int|string into
x-kubernetes-int-or-string, free-form dicts into preserve-unknown-fields, and give every
defaultable nested object a default holding its inner defaults, so the API server fills them
when the user omits the whole block. (The API server checks each default against the node's
CEL rules: `default: {}` fails a rule such as `self.min <= self.max` with "no such key".)
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from llm_operator.api.resource import (
    API_VERSION,
    CATEGORIES,
    GROUP,
    KIND,
    NAME_FITS_LABEL,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
)
from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.api.status import LLMDeploymentStatus

Schema = dict[str, Any]

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.uri"},
    {"name": "GPU", "type": "string", "jsonPath": ".status.accelerator.type"},
    {"name": "Quant", "type": "string", "jsonPath": ".status.quantization"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"},
    {"name": "$/h", "type": "number", "jsonPath": ".status.cost.dollarsPerHour"},
    {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

_KEEP = {
    "type", "properties", "required", "items", "enum", "default", "description", "format",
    "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "pattern",
    "additionalProperties", "nullable",
}  # fmt: skip


def structural(schema: Schema, defs: dict[str, Schema]) -> Schema:
    """Convert one pydantic JSON-schema node into a structural OpenAPI v3.0 node."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        return structural({**target, **{k: v for k, v in schema.items() if k != "$ref"}}, defs)
    if "anyOf" in schema:
        return _any_of(schema, defs)

    out: Schema = {k: v for k, v in schema.items() if k in _KEEP or k.startswith("x-kubernetes")}
    if "exclusiveMinimum" in schema:  # 2020-12 number -> OpenAPI 3.0 boolean
        out["minimum"], out["exclusiveMinimum"] = schema["exclusiveMinimum"], True
    if "exclusiveMaximum" in schema:
        out["maximum"], out["exclusiveMaximum"] = schema["exclusiveMaximum"], True
    if "maxItems" in schema and "items" not in schema:
        out.pop("maxItems")

    if out.get("type") == "object" or "properties" in schema:
        out["type"] = "object"
        _object(out, schema, defs)
    if "items" in schema:
        out["items"] = structural(schema["items"], defs)
    return out


def _object(out: Schema, schema: Schema, defs: dict[str, Schema]) -> None:
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    if properties is not None:
        converted = {name: structural(sub, defs) for name, sub in properties.items()}
        for name, sub in converted.items():
            if name not in schema.get("required", []) and _defaultable_object(sub):
                sub["default"] = _inner_defaults(sub)
        out["properties"] = converted
        out.pop("additionalProperties", None)
    elif isinstance(extra, dict) and extra:
        out["additionalProperties"] = structural(extra, defs)
    else:  # free-form (dict[str, Any]): keep whatever the user writes
        out.pop("additionalProperties", None)
        out["x-kubernetes-preserve-unknown-fields"] = True


def _inner_defaults(sub: Schema) -> dict[str, Any]:
    """The object the API server would build from `{}` (nested defaults already set)."""
    return {k: v["default"] for k, v in sub["properties"].items() if "default" in v}


def _defaultable_object(sub: Schema) -> bool:
    return (
        sub.get("type") == "object"
        and "properties" in sub
        and not sub.get("required")
        and "default" not in sub
        and sub.get("x-llmops-optional") is not True
    )


def _any_of(schema: Schema, defs: dict[str, Schema]) -> Schema:
    options = [o for o in schema["anyOf"] if o.get("type") != "null"]
    outer = {k: v for k, v in schema.items() if k != "anyOf"}
    if len(options) == 1:  # Optional[X]: absent means unset; drop the null branch
        merged = structural({**options[0], **outer}, defs)
        if outer.get("default", "absent") is None:
            merged.pop("default", None)
        if options[0].get("$ref"):  # an optional object stays absent unless the user writes it
            merged["x-llmops-optional"] = True
        return merged
    types = sorted(o.get("type", "") for o in options)
    if types == ["integer", "string"]:
        out: Schema = {"x-kubernetes-int-or-string": True}
        pattern = next((o["pattern"] for o in options if "pattern" in o), None)
        if pattern:
            out["pattern"] = pattern
        if "description" in outer:
            out["description"] = outer["description"]
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return out
    raise ValueError(f"cannot express anyOf {types} in a structural schema")


def strip_markers(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: strip_markers(v) for k, v in node.items() if k != "x-llmops-optional"}
    if isinstance(node, list):
        return [strip_markers(v) for v in node]
    return node


def model_schema(model: type[BaseModel]) -> Schema:
    """The structural schema of one API model (spec or status)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))


def resource_schema(
    description: str, spec: Schema, status: Schema, rules: list[Schema], spec_required: bool
) -> Schema:
    """The openAPIV3Schema of one of our kinds: apiVersion, kind, metadata, spec, status."""
    status.pop("default", None)
    schema: Schema = {"type": "object", "description": description}
    if spec_required:
        schema["required"] = ["spec"]
    if rules:
        schema["x-kubernetes-validations"] = rules
    schema["properties"] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        # Declared so a name rule's fieldPath resolves (the API server allows only name and
        # generateName here).
        "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
        "spec": spec,
        "status": status,
    }
    out: Schema = strip_markers(schema)
    return out


def definition(
    names: tuple[str, str, str, tuple[str, ...]],
    schema: Schema,
    subresources: Schema,
    printer_columns: list[dict[str, Any]],
) -> Schema:
    """A namespaced CustomResourceDefinition of our group; names = kind, plural, singular,
    short names."""
    kind, plural, singular, short_names = names
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "annotations": {"llmops.dev/generated-from": "llm_operator.api (make crds)"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": list(short_names),
                "categories": list(CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": subresources,
                    "additionalPrinterColumns": printer_columns,
                }
            ],
        },
    }


def generated_yaml(definition: Schema) -> str:
    kind = definition["spec"]["names"]["kind"]
    header = (
        f"# Generated from llm_operator.api by `make crds`; do not edit.\n# {API_VERSION} {kind}\n"
    )
    return header + yaml.safe_dump(definition, sort_keys=False, width=100)


def openapi_schema() -> Schema:
    """The LLMDeployment's openAPIV3Schema."""
    return resource_schema(
        "A served LLM and its optimization policy.",
        model_schema(LLMDeploymentSpec),
        model_schema(LLMDeploymentStatus),
        [NAME_FITS_LABEL.schema_entry()],
        spec_required=True,
    )


def crd() -> Schema:
    """The LLMDeployment CustomResourceDefinition."""
    scale = {
        "specReplicasPath": ".spec.replicas.desired",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    return definition(
        (KIND, PLURAL, SINGULAR, SHORT_NAMES),
        openapi_schema(),
        {"status": {}, "scale": scale},
        PRINTER_COLUMNS,
    )


def crd_yaml() -> str:
    return generated_yaml(crd())
