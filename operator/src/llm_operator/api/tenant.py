"""LLMTenant: who may call which models through llm-gateway, how fast, and for how many dollars.

A platform team keeps one LLMTenant per team or application in Git, in the namespace of the
models it uses. Its API keys are Secrets in the same namespace labelled `TENANT_LABEL: <tenant
name>`, the key in `data[API_KEY_DATA_KEY]`; the gateway keeps only their SHA-256 hashes.
Limits and budgets are enforced by the gateway (docs/traffic.md), which also writes the budget
period's spend to status.spend; nothing else reconciles a tenant.
Like LLMDeployment, the CRD is generated from these models (`make crds`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from llm_operator.api.base import ApiModel, CrossFieldRule, RuleViolation, cel_rules
from llm_operator.api.resource import GROUP, NAME_PATTERN, VERSION
from llm_operator.api.status import Condition

KIND = "LLMTenant"
PLURAL = "llmtenants"
SINGULAR = "llmtenant"
SHORT_NAMES = ("llmt",)
API_VERSION = f"{GROUP}/{VERSION}"

# Keys: Secrets of the tenant's namespace carrying this label (value: the tenant's name), the
# key itself in this data entry. One owner: the gateway imports both.
TENANT_LABEL = f"{GROUP}/tenant"
API_KEY_DATA_KEY = "api-key"

Period = Literal["day", "month"]  # UTC calendar day / month
Priority = Literal["high", "normal", "low"]

# A positive decimal amount of dollars written as a string ("12.50"); whole dollars may be a
# number. Kubernetes has no "number or string" type, only int-or-string, as for quantities.
DOLLARS_PATTERN = r"^[0-9]{1,9}(\.[0-9]{1,6})?$"
SERVED_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}$"  # LLMDeployment's servedName

# The key Secrets name their tenant in a label, whose values hold 63 characters.
TENANT_NAME_FITS_LABEL = CrossFieldRule(
    "self.metadata.name.size() <= 63",
    "metadata.name must be at most 63 characters (key Secrets name their tenant in a label)",
    ".metadata.name",
    "use a shorter name",
)
DOLLARS_POSITIVE = CrossFieldRule(
    "type(self.dollars) == int ? self.dollars > 0 : double(self.dollars) > 0.0",
    "budget.dollars must be more than 0",
    ".dollars",
    "set a positive amount, or remove the budget for none",
)


def _dollars(value: int | str) -> int | str:
    # fullmatch: re.match's `$` also matches before a trailing newline; the API server's not.
    if isinstance(value, str) and not re.fullmatch(DOLLARS_PATTERN, value):
        raise ValueError(f'{value!r} is not a decimal amount of dollars such as "12.50"')
    return value


Dollars = Annotated[
    int | str,
    AfterValidator(_dollars),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string", "pattern": DOLLARS_PATTERN}],
            "description": 'Dollars per period: a number or a decimal string such as "12.50".',
        }
    ),
]


class Limits(ApiModel):
    """Per-minute limits over all of the tenant's keys (split across gateway replicas)."""

    requests_per_minute: int | None = Field(
        default=None, ge=1, le=10_000_000, description="Requests per minute; unset = no limit."
    )
    tokens_per_minute: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000_000,
        description="Prompt + completion tokens per minute; unset = no limit.",
    )


class Budget(ApiModel, json_schema_extra=cel_rules(DOLLARS_POSITIVE)):
    """Dollars per UTC day or month, priced with status.cost.dollarsPerMillionTokens."""

    dollars: Dollars
    period: Period = Field(description="day or month: the UTC calendar day or month.")

    @model_validator(mode="after")
    def _positive(self) -> Budget:
        if self.amount <= 0:
            raise RuleViolation(DOLLARS_POSITIVE)
        return self

    @property
    def amount(self) -> Decimal:
        return Decimal(self.dollars)


class LLMTenantSpec(ApiModel):
    models: list[Annotated[str, Field(pattern=SERVED_NAME_PATTERN)]] = Field(
        default_factory=list,
        max_length=256,
        description="Served model names (what clients send as `model`) the tenant may call; "
        "empty = all.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    limits: Limits = Field(default_factory=Limits)
    budget: Budget | None = None
    weight: int = Field(
        default=1, ge=1, le=1000, description="Fair-share weight when a model is saturated."
    )
    priority: Priority = Field(
        default="normal", description="Who is shed first under overload: low, then normal."
    )

    @field_validator("models")
    @classmethod
    def _distinct(cls, models: list[str]) -> list[str]:
        repeated = sorted({m for m in models if models.count(m) > 1})
        if repeated:
            raise ValueError(f"models must be distinct; repeated: {', '.join(repeated)}")
        return models

    def allows(self, model: str) -> bool:
        return not self.models or model in self.models


class Spend(ApiModel):
    period_start: str = Field(json_schema_extra={"format": "date-time"})
    dollars: float = Field(ge=0)


class LLMTenantStatus(ApiModel):
    """`spend` is written by llm-gateway (every replica adds what it spent); the rest is left
    for a controller to fill, and nothing writes it yet."""

    observed_generation: int | None = Field(default=None, ge=0)
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    keys: int | None = Field(default=None, ge=0, description="Key Secrets found.")
    spend: Spend | None = Field(
        default=None,
        description="Spend of the current budget period over every llm-gateway replica "
        "(written by the gateway; the budget is checked against it).",
    )


class TenantMeta(ApiModel):
    """The part of ObjectMeta the gateway reads; the rest passes through."""

    model_config = ConfigDict(**{**ApiModel.model_config, "extra": "allow"})

    name: str = Field(pattern=NAME_PATTERN)
    namespace: str | None = None


class LLMTenant(ApiModel):
    api_version: Literal["inference.llmops.dev/v1alpha1"] = "inference.llmops.dev/v1alpha1"
    kind: Literal["LLMTenant"] = "LLMTenant"
    metadata: TenantMeta
    spec: LLMTenantSpec = Field(default_factory=LLMTenantSpec)
    status: LLMTenantStatus | None = None

    @model_validator(mode="after")
    def _name_fits_a_label(self) -> LLMTenant:
        if len(self.metadata.name) > 63:
            raise RuleViolation(TENANT_NAME_FITS_LABEL)
        return self

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> LLMTenant:
        return cls.model_validate(manifest)
