"""Child objects of an LLMDeployment, rendered from jinja2 templates (one per kind). Pure."""

from llm_operator.render.merge import strategic_merge
from llm_operator.render.objects import (
    CONFIG_HASH_ANNOTATION,
    UnresolvedSpecError,
    desired_objects,
    dump_objects,
    selector_labels,
)
from llm_operator.render.settings import RenderSettings

__all__ = [
    "CONFIG_HASH_ANNOTATION",
    "RenderSettings",
    "UnresolvedSpecError",
    "desired_objects",
    "dump_objects",
    "selector_labels",
    "strategic_merge",
]
