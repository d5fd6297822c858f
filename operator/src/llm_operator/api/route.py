"""LLMRoute: one public model name in front of several LLMDeployments of its namespace.

A route is a weighted split (canary, A/B) or a quality-gated cascade (cheap first, escalate
when the answer fails a gate), with an ordered fallback list for targets that fail, are
saturated or over budget. llm-gateway applies it (docs/traffic.md); the operator writes its
status (targets' readiness and price, and the last hour from the gateway's metrics). The CRD
is generated from these models (`make crds`); each cross-field rule is stated once below and
enforced by pydantic and by the API server's CEL, as for LLMDeployment.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from llm_operator.api.base import ApiModel, CrossFieldRule, RuleViolation, cel_rules
from llm_operator.api.resource import GROUP, NAME_PATTERN, VERSION
from llm_operator.api.status import Condition
from llm_operator.api.tenant import SERVED_NAME_PATTERN

KIND = "LLMRoute"
PLURAL = "llmroutes"
SINGULAR = "llmroute"
SHORT_NAMES = ("llmr",)
API_VERSION = f"{GROUP}/{VERSION}"

# Condition types and reasons of a route's status.
READY = "Ready"
SHADOWS_MODEL = "ShadowsModel"  # the route's model is also a served model name there

# An LLMDeployment of the route's namespace, by name (at most 63 characters: NAME_FITS_LABEL).
DeploymentName = Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]

# Python's re accepts these; RE2 (the API server's CEL, Go's regexp) does not: refuse them in
# both layers so a pattern means the same wherever it is evaluated.
_NOT_RE2 = re.compile(r"\(\?<?[=!]|\(\?P=|\\[1-9]")

TARGETS_XOR_CASCADE = CrossFieldRule(
    "(has(self.targets) && size(self.targets) > 0) != has(self.cascade)",
    "a route needs exactly one of targets (a weighted split) and cascade",
    ".targets",
    "keep targets or cascade, not both (and not neither)",
)
TARGETS_DISTINCT = CrossFieldRule(
    "!has(self.targets) || "
    "self.targets.all(t, self.targets.exists_one(u, u.deployment == t.deployment))",
    "targets must name distinct deployments",
    ".targets",
    "merge the repeated entries (add up their weights)",
)
FALLBACK_NOT_A_TARGET = CrossFieldRule(
    "!has(self.fallback) || self.fallback.all(f, "
    "(!has(self.targets) || !self.targets.exists(t, t.deployment == f)) && "
    "(!has(self.cascade) || !(f in self.cascade.steps)))",
    "fallback must not repeat a target or a cascade step",
    ".fallback",
    "remove that deployment from fallback",
)
GATE_DECIDES = CrossFieldRule(
    "has(self.minMeanTokenLogprob) || self.escalateOnLength || self.escalateOnEmpty || "
    "has(self.rejectPattern)",
    "a cascade gate needs at least one test (minMeanTokenLogprob, escalateOnLength, "
    "escalateOnEmpty or rejectPattern)",
    ".minMeanTokenLogprob",
    "set minMeanTokenLogprob (e.g. -1.2) or enable another test",
)
# An invalid RE2 pattern makes `matches` fail at evaluation: the API server refuses the object.
# (`x == x` keeps the error: CEL's || and && would absorb it.)
PATTERN_COMPILES = CrossFieldRule(
    "!has(self.rejectPattern) || ''.matches(self.rejectPattern) == ''.matches(self.rejectPattern)",
    "rejectPattern must be an RE2 regular expression",
    ".rejectPattern",
    "fix the pattern (RE2: no lookaround, no backreferences)",
)


def pattern_error(pattern: str) -> str | None:
    """Why `pattern` is not an RE2-compatible regular expression, or None."""
    if _NOT_RE2.search(pattern):
        return "lookaround and backreferences are not RE2"
    try:
        re.compile(pattern)
    except re.error as exc:
        return str(exc)
    return None


class Target(ApiModel):
    deployment: DeploymentName = Field(description="An LLMDeployment of this namespace.")
    weight: int = Field(
        default=1, ge=1, le=1000, description="Share of requests: weight / sum of weights."
    )


class Gate(ApiModel, json_schema_extra=cel_rules(GATE_DECIDES, PATTERN_COMPILES)):
    """When an answer is not good enough: each test that is set escalates when it fails."""

    min_mean_token_logprob: float | None = Field(
        default=None,
        le=0,
        description="Escalate when the mean log-probability of the answer's tokens is below "
        "this (e.g. -1.2); the gateway asks upstream for logprobs.",
    )
    escalate_on_length: bool = Field(
        default=True,
        description='Escalate an answer cut off by max_tokens (finish_reason "length").',
    )
    escalate_on_empty: bool = Field(
        default=True, description="Escalate an empty or whitespace-only answer."
    )
    reject_pattern: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="RE2 regular expression; an answer it matches (anywhere) escalates, "
        'e.g. "(?i)i don\'t know".',
    )

    @field_validator("reject_pattern")
    @classmethod
    def _re2(cls, value: str | None) -> str | None:
        if value is not None and pattern_error(value) is not None:
            raise RuleViolation(PATTERN_COMPILES)
        return value

    @model_validator(mode="after")
    def _decides(self) -> Self:
        tests = (self.min_mean_token_logprob, self.reject_pattern)
        if all(t is None for t in tests) and not (
            self.escalate_on_length or self.escalate_on_empty
        ):
            raise RuleViolation(GATE_DECIDES)
        return self


class Cascade(ApiModel):
    """Cheap first: each later step is tried only when the previous answer fails the gate."""

    steps: list[DeploymentName] = Field(
        min_length=2,
        max_length=8,
        description="LLMDeployments in order, cheapest first.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    gate: Gate = Field(default_factory=Gate)

    @field_validator("steps")
    @classmethod
    def _distinct(cls, steps: list[str]) -> list[str]:
        repeated = sorted({s for s in steps if steps.count(s) > 1})
        if repeated:
            raise ValueError(f"cascade.steps must be distinct; repeated: {', '.join(repeated)}")
        return steps


class LLMRouteSpec(
    ApiModel,
    json_schema_extra=cel_rules(TARGETS_XOR_CASCADE, TARGETS_DISTINCT, FALLBACK_NOT_A_TARGET),
):
    model: str = Field(
        pattern=SERVED_NAME_PATTERN,
        description="The public model name clients send; it wins over an LLMDeployment "
        "serving the same name (condition ShadowsModel).",
    )
    targets: list[Target] = Field(
        default_factory=list, max_length=16, description="A weighted split (canary, A/B)."
    )
    fallback: list[DeploymentName] = Field(
        default_factory=list,
        max_length=8,
        description="Tried in order when the picked target fails before the first byte, is "
        "saturated, has no ready replica, or is over its or the tenant's budget.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    cascade: Cascade | None = Field(
        default=None, description="Instead of targets: cheap first, escalate by a gate."
    )

    @field_validator("fallback")
    @classmethod
    def _distinct(cls, fallback: list[str]) -> list[str]:
        repeated = sorted({f for f in fallback if fallback.count(f) > 1})
        if repeated:
            raise ValueError(f"fallback must be distinct; repeated: {', '.join(repeated)}")
        return fallback

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if bool(self.targets) == (self.cascade is not None):
            raise RuleViolation(TARGETS_XOR_CASCADE)
        names = [t.deployment for t in self.targets]
        if len(names) != len(set(names)):
            raise RuleViolation(TARGETS_DISTINCT)
        if set(self.fallback) & set(self.primary_deployments):
            raise RuleViolation(FALLBACK_NOT_A_TARGET)
        return self

    @property
    def primary_deployments(self) -> tuple[str, ...]:
        """The split's targets or the cascade's steps, in order."""
        if self.cascade is not None:
            return tuple(self.cascade.steps)
        return tuple(t.deployment for t in self.targets)

    @property
    def deployments(self) -> tuple[str, ...]:
        """Every LLMDeployment the route can send to: primaries, then fallbacks."""
        return (*self.primary_deployments, *self.fallback)


TargetRole = Literal["target", "step", "fallback"]


class RouteTargetStatus(ApiModel):
    deployment: str
    role: TargetRole = Field(description="target (split), step (cascade) or fallback.")
    exists: bool = Field(description="The LLMDeployment exists in the route's namespace.")
    ready: bool = Field(description="It has ready replicas.")
    ready_replicas: int = Field(default=0, ge=0)
    budget_limited: bool = Field(
        default=False, description="Its BudgetLimited condition is True (the gateway skips it)."
    )
    dollars_per_million_tokens: float | None = Field(
        default=None, ge=0, description="Its status.cost.dollarsPerMillionTokens."
    )


class LastHour(ApiModel):
    """Increase of llm-gateway's route counters over the last hour (scraped by the operator)."""

    requests: int = Field(ge=0, description="Requests answered or failed (not attempts).")
    escalation_rate: float | None = Field(
        default=None, ge=0, description="Cascade escalations per request; unset: no requests."
    )
    dollars: float = Field(ge=0, description="Dollars of every attempt, thrown-away ones too.")
    direct_dollars: float = Field(
        ge=0,
        description="What the same answers would have cost sent directly to the last step "
        "(cascade) or the picked target (split).",
    )
    window_seconds: float = Field(
        ge=0, description="The part of the hour the operator's samples cover."
    )


class LLMRouteStatus(ApiModel):
    observed_generation: int | None = Field(default=None, ge=0)
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    targets: list[RouteTargetStatus] = Field(
        default_factory=list, max_length=32, description="Every deployment the route names."
    )
    last_hour: LastHour | None = Field(
        default=None, description="Unset unless the operator runs with --gateway-service."
    )


class RouteMeta(ApiModel):
    """The part of ObjectMeta the operator and the gateway read; the rest passes through."""

    model_config = ConfigDict(**{**ApiModel.model_config, "extra": "allow"})

    name: str = Field(pattern=NAME_PATTERN)
    namespace: str | None = None
    generation: int | None = None


class LLMRoute(ApiModel):
    api_version: Literal["inference.llmops.dev/v1alpha1"] = "inference.llmops.dev/v1alpha1"
    kind: Literal["LLMRoute"] = "LLMRoute"
    metadata: RouteMeta
    spec: LLMRouteSpec
    status: LLMRouteStatus | None = None

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> LLMRoute:
        return cls.model_validate(manifest)
