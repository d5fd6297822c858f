"""The LLMDeployment resource as a whole: identity, spec and status."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from llm_operator.api.base import ApiModel
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


class ObjectMeta(ApiModel):
    """The part of metav1.ObjectMeta the operator reads; the rest passes through untouched."""

    model_config = ConfigDict(**{**ApiModel.model_config, "extra": "allow"})

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
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

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> LLMDeployment:
        return cls.model_validate(manifest)
