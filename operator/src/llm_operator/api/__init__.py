"""The LLMDeployment API (inference.llmops.dev/v1alpha1): pydantic models and CRD generation."""

from llm_operator.api.resource import API_VERSION, GROUP, KIND, PLURAL, VERSION, LLMDeployment
from llm_operator.api.spec import LLMDeploymentSpec
from llm_operator.api.status import Condition, LLMDeploymentStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Condition",
    "LLMDeployment",
    "LLMDeploymentSpec",
    "LLMDeploymentStatus",
]
