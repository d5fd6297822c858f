"""What the API server checks when an LLMDeployment is applied, run locally.

Mirrors the apiextensions pipeline for our CRD: read the object as the server does
(`as_served`: nulls dropped, whole-valued floats as integers), check metadata as ObjectMeta
(known fields, label and annotation keys and values), apply schema defaults, validate the
structural schema (strict field validation: unknown fields are errors, as `kubectl apply`
does by default; patterns with Go's regexp semantics), then evaluate the
`x-kubernetes-validations` CEL rules with `self` bound to each node. Messages follow the API
server's shape: `<field path>: <what is wrong>`. tests/integration/kube/test_validate_parity.py
holds one table of manifests against the real API server and `llmops validate`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import celpy
import celpy.adapter
import celpy.evaluation
import jsonschema

from llm_operator.api.crd import openapi_schema

Schema = dict[str, Any]

# metav1.ObjectMeta's fields: anything else under metadata is an unknown field to the server.
OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields",
})  # fmt: skip
# apimachinery's validation (IsQualifiedName, IsValidLabelValue), ASCII only like Go's.
_NAME_PART = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
KEY_RULE = (
    "an optional DNS subdomain prefix (at most 253 characters) and '/', then a name of at "
    "most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
)
LABEL_VALUE_RULE = (
    "empty, or at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
)


def as_served(value: Any, schema: Schema | None = None) -> Any:
    """`value` as the API server reads it before validating: nulls dropped where the schema
    does not declare `nullable`, and whole-valued floats (`8192.0`, `cpu: 2.0`) as integers
    where it wants an integer. Free-form parts (server.podTemplate) are left as they are."""
    schema = openapi_schema() if schema is None else schema
    if isinstance(value, dict) and "properties" in schema:
        known = schema["properties"]
        return {
            k: as_served(v, known[k]) if k in known else v
            for k, v in value.items()
            if not (v is None and k in known and not known[k].get("nullable"))
        }
    extra = schema.get("additionalProperties")
    if isinstance(value, dict) and isinstance(extra, dict):
        nulls_kept = extra.get("nullable")
        return {k: as_served(v, extra) for k, v in value.items() if v is not None or nulls_kept}
    if isinstance(value, list) and "items" in schema:
        return [as_served(item, schema["items"]) for item in value]
    wants_integer = schema.get("type") == "integer" or schema.get("x-kubernetes-int-or-string")
    if isinstance(value, float) and value.is_integer() and wants_integer:
        return int(value)
    return value


def _qualified_name(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and not (len(prefix) <= 253 and re.fullmatch(_DNS_SUBDOMAIN, prefix)):
        return False
    return len(name) <= 63 and re.fullmatch(_NAME_PART, name, re.ASCII) is not None


def metadata_errors(metadata: Any) -> list[str]:
    """What the API server refuses in metadata (ObjectMeta's own rules, not the CRD's)."""
    if not isinstance(metadata, dict):
        return ["metadata: Invalid value: must be an object"]
    out = [f'metadata.{k}: unknown field "{k}"' for k in metadata if k not in OBJECT_META_FIELDS]
    for field in ("labels", "annotations"):
        entries = metadata.get(field) or {}
        if not isinstance(entries, dict):
            out.append(f"metadata.{field}: Invalid value: must be a map of strings")
            continue
        for key, value in entries.items():
            if not _qualified_name(str(key)):
                out.append(f'metadata.{field}: Invalid value: "{key}": a key is {KEY_RULE}')
            if not isinstance(value, str):
                out.append(f"metadata.{field}.{key}: Invalid value: must be a string")
            elif field == "labels" and not (
                len(value) <= 63 and re.fullmatch(f"({_NAME_PART})?", value, re.ASCII)
            ):
                out.append(
                    f'metadata.labels: Invalid value: "{value}": a label value is '
                    + LABEL_VALUE_RULE
                )
    return out


def _go_pattern(pattern: str) -> re.Pattern[str]:
    """A schema pattern with the semantics of Go's regexp (the API server's): ASCII classes
    (`\\s` is no Unicode space) and a final `$` that does not match before a trailing newline."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern, re.ASCII)


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Schema
) -> Iterator[jsonschema.ValidationError]:
    if isinstance(instance, str) and not _go_pattern(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def apply_defaults(value: Any, schema: Schema) -> Any:
    """Return `value` with the schema's defaults filled in (the API server's defaulting)."""
    if isinstance(value, dict) and "properties" in schema:
        out = dict(value)
        for name, sub in schema["properties"].items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_defaults(out[name], sub)
        return out
    if isinstance(value, list) and "items" in schema:
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def _strict(schema: Schema) -> Schema:
    """The schema with unknown fields forbidden wherever the CRD does not preserve them."""
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {
            # metadata is ObjectMeta, checked by the API server's own rules, not the schema
            k: v if k == "metadata" else _strict(v)
            for k, v in out["properties"].items()
        }
        if (
            not out.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in out
        ):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict(out["additionalProperties"])
    if "items" in out:
        out["items"] = _strict(out["items"])
    return out


@cache
def _validator() -> Any:
    # OpenAPI v3.0 numeric bounds (boolean exclusiveMinimum) are JSON Schema draft 4's.
    checker = jsonschema.validators.extend(jsonschema.Draft4Validator, {"pattern": _pattern})
    return checker(_strict(openapi_schema()))


def _field(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _schema_message(error: jsonschema.ValidationError) -> str:
    path = _field(error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return f"{_field([*error.absolute_path, missing])}: Required value"
    if error.validator == "enum":
        allowed = ", ".join(f'"{v}"' for v in error.validator_value)
        return f'{path}: Unsupported value: "{error.instance}": supported values: {allowed}'
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f'{_field([*error.absolute_path, extra[0]])}: unknown field "{extra[0]}"'
    bounds = {
        "minimum": "greater than or equal to",
        "maximum": "less than or equal to",
        "minLength": "at least this long:",
        "maxLength": "at most this long:",
        "maxItems": "at most this many items:",
    }
    if error.validator in bounds:
        limit = error.validator_value
        if error.validator == "minimum" and error.schema.get("exclusiveMinimum"):
            expected = f"greater than {limit}"
        else:
            expected = f"{bounds[error.validator]} {limit}"
        return f"{path}: Invalid value: {error.instance!r}: {path} in body should be {expected}"
    if error.validator == "pattern":
        expected = f"match '{error.validator_value}'"
        return f'{path}: Invalid value: "{error.instance}": {path} in body should {expected}'
    if error.validator == "type":
        actual = type(error.instance).__name__
        expected = f"must be of type {error.validator_value}"
        return f'{path}: Invalid value: "{actual}": {path} in body {expected}'
    return f"{path}: Invalid value: {error.message}"


def _to_cel(value: Any, schema: Schema) -> Any:
    """JSON -> CEL values, typed by the schema (a `number` field is a double even if written 2)."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = (
            schema.get("additionalProperties")
            if isinstance(schema.get("additionalProperties"), dict)
            else {}
        )
        return celpy.celtypes.MapType(
            {
                celpy.celtypes.StringType(k): _to_cel(v, props.get(k, extra))
                for k, v in value.items()
            }
        )
    if isinstance(value, list):
        return celpy.celtypes.ListType([_to_cel(v, schema.get("items", {})) for v in value])
    if (
        schema.get("type") == "number"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        return celpy.celtypes.DoubleType(value)
    return celpy.adapter.json_to_cel(value)


@cache
def _program(expression: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(expression))


def _cel_failures(value: Any, schema: Schema, path: str) -> Iterator[str]:
    """Each failing rule, depth first (children before the rules on their parent)."""
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                yield from _cel_failures(value[name], sub, f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _cel_failures(item, schema["items"], f"{path}[{index}]")
    for entry in schema.get("x-kubernetes-validations", []):
        try:
            result = _program(entry["rule"]).evaluate({"self": _to_cel(value, schema)})
        except celpy.evaluation.CELEvalError:  # a rule that errors counts as failed, as in k8s
            result = None
        if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            where = path + entry.get("fieldPath", "")
            yield f"{where}: Invalid value: {entry['message']}"


def admission_errors(manifest: dict[str, Any]) -> list[str]:
    """What `kubectl apply` of this manifest would be refused for; [] when it would be admitted."""
    schema = openapi_schema()
    served = as_served(manifest, schema)
    meta = metadata_errors(served.get("metadata") or {}) if isinstance(served, dict) else []
    defaulted = apply_defaults(served, schema)
    errors = sorted(_validator().iter_errors(defaulted), key=lambda e: list(e.absolute_path))
    if errors or meta:  # CEL rules run on schema-valid objects only
        return meta + [_schema_message(e) for e in errors]
    spec = defaulted.get("spec", {})
    failures = list(_cel_failures(spec, schema["properties"]["spec"], "spec"))
    root = {**schema, "properties": {}}  # the root's own rules (metadata.name) only
    return failures + [f.lstrip(".") for f in _cel_failures(defaulted, root, "")]
