"""The LLMDeployment resource as a whole: identity, spec and status."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from llm_operator.api.base import ApiModel, CrossFieldRule, RuleViolation
from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.api.status import LLMDeploymentStatus

GROUP = "inference.llmops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LLMDeployment"
PLURAL = "llmdeployments"
SINGULAR = "llmdeployment"
SHORT_NAMES = ("llmd",)
CATEGORIES = ("llmops",)

# The API server allows 253 characters (a DNS subdomain); the operator labels its pods with
# the name, and a label value holds 63. Dots are fine: children get dot-free names
# (render.names). A root-level CEL rule, so `kubectl apply` says it, in these words.
NAME_FITS_LABEL = CrossFieldRule(
    "self.metadata.name.size() <= 63",
    "metadata.name must be at most 63 characters (the operator labels its pods with it)",
    ".metadata.name",
    "use a shorter name",
)
# The API server's own rule for names (RFC 1123 subdomain), so validate agrees with it.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class ObjectMeta(ApiModel):
    """The part of metav1.ObjectMeta the operator reads; the rest passes through untouched."""

    model_config = ConfigDict(**{**ApiModel.model_config, "extra": "allow"})

    name: str = Field(pattern=NAME_PATTERN)
    namespace: str | None = None
    generation: int | None = None
    uid: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class LLMDeployment(ApiModel):
    api_version: Literal["inference.llmops.dev/v1alpha1"] = "inference.llmops.dev/v1alpha1"
    kind: Literal["LLMDeployment"] = "LLMDeployment"
    metadata: ObjectMeta
    spec: LLMDeploymentSpec
    status: LLMDeploymentStatus | None = None

    @model_validator(mode="after")
    def _name_fits_a_label(self) -> LLMDeployment:
        if len(self.metadata.name) > 63:
            raise RuleViolation(NAME_FITS_LABEL)
        return self

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> LLMDeployment:
        return cls.model_validate(manifest)
