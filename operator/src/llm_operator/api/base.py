"""Shared pieces of every API type: camelCase on the wire, no unknown fields, CEL rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Base of every LLMDeployment type.

    Kubernetes API conventions: camelCase field names; unknown fields are errors (the API
    server's strict field validation does the same with `kubectl apply`).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


@dataclass(frozen=True)
class CrossFieldRule:
    """A rule spanning several fields, stated once and enforced by two layers.

    `cel` goes into the CRD (the API server evaluates it with `self` bound to the object the
    rule sits on); the pydantic validator of the same object raises `RuleViolation(rule)`.
    `field_path` is relative to that object, in the CRD's fieldPath syntax.
    """

    cel: str
    message: str  # what must hold
    field_path: str
    fix: str  # how to make it hold

    @property
    def full_message(self) -> str:
        return f"{self.message} (fix: {self.fix})"

    def schema_entry(self) -> dict[str, str]:
        return {"rule": self.cel, "message": self.full_message, "fieldPath": self.field_path}


class RuleViolation(ValueError):
    """Raised by validators; carries the offending field so errors can name it."""

    def __init__(self, rule: CrossFieldRule) -> None:
        super().__init__(rule.message)
        self.rule = rule


def cel_rules(*rules: CrossFieldRule) -> dict[str, Any]:
    """`json_schema_extra` carrying CEL rules into the generated CRD (x-kubernetes-validations)."""
    return {"x-kubernetes-validations": [r.schema_entry() for r in rules]}
